"""export / import: OCI archives and docker-archives, checked with skopeo."""

import json
import subprocess
import sys
import tarfile

import pytest

from contentstore import Store
from contentstore.errors import ArchiveError, DigestMismatch
from contentstore.errors import SizeMismatch
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import REF_NAME_ANNOTATION
from contentstore.testing import build_image, build_index, push_test_image

pytestmark = pytest.mark.needs("skopeo")


def skopeo(*args) -> dict:
    out = subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_export_oci_archive_read_by_skopeo(store, tmp_path):
    desc = build_image(store, "127.0.0.1:5000/team/app:1.0", layers=[{"a": "1\n"}, {"b": "2\n"}])
    path = tmp_path / "app.tar"
    store.export("127.0.0.1:5000/team/app:1.0", path)
    out = skopeo("inspect", f"oci-archive:{path}")
    assert out["Digest"] == desc.digest  # OCI content is exported byte for byte
    assert len(out["Layers"]) == 2
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json"} <= names


def test_export_converts_docker_media_types_to_oci(registry, tmp_path):
    ref = push_test_image(registry, "team/docker:1", {"d.txt": "docker\n"}, "--format", "v2s2")
    store = Store(tmp_path / "store")
    image = store.pull(ref)
    assert image.media_type == mt.DOCKER_MANIFEST
    path = tmp_path / "docker-as-oci.tar"
    store.export(ref, path, format="oci")
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{path}"], check=True,
                         capture_output=True).stdout
    manifest = json.loads(raw)
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert manifest["config"]["mediaType"] == mt.OCI_CONFIG
    assert manifest["layers"][0]["mediaType"] == mt.OCI_LAYER_GZIP
    assert manifest["layers"][0]["digest"] == image.layers[0].digest  # the blobs themselves unchanged


def test_export_index_keeps_platforms(store, tmp_path):
    index = build_index(store, "example.com/multi:1", [("linux", "amd64", None), ("linux", "arm64", "v8")])
    path = tmp_path / "multi.tar"
    store.export("example.com/multi:1", path)
    raw = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{path}"], check=True,
                                    capture_output=True).stdout)
    assert raw["mediaType"] == mt.OCI_INDEX and len(raw["manifests"]) == 2
    assert skopeo("--override-arch", "arm64", "inspect", f"oci-archive:{path}")["Architecture"] == "arm64"
    other = Store(tmp_path / "other")
    [loaded] = other.import_archive(path)
    assert loaded.reference == "example.com/multi:1" and loaded.digest == index.digest
    assert other.verify().ok


def test_export_docker_archive_read_by_skopeo(store, tmp_path):
    build_image(store, "127.0.0.1:5000/team/app:1.0", layers=[{"a": "1\n"}, {"b": "2\n"}])
    path = tmp_path / "app-docker.tar"
    store.export("127.0.0.1:5000/team/app:1.0", path, format="docker")
    out = skopeo("inspect", f"docker-archive:{path}")
    assert len(out["Layers"]) == 2 and out["Architecture"] == "amd64"
    with tarfile.open(path) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert manifest[0]["RepoTags"] == ["127.0.0.1:5000/team/app:1.0"]
        assert "repositories" in tar.getnames()
    # and back in: the same config, verified layers
    other = Store(tmp_path / "other")
    [loaded] = other.import_archive(path)
    assert loaded.reference == "127.0.0.1:5000/team/app:1.0"
    assert other.image(loaded.reference).config.digest == store.image("127.0.0.1:5000/team/app:1.0").config.digest
    assert other.verify().ok


def test_import_skopeo_docker_archive_with_several_images(tmp_path):
    source = Store(tmp_path / "source")
    build_image(source, "example.com/one:1", {"one": "1\n"})
    build_image(source, "example.com/two:2", {"two": "2\n"})
    archive = tmp_path / "saved.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{source.root}:example.com/one:1",
                    f"docker-archive:{archive}:example.com/one:1"], check=True, capture_output=True)
    store = Store(tmp_path / "store")
    loaded = store.import_archive(archive)
    assert [i.reference for i in loaded] == ["example.com/one:1"]
    assert store.verify().ok and store.image("example.com/one:1").layers
    # a multi-image docker save file: two entries in manifest.json
    multi = tmp_path / "multi.tar"
    source.export("example.com/two:2", tmp_path / "two.tar", format="docker")
    with tarfile.open(archive) as a, tarfile.open(tmp_path / "two.tar") as b, tarfile.open(multi, "w") as out:
        manifest = json.loads(a.extractfile("manifest.json").read()) + json.loads(b.extractfile("manifest.json").read())
        for tar in (a, b):
            for member in tar.getmembers():
                if member.name not in ("manifest.json", "repositories"):
                    out.addfile(member, tar.extractfile(member) if member.isfile() else None)
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        import io
        out.addfile(info, io.BytesIO(data))
    fresh = Store(tmp_path / "fresh")
    assert sorted(i.reference for i in fresh.import_archive(multi)) == ["example.com/one:1", "example.com/two:2"]


def test_import_refuses_corrupt_archives(store, tmp_path):
    build_image(store, "example.com/app:1", {"f": "content\n"})
    good = tmp_path / "good.tar"
    store.export("example.com/app:1", good)
    bad = tmp_path / "bad.tar"
    layer = store.image("example.com/app:1").layers[0].digest
    with tarfile.open(good) as src, tarfile.open(bad, "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name.endswith(layer.hex):
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            import io
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    fresh = Store(tmp_path / "fresh")
    with pytest.raises(DigestMismatch):
        fresh.import_archive(bad)
    assert not fresh.exists(layer)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    with pytest.raises(ArchiveError):
        fresh.import_archive(tmp_path / "junk.tar")


def test_cli_export_import(store, tmp_path):
    build_image(store, "example.com/cli:1", {"x": "x\n"})
    run = lambda root, *a: subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *a],  # noqa: E731
                                          capture_output=True, text=True)
    assert run(store.root, "export", "example.com/cli:1", str(tmp_path / "x.tar"), "--format", "docker").returncode == 0
    out = run(tmp_path / "other", "import", str(tmp_path / "x.tar"))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Loaded image: example.com/cli:1\n"


def test_import_skopeo_oci_archive(tmp_path):
    source = Store(tmp_path / "source")
    desc = build_image(source, "example.com/oci:1", {"o": "oci\n"})
    archive = tmp_path / "skopeo-oci.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{source.root}:example.com/oci:1",
                    f"oci-archive:{archive}:example.com/oci:1"], check=True, capture_output=True)
    store = Store(tmp_path / "store")
    [loaded] = store.import_archive(archive)
    assert loaded.reference == "example.com/oci:1" and loaded.digest == desc.digest
    assert store.verify().ok and store.image("example.com/oci:1").layers


def docker_save_style(source, dest):
    """Rewrite a skopeo docker-archive as ``docker save`` (before Docker 25) writes one:
    each layer as ``<id>/layer.tar``, and a layer met again as a symlink
    ``<id>/layer.tar -> ../<first id>/layer.tar`` to where it was written first."""
    import hashlib
    import io

    with tarfile.open(source) as tar, tarfile.open(dest, "w") as out:
        [entry] = json.loads(tar.extractfile("manifest.json").read())
        first, layers = {}, []
        for number, layer in enumerate(entry["Layers"]):
            legacy = f"{hashlib.sha256(f'{layer} {number}'.encode()).hexdigest()}/layer.tar"
            info = tarfile.TarInfo(legacy)
            if layer in first:
                info.type, info.linkname = tarfile.SYMTYPE, f"../{first[layer]}"
                out.addfile(info)
            else:
                member = tar.getmember(layer)
                assert member.isfile()
                info.size, info.mode = member.size, 0o644
                out.addfile(info, tar.extractfile(member))
                first[layer] = legacy
            layers.append(legacy)
        config = tar.getmember(entry["Config"])
        out.addfile(config, tar.extractfile(config))
        data = json.dumps([dict(entry, Layers=layers)]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    return first


def test_import_docker_save_with_a_layer_shared_through_a_symlink(tmp_path):
    source = Store(tmp_path / "source")
    build_image(source, "example.com/twin:1", layers=[{"same": "same\n"}, {"same": "same\n"}])
    skopeo_archive, saved = tmp_path / "skopeo.tar", tmp_path / "saved.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{source.root}:example.com/twin:1",
                    f"docker-archive:{skopeo_archive}:example.com/twin:1"], check=True, capture_output=True)
    assert len(docker_save_style(skopeo_archive, saved)) == 1  # one layer file, one symlink to it
    with tarfile.open(saved) as tar:
        assert sum(member.issym() for member in tar.getmembers()) == 1
    assert len(skopeo("inspect", f"docker-archive:{saved}")["Layers"]) == 2  # a docker-archive skopeo reads
    store = Store(tmp_path / "store")
    [loaded] = store.import_archive(saved)
    assert loaded.reference == "example.com/twin:1"
    layers = store.image("example.com/twin:1").layers
    assert len(layers) == 2 and layers[0].digest == layers[1].digest
    assert store.verify().ok


@pytest.mark.needs("skopeo", "umoci")
def test_import_refuses_a_wrong_size_in_index_json_and_umoci_reads_the_store(tmp_path):
    source = Store(tmp_path / "source")
    desc = build_image(source, "example.com/sized:1", {"sized.txt": "sized\n"})
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{source.root}:example.com/sized:1",
                    f"oci-archive:{good}:example.com/sized:1"], check=True, capture_output=True)
    with tarfile.open(good) as src, tarfile.open(bad, "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "index.json":
                index = json.loads(data)
                index["manifests"][0]["size"] += 1
                data = json.dumps(index).encode()
                member.size = len(data)
            import io
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    store = Store(tmp_path / "store")
    with pytest.raises(SizeMismatch, match=f"{bad}: .*{desc.digest}.*index.json entry 1"):
        store.import_archive(bad)
    assert store.images() == []
    [loaded] = store.import_archive(good)
    assert store.resolve(loaded.reference).size == desc.size
    listed = subprocess.run(["umoci", "ls", "--layout", str(store.root)], check=True, capture_output=True, text=True)
    assert listed.stdout.split() == ["example.com/sized:1"]
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{store.root}:example.com/sized:1", str(bundle)],
                   check=True, capture_output=True)
    assert (bundle / "rootfs" / "sized.txt").read_text() == "sized\n"


def test_import_skopeo_oci_archive_named_by_a_bare_tag(tmp_path):
    source = Store(tmp_path / "source")
    desc = build_image(source, "example.com/oci:1", {"o": "oci\n"})
    archive = tmp_path / "tagged.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{source.root}:example.com/oci:1",
                    f"oci-archive:{archive}:1.0"], check=True, capture_output=True)
    with tarfile.open(archive) as tar:
        [entry] = json.loads(tar.extractfile("index.json").read())["manifests"]
        assert entry["annotations"][REF_NAME_ANNOTATION] == "1.0"
    store = Store(tmp_path / "store")
    [loaded] = store.import_archive(archive)
    assert loaded.reference == "1.0" and loaded.digest == desc.digest
    assert store.image("1.0").layers and store.verify().ok


def test_export_to_docker_archive_records_the_diff_ids_it_checked(store, tmp_path):
    """The first decompression of a layer (here, a docker-archive export) verifies its
    diffID and records it, so nothing inflates that layer again for it."""
    build_image(store, "example.com/record:1", {"a.txt": "a\n"})
    [layer] = store.image("example.com/record:1").layers
    assert store.metadata.diff_id(layer.digest) is None  # made locally: never checked
    store.export("example.com/record:1", tmp_path / "record.tar", format="docker")
    config = json.loads(store.content.read(store.image("example.com/record:1").config.digest))
    assert store.metadata.diff_id(layer.digest) == config["rootfs"]["diff_ids"][0]
