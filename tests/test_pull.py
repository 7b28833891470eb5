"""Pulls from a real registry (docker-registry on loopback), images pushed by skopeo."""

import json
import subprocess

import pytest
from servers import oci_ref
from tools import require

from contentstore.model import mediatypes as mt
from contentstore.testing import ProgressRecorder, build_image, build_index, push, push_test_image


def skopeo_inspect(*args: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def remote_digest(host_ref: str) -> str:
    return skopeo_inspect(f"docker://{host_ref}")["Digest"]


pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def push_built(source, registry, name, *args, layers=None, files=None):
    """Build an image in ``source`` and push it to ``registry`` as ``name`` (repo:tag)."""
    local = "src/" + name.replace(":", "-")
    build_image(source, local, files=files or {"hello.txt": f"hello {name}\n"}, layers=layers)
    return push(oci_ref(source, f"docker.io/{local}:latest"), registry, name, *args)


def test_pull_oci_image_made_by_umoci(registry, tmp_path, store):
    require("umoci")
    layout = tmp_path / "layout"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:app")
    (tmp_path / "payload").mkdir()
    (tmp_path / "payload" / "greeting").write_text("hi from umoci\n")
    run("umoci", "insert", "--rootless", "--image", f"{layout}:app", str(tmp_path / "payload"), "/srv")
    ref = push(f"oci:{layout}:app", registry, "team/umoci:1.0")
    events = ProgressRecorder()
    image = store.pull(ref, progress=events)
    assert image.digest == remote_digest(ref)
    assert image.media_type == mt.OCI_MANIFEST
    assert image.reference == ref
    assert all(store.exists(layer.digest) for layer in image.layers)
    lines = events
    assert lines[0] == "1.0: Pulling from team/umoci"
    assert f"Digest: {image.digest}" in lines
    assert lines[-1] == f"Status: Downloaded newer image for {ref}"
    assert any(line.endswith(": Pull complete") for line in lines)
    assert skopeo_inspect(f"oci:{store.root}:{ref}")["Digest"] == image.digest
    # the digest reference is recorded too (Docker's addDigestReference)
    assert store.resolve(f"127.0.0.1:{registry.port}/team/umoci@{image.digest}").digest == image.digest
    assert store.verify().ok
    # rmi of the last tag takes the digest reference along, as docker rmi does
    assert store.untag(ref) == [ref, f"127.0.0.1:{registry.port}/team/umoci@{image.digest}"]
    assert store.images() == [] and len(store.gc().removed) == 3


def test_pull_schema2_keeps_docker_media_types(registry, source, store):
    ref = push_built(source, registry, "team/schema2:v1", "--format", "v2s2")
    image = store.pull(ref, verify_diffids=True)
    assert image.media_type == mt.DOCKER_MANIFEST
    assert image.config.media_type == mt.DOCKER_CONFIG
    assert image.digest == remote_digest(ref)
    assert store.content.read(image.digest) == subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True, capture_output=True).stdout  # byte for byte as served
    assert store.metadata.diff_id(image.layers[0].digest) is not None


def test_pull_schema1_is_converted_and_keeps_the_original(registry_factory, source, store):
    reg = registry_factory(schema1=True)
    ref = push_built(source, reg, "team/old:1", "--format", "v2s1",
                     layers=[{"a.txt": "first\n"}, {"b.txt": "second\n"}])
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True).stdout
    assert json.loads(raw)["schemaVersion"] == 1
    events = ProgressRecorder()
    image = store.pull(ref, progress=events)
    lines = events
    assert any("DEPRECATION NOTICE" in line for line in lines)
    registry_digest = remote_digest(ref)
    assert f"Digest: {registry_digest}" in lines
    # the reference points to an OCI manifest every tool reads
    assert image.media_type == mt.OCI_MANIFEST and image.config.media_type == mt.OCI_CONFIG
    config = json.loads(store.content.read(image.config.digest))
    assert config["rootfs"]["diff_ids"] == [str(store.metadata.diff_id(l.digest)) for l in image.layers]
    assert len(image.layers) == 2 and config["architecture"] and config["os"] == "linux"
    assert len(config["history"]) >= 2
    # Image.digest is the registry's; OCI tools see the converted manifest's digest
    assert image.digest == registry_digest
    oci_digest = store.inspect(ref)["ociDigest"]
    assert skopeo_inspect(f"oci:{store.root}:{ref}")["Digest"] == oci_digest
    # the signed original is stored as served (its signature differs per GET, so compare
    # the signed payload, whose digest is the registry's), and gc keeps it
    original = store.labels(oci_digest)["contentstore.gc.ref.content.original"]
    parsed = store.plugins.parse_manifest(None, store.content.read(original))
    assert parsed.media_type == mt.DOCKER_SCHEMA1_SIGNED and parsed.digest == registry_digest
    assert store.gc().removed == [] and store.exists(original)
    # by digest, the registry's (schema1 payload) digest finds it again
    again = store.pull(f"127.0.0.1:{reg.port}/team/old@{registry_digest}")
    assert again.digest == image.digest


PLATFORMS = [("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7")]


@pytest.mark.parametrize("list_format", ["oci", "v2s2"])
def test_pull_multi_platform(registry, source, store, list_format):
    build_index(source, "src/multi:latest", PLATFORMS)
    ref = push(oci_ref(source, "docker.io/src/multi:latest"), registry, f"team/multi-{list_format}:1",
               "--all", "--format", list_format)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True).stdout
    expected_type = mt.OCI_INDEX if list_format == "oci" else mt.DOCKER_MANIFEST_LIST
    assert json.loads(raw)["mediaType"] == expected_type

    image = store.pull(ref, platform="linux/arm64")
    assert image.media_type == expected_type and image.platform.architecture == "arm64"
    assert store.content.read(image.digest) == raw  # the index is stored as served
    # the reference points at the index: as served when OCI-typed, else at its OCI form,
    # which names the registry's digest and lists the platforms pulled
    entry = store.resolve(ref)
    assert entry.media_type == mt.OCI_INDEX
    assert entry.annotations.get("contentstore.original.digest", entry.digest) == image.digest
    if list_format == "v2s2":
        assert [m.platform.architecture for m in store.manifest(entry).manifests] == ["arm64"]
    arm = store.pull(ref, platform="linux/arm/v7")
    assert arm.platform == arm.platform.parse("linux/arm/v7") and arm.digest == image.digest
    assert arm.manifest.digest != image.manifest.digest
    if list_format == "v2s2":
        assert sorted(m.platform.architecture for m in store.manifest(store.resolve(ref)).manifests) == \
            ["arm", "arm64"]
    from contentstore.errors import PlatformNotFound
    with pytest.raises(PlatformNotFound) as info:
        store.pull(ref, platform="linux/s390x")
    assert "linux/amd64" in str(info.value) and "linux/arm/v7" in str(info.value)
    # every OCI tool reads it, whatever the registry served
    assert skopeo_inspect("--override-arch", "arm64", f"oci:{store.root}:{ref}")["Architecture"] == "arm64"


def test_pull_all_platforms(registry, source, store):
    build_index(source, "src/all:latest", PLATFORMS)
    ref = push(oci_ref(source, "docker.io/src/all:latest"), registry, "team/all:1", "--all")
    store.pull(ref, all_platforms=True)
    index = store.manifest(store.resolve(ref))
    assert all(store.exists(m.digest) for m in index.manifests)
    for platform in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        image = store.image(ref, platform=platform)
        assert all(store.exists(layer.digest) for layer in image.layers)


def test_unpack_records_the_diff_ids_it_verified(registry, store, tmp_path):
    ref = push_test_image(registry, "team/record:1", {"a.txt": "a\n"})
    image = store.pull(ref)
    assert store.metadata.diff_id(image.layers[0].digest) is None  # a pull inflates nothing
    store.unpack(ref, tmp_path / "rootfs")
    config = json.loads(store.content.read(image.config.digest))
    assert store.metadata.diff_id(image.layers[0].digest) == config["rootfs"]["diff_ids"][0]


def test_pull_zstd_layers(registry, store):
    ref = push_test_image(registry, "team/zstd:1", {"big.txt": "zstd " * 20000},
                          "--format", "oci", "--dest-compress-format", "zstd")
    image = store.pull(ref, verify_diffids=True)
    assert image.layers[0].media_type == mt.OCI_LAYER_ZSTD
    config = json.loads(store.content.read(image.config.digest))
    assert config["rootfs"]["diff_ids"][0] == store.metadata.diff_id(image.layers[0].digest)


def test_pull_by_digest_and_all_tags(registry, source, store):
    ref = push_built(source, registry, "team/tags:one")
    push_built(source, registry, "team/tags:two", files={"other.txt": "two\n"})
    digest = remote_digest(ref)
    by_digest = store.pull(f"127.0.0.1:{registry.port}/team/tags@{digest}")
    assert by_digest.digest == digest
    assert store.resolve(f"127.0.0.1:{registry.port}/team/tags@{digest}").digest == digest
    images = store.pull(f"127.0.0.1:{registry.port}/team/tags", all_tags=True)
    assert sorted(i.reference for i in images) == [f"127.0.0.1:{registry.port}/team/tags:{t}" for t in ("one", "two")]
    from contentstore.errors import RemoteNotFound
    with pytest.raises(RemoteNotFound):
        store.pull(f"127.0.0.1:{registry.port}/team/tags@sha256:{'0' * 64}")
    with pytest.raises(RemoteNotFound):
        store.pull(f"127.0.0.1:{registry.port}/team/tags:three")


def test_second_pull_is_up_to_date_with_no_get(registry, proxy_factory, source, store):
    push_built(source, registry, "team/warm:1")
    proxy = proxy_factory(registry.url)
    ref = f"{proxy.host}/team/warm:1"
    store.pull(ref)
    before = len(proxy.log())
    events = ProgressRecorder()
    store.pull(ref, progress=events)
    after = proxy.log()[before:]
    assert [e["method"] for e in after if "/manifests/" in e["path"] or "/blobs/" in e["path"]] == ["HEAD"]
    assert events[-1] == f"Status: Image is up to date for {ref}"


def test_image_already_present_downloads_no_blob(registry, proxy_factory, source, store):
    push_built(source, registry, "team/same:1")
    push(f"docker://{registry.host}/team/same:1", registry, "team/same:2", "--src-tls-verify=false")
    proxy = proxy_factory(registry.url)
    store.pull(f"{proxy.host}/team/same:1")
    before = len(proxy.log())
    events = ProgressRecorder()
    store.pull(f"{proxy.host}/team/same:2", progress=events)
    assert not [e for e in proxy.log()[before:] if "/blobs/" in e["path"]]
    assert events[-1] == f"Status: Downloaded newer image for {proxy.host}/team/same:2"


def test_explicit_platform_must_match_a_single_platform_image(registry, source, store):
    from contentstore.errors import PlatformNotFound
    ref = push_built(source, registry, "team/amd64only:1")
    with pytest.raises(PlatformNotFound, match="does not match the specified platform"):
        store.pull(ref, platform="linux/arm64")
    assert store.pull(ref, platform="linux/amd64").platform.architecture == "amd64"


def test_metadata_is_prepared_while_the_layers_arrive(registry, source, store, monkeypatch):
    """A new store's metadata tables are made while the blobs download, not after them."""
    import threading

    from contentstore.local.metadata import Metadata
    from contentstore.remote import pull as pull_module

    ref = push_built(source, registry, "prepared/app:1")
    prepared = threading.Event()
    prepare = Metadata.prepare
    download = pull_module.download

    def preparing(self):
        prepare(self)
        prepared.set()

    def downloading(*args, **kwargs):
        assert prepared.wait(10), "the metadata was not prepared while the blobs were downloading"
        return download(*args, **kwargs)

    monkeypatch.setattr(Metadata, "prepare", preparing)
    monkeypatch.setattr(pull_module, "download", downloading)
    store.pull(ref)
    assert store.image(ref).layers and store.verify().ok


LEAN = ("contentstore.local.maintenance", "contentstore.remote.referrers", "tomllib", "difflib", "subprocess",
        "platform", "uuid", "zstandard")


def test_a_pull_imports_only_what_it_needs(registry, source, tmp_path):
    """The command line pulls (gzip layers) without importing gc and verify, referrers,
    a TOML parser when there is no configuration file, a credential helper's subprocess,
    zstandard, and the like (each a millisecond or two of every pull's start)."""
    import os
    import sys

    ref = push_built(source, registry, "lean/app:1")
    code = ("import sys; from contentstore import cli; status = cli.main(sys.argv[1:]); "
            "print(' '.join(sorted(sys.modules))); sys.exit(status)")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "DOCKER_CONFIG": str(tmp_path / "docker")}
    env.pop("CONTENTSTORE_CONFIG", None)
    out = subprocess.run([sys.executable, "-c", code, "--root", str(tmp_path / "root"), "-q", "pull", ref],
                         env=env, capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "contentstore.remote.pull" in loaded
    assert loaded.isdisjoint(LEAN), loaded & set(LEAN)
