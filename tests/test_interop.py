"""Images built through the API are read by skopeo and umoci as they are."""

import json
import subprocess

from tools import require

from contentstore.testing import build_image, build_index

REF = "127.0.0.1:5000/team/app:1.0"


def run(*args, **kwargs):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def test_skopeo_inspects_the_store(store):
    skopeo = require("skopeo")
    desc = build_image(store, REF, layers=[{"etc/": "", "etc/hello": "hi\n"}, {"bin/tool": "#!/bin/sh\n"}])
    out = json.loads(run(skopeo, "inspect", f"oci:{store.root}:{REF}").stdout)
    assert out["Digest"] == desc.digest
    image = store.image(REF)
    assert out["Layers"] == [layer.digest for layer in image.layers]
    raw = run(skopeo, "inspect", "--raw", f"oci:{store.root}:{REF}").stdout
    assert raw.encode() == store.content.read(desc.digest)


def test_umoci_lists_and_unpacks_the_store(store, tmp_path):
    umoci = require("umoci")
    build_image(store, REF, layers=[{"etc/": "", "etc/hello": "hi\n"}, {"srv/data.txt": "data\n"}])
    build_image(store, "docker.io/library/other:latest", {"x": "y"})
    tags = run(umoci, "ls", "--layout", str(store.root)).stdout.split()
    assert REF in tags and "docker.io/library/other:latest" in tags
    bundle = tmp_path / "bundle"
    run(umoci, "unpack", "--rootless", "--image", f"{store.root}:{REF}", str(bundle))
    assert (bundle / "rootfs" / "etc" / "hello").read_text() == "hi\n"
    assert (bundle / "rootfs" / "srv" / "data.txt").read_text() == "data\n"


def test_skopeo_copies_from_the_store_and_an_index_resolves(store, tmp_path):
    skopeo = require("skopeo")
    build_index(store, REF, [("linux", "amd64", None), ("linux", "arm64", "v8")])
    out = json.loads(run(skopeo, "--override-arch", "arm64", "inspect", f"oci:{store.root}:{REF}").stdout)
    assert out["Architecture"] == "arm64"
    dest = tmp_path / "copy"
    run(skopeo, "copy", "--all", f"oci:{store.root}:{REF}", f"oci:{dest}:copied")
    index = json.loads((dest / "index.json").read_text())
    assert index["manifests"][0]["digest"] == store.resolve(REF).digest
