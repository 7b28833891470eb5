"""Pulls from a real registry (docker-registry on loopback), images pushed by skopeo."""

import json
import subprocess

import pytest

from contentstore import Store
from contentstore import mediatypes as mt
from contentstore.progress import ProgressEvent

from images import build_image, build_index
from servers import oci_ref
from tools import require


def skopeo_inspect(*args: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def remote_digest(host_ref: str) -> str:
    return skopeo_inspect(f"docker://{host_ref}")["Digest"]


class Recorder(list):
    def __call__(self, event: ProgressEvent):
        self.append(event)

    def lines(self):
        return [e.status if e.id is None else f"{e.id}: {e.status}" for e in self]


@pytest.fixture(autouse=True)
def tools():
    require("skopeo")
    require("docker-registry")


def push_built(source, registry, name, *args, layers=None, files=None):
    build_image(source, f"src/{name}", files=files or {"hello.txt": f"hello {name}\n"}, layers=layers)
    from contentstore.testing import push
    return push(oci_ref(source, f"docker.io/src/{name}:latest"), registry, name, *args)


def test_pull_oci_image_made_by_umoci(registry, tmp_path, store):
    require("umoci")
    layout = tmp_path / "layout"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:app")
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "greeting").write_text("hi from umoci\n")
    run("umoci", "insert", "--rootless", "--image", f"{layout}:app", str(tmp_path / "payload"), "/srv")
    from contentstore.testing import push
    ref = push(f"oci:{layout}:app", registry, "team/umoci:1.0")
    events = Recorder()
    image = store.pull(ref, progress=events)
    assert image.digest == remote_digest(ref)
    assert image.media_type == mt.OCI_MANIFEST
    assert image.reference == ref
    assert all(store.exists(layer.digest) for layer in image.layers)
    lines = events.lines()
    assert lines[0] == "1.0: Pulling from team/umoci"
    assert f"Digest: {image.digest}" in lines
    assert lines[-1] == f"Status: Downloaded newer image for {ref}"
    assert any(line.endswith(": Pull complete") for line in lines)
    assert skopeo_inspect(f"oci:{store.root}:{ref}")["Digest"] == image.digest
    # the digest reference is recorded too (Docker's addDigestReference)
    assert store.resolve(f"127.0.0.1:{registry.port}/team/umoci@{image.digest}").digest == image.digest
    assert store.verify().ok
