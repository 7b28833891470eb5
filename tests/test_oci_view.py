"""Every image in the store is readable by every OCI tool, with the registry's digests kept.

Images served with Docker media types (schema2, manifest list, schema1) are pulled from a
real registry; skopeo, umoci, podman and oci-image-tool then read the store as it is, and a
push back sends the registry's original bytes.
"""

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from servers import oci_ref

from contentstore import Store
from contentstore.local.metadata import ORIGINAL_LABEL
from contentstore.local.ociview import ORIGINAL_DIGEST_ANNOTATION
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import Descriptor
from contentstore.testing import build_image, build_index, push

pytestmark = pytest.mark.needs("skopeo", "docker-registry", "umoci")

PLATFORMS = [("linux", "amd64", None), ("linux", "arm64", "v8")]


def run(*args) -> str:
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, f"{args[0]} failed: {proc.stderr.strip()}"
    return proc.stdout


def raw_remote(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          check=True, capture_output=True).stdout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def every_oci_tool_reads(store: Store, ref: str, tmp_path, registry, podman: bool = True,
                         umoci: bool = True) -> None:
    """skopeo inspect and copy, umoci unpack, podman pull, oci-image-tool validate."""
    assert json.loads(run("skopeo", "inspect", f"oci:{store.root}:{ref}"))["Os"] == "linux"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{store.root}:{ref}",
        f"docker://{registry.host}/readback/{abs(hash(ref))}:1")
    if umoci:
        bundle = tmp_path / f"bundle-{abs(hash(ref))}"
        run("umoci", "unpack", "--rootless", "--image", f"{store.root}:{ref}", str(bundle))
        assert (bundle / "rootfs").is_dir()
    out = run("oci-image-tool", "validate", "--type", "image", "--ref", f"name={ref}", str(store.root))
    assert "Validation succeeded" in out
    if podman:
        docker_config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"  # podman wants one to exist
        if not docker_config.exists():
            docker_config.write_text("{}")
        with tempfile.TemporaryDirectory(prefix="cs-podman-") as scratch:  # podman: runroot < 50 chars
            run("podman", "--storage-driver", "vfs", "--root", f"{scratch}/root", "--runroot", f"{scratch}/run",
                "pull", "-q", f"oci:{store.root}:{ref}")


@pytest.fixture
def docker_typed(registry, source):
    """Push images made by the tests in Docker formats: schema2, and a manifest list."""
    build_image(source, "src/one:latest", {"etc/hello": "hi\n"})
    build_index(source, "src/multi:latest", PLATFORMS)
    one = push(oci_ref(source, "docker.io/src/one:latest"), registry, "team/schema2:1", "--format", "v2s2")
    multi = push(oci_ref(source, "docker.io/src/multi:latest"), registry, "team/list:1", "--all",
                 "--format", "v2s2")
    assert json.loads(raw_remote(one))["mediaType"] == mt.DOCKER_MANIFEST
    assert json.loads(raw_remote(multi))["mediaType"] == mt.DOCKER_MANIFEST_LIST
    return one, multi


@pytest.mark.needs("podman", "oci-image-tool")
def test_schema2_is_read_by_every_oci_tool_and_keeps_its_registry_digest(docker_typed, registry, store, tmp_path):
    ref, _ = docker_typed
    registry_digest = sha256(raw_remote(ref))
    image = store.pull(ref)
    assert image.digest == registry_digest and image.media_type == mt.DOCKER_MANIFEST
    entry = store.resolve(ref)
    assert entry.media_type == mt.OCI_MANIFEST and entry.annotations[ORIGINAL_DIGEST_ANNOTATION] == registry_digest
    assert store.labels(entry.digest)[ORIGINAL_LABEL] == registry_digest  # gc keeps the original
    converted = json.loads(store.content.read(entry.digest))
    assert converted["config"]["mediaType"] == mt.OCI_CONFIG
    assert {layer["mediaType"] for layer in converted["layers"]} == {mt.OCI_LAYER_GZIP}
    assert [layer["digest"] for layer in converted["layers"]] == [layer.digest for layer in image.layers]
    info = store.inspect(ref)
    assert info["digest"] == registry_digest and info["ociDigest"] == entry.digest
    assert [i.digest for i in store.images()] == [registry_digest, registry_digest]  # tag and repo@digest
    every_oci_tool_reads(store, ref, tmp_path, registry)
    # push sends the original bytes: the destination has the source's digest
    store.push(ref, f"{registry.host}/team/schema2-copy:1")
    assert sha256(raw_remote(f"{registry.host}/team/schema2-copy:1")) == registry_digest


@pytest.mark.needs("podman", "oci-image-tool")
@pytest.mark.parametrize("all_platforms", [False, True])
def test_manifest_list_is_read_by_every_oci_tool(docker_typed, registry, store, tmp_path, all_platforms):
    _, ref = docker_typed
    registry_digest = sha256(raw_remote(ref))
    image = store.pull(ref, platform=None if all_platforms else "linux/amd64", all_platforms=all_platforms)
    assert image.digest == registry_digest and image.media_type == mt.DOCKER_MANIFEST_LIST
    entry = store.resolve(ref)
    index = json.loads(store.content.read(entry.digest))
    assert index["mediaType"] == mt.OCI_INDEX and entry.annotations[ORIGINAL_DIGEST_ANNOTATION] == registry_digest
    platforms = sorted(m["platform"]["architecture"] for m in index["manifests"])
    assert platforms == (["amd64", "arm64"] if all_platforms else ["amd64"])  # what was pulled
    assert {m["mediaType"] for m in index["manifests"]} == {mt.OCI_MANIFEST}
    # umoci refuses any index of several platforms ("tag is ambiguous"), OCI-served or not
    every_oci_tool_reads(store, ref, tmp_path, registry, umoci=not all_platforms)
    if all_platforms:  # a push needs every child; copy and push send the original list
        store.push(ref, f"{registry.host}/team/list-copy:1")
        assert sha256(raw_remote(f"{registry.host}/team/list-copy:1")) == registry_digest
        store.copy(ref, f"{registry.host}/team/list-copied:1")
        assert sha256(raw_remote(f"{registry.host}/team/list-copied:1")) == registry_digest


@pytest.mark.needs("oci-image-tool")
def test_schema1_is_read_by_every_oci_tool(registry_factory, registry, source, store, tmp_path):
    old = registry_factory(schema1=True)
    build_image(source, "src/old:latest", {"a.txt": "1\n"})
    ref = push(oci_ref(source, "docker.io/src/old:latest"), old, "team/old:1", "--format", "v2s1")
    image = store.pull(ref)
    entry = store.resolve(ref)
    assert entry.media_type == mt.OCI_MANIFEST and entry.annotations[ORIGINAL_DIGEST_ANNOTATION] == image.digest
    every_oci_tool_reads(store, ref, tmp_path, registry, podman=False)


def test_gc_keeps_originals_with_their_converted_forms_and_drops_both(docker_typed, store):
    one, multi = docker_typed
    store.pull(one)
    store.pull(multi, all_platforms=True)
    build_image(store, "example.com/local:1")  # an OCI image beside them
    before = {b.digest for b in store.blobs()}
    assert store.gc().removed == [] and store.verify().ok
    originals = {store.labels(store.resolve(ref).digest)[ORIGINAL_LABEL] for ref in (one, multi)}
    assert originals <= before
    for name in list(store.references()):
        if not name.startswith("example.com/"):
            store.untag(name)
    removed = {b.digest for b in store.gc().removed}
    assert originals <= removed  # gone together with their converted forms
    assert store.images()[0].reference == "example.com/local:1" and store.verify().ok


def test_an_older_store_with_docker_typed_entries_is_upgraded_without_losing_digests(docker_typed, store, tmp_path):
    one, multi = docker_typed
    store.pull(one)
    store.pull(multi, all_platforms=True)
    expected = {i.reference: i.digest for i in store.images()}
    # What contentstore 0.1 wrote: named entries pointing at the Docker-typed originals.
    for name, entry in store.references().items():
        original = store.view.original(entry)
        store.layout.tag(name, Descriptor(original.media_type, original.digest, original.size))
    (store.state_dir / "oci-view").unlink()
    assert {e.media_type for e in store.references().values()} == {mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST}
    repaired = Store(store.root)
    repaired.verify(repair=True)  # verify --repair upgrades too
    assert {e.media_type for e in repaired.references().values()} == {mt.OCI_MANIFEST, mt.OCI_INDEX}
    assert {i.reference: i.digest for i in repaired.images()} == expected
    for name, entry in store.references().items():  # back to what 0.1 wrote
        original = store.view.original(entry)
        store.layout.tag(name, Descriptor(original.media_type, original.digest, original.size))
    (store.state_dir / "oci-view").unlink(missing_ok=True)
    reopened = Store(store.root)
    reopened.tag(one, "example.com/again:1")  # opened for writing: upgraded first
    assert {e.media_type for e in reopened.references().values()} == {mt.OCI_MANIFEST, mt.OCI_INDEX}
    images = {i.reference: i.digest for i in reopened.images()}
    assert images.pop("example.com/again:1") == expected[str(__import__("contentstore").Reference.parse(one))]
    assert images == expected


def test_images_made_locally_are_named_through_their_oci_form(store, tmp_path):
    config = store.put(json.dumps({"architecture": "amd64", "os": "linux",
                                   "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                           "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config.digest, "size": config.size},
                           "layers": []}).encode()
    digest = store.put(manifest).digest
    store.tag(digest, "example.com/made:1")
    entry = store.resolve("example.com/made:1")
    assert entry.media_type == mt.OCI_MANIFEST and entry.annotations[ORIGINAL_DIGEST_ANNOTATION] == digest
    assert store.image("example.com/made:1").digest == digest
    # a docker-archive's images, too
    archive = tmp_path / "made.tar"
    store.export("example.com/made:1", archive, format="docker")
    fresh = Store(tmp_path / "fresh")
    [loaded] = fresh.import_archive(archive)
    assert fresh.resolve(loaded.reference).media_type == mt.OCI_MANIFEST
