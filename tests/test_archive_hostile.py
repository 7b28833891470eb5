"""``import`` of hostile and malformed archives, built member by member with ``tarfile``.

Each bad archive ends in one clean :class:`ContentStoreError` (an :class:`ArchiveError`
unless bytes fail verification) whose one-line message names the archive and the member,
and leaves the store's references as they were. Links inside an archive (``docker save``
writes a shared layer once and a symlink to it) are followed, never out of the archive.
"""

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contentstore import Store
from contentstore.errors import ArchiveError, ContentStoreError, DigestMismatch, SizeMismatch, VerificationError
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import REF_NAME_ANNOTATION

# -- members ---------------------------------------------------------------------------------


def file(name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


def json_file(name: str, value):
    return file(name, value if isinstance(value, bytes) else json.dumps(value).encode())


def directory(name: str):
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def symlink(name: str, target: str):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def hardlink(name: str, target: str):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, None


def fifo(name: str):
    info = tarfile.TarInfo(name)
    info.type = tarfile.FIFOTYPE
    return info, None


def write_tar(path: Path, members) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info, _ = file(name, data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


LAYER = layer_tar({"hello.txt": b"hello\n"})
DIFF_ID = f"sha256:{sha256(LAYER)}"
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]}}).encode()
TAG = "example.com/hostile:1"

# -- docker-archives -----------------------------------------------------------------------

CONFIG_NAME = f"{sha256(CONFIG)}.json"
LAYER_NAME = f"{'a' * 64}/layer.tar"


def docker_entry(**change) -> dict:
    return {"Config": CONFIG_NAME, "RepoTags": [TAG], "Layers": [LAYER_NAME], **change}


def docker_archive(path: Path, manifest=None, members: dict | None = None) -> Path:
    """A docker-archive of one image; ``members`` replaces members by name (``None`` drops one)."""
    chosen = {
        CONFIG_NAME: file(CONFIG_NAME, CONFIG),
        LAYER_NAME: file(LAYER_NAME, LAYER),
        "manifest.json": json_file("manifest.json", [docker_entry()] if manifest is None else manifest),
    }
    chosen.update(members or {})
    return write_tar(path, [m for m in chosen.values() if m is not None])


# -- OCI archives --------------------------------------------------------------------------

OCI_LAYER = LAYER
OCI_MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.OCI_CONFIG, "digest": f"sha256:{sha256(CONFIG)}", "size": len(CONFIG)},
    "layers": [{"mediaType": mt.OCI_LAYER, "digest": DIFF_ID, "size": len(OCI_LAYER)}],
}).encode()
MANIFEST_DIGEST = f"sha256:{sha256(OCI_MANIFEST)}"


def oci_entry(name: str | None = TAG, **change) -> dict:
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": MANIFEST_DIGEST, "size": len(OCI_MANIFEST)}
    if name is not None:
        entry["annotations"] = {REF_NAME_ANNOTATION: name}
    return {**entry, **change}


def oci_index(*entries) -> dict:
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries or [oci_entry()])}


def blob(data: bytes):
    return file(f"blobs/sha256/{sha256(data)}", data)


def oci_archive(path: Path, index=None, members: dict | None = None) -> Path:
    """An OCI archive of one image; ``members`` replaces members by name (``None`` drops one)."""
    chosen = {
        "oci-layout": json_file("oci-layout", {"imageLayoutVersion": "1.0.0"}),
        "index.json": json_file("index.json", oci_index() if index is None else index),
    }
    for data in (CONFIG, OCI_LAYER, OCI_MANIFEST):
        info, _ = blob(data)
        chosen[info.name] = (info, data)
    chosen.update(members or {})
    return write_tar(path, [m for m in chosen.values() if m is not None])


# -- checks --------------------------------------------------------------------------------


def refused(store: Store, path: Path, *words: str, error=ArchiveError) -> str:
    """Import ``path``, which must fail with ``error``: one line that starts with the
    archive's path and holds ``words``; no reference added, moved or removed."""
    before = store.layout.names()
    with pytest.raises(error) as caught:
        store.import_archive(path)
    message = str(caught.value)
    assert isinstance(caught.value, ContentStoreError)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    assert store.layout.names() == before
    return message


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],
                          capture_output=True, text=True)


# -- the archives issue 12 names -----------------------------------------------------------


def test_docker_archive_shared_layer_through_symlink_imports(store, tmp_path):
    """``docker save`` writes a layer two images (or two positions) share once, and a
    symlink ``<id>/layer.tar -> ../<other id>/layer.tar`` for the other."""
    other = f"{'b' * 64}/layer.tar"
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [DIFF_ID, DIFF_ID]}}).encode()
    config_name = f"{sha256(config)}.json"
    path = docker_archive(tmp_path / "shared.tar", [docker_entry(Config=config_name, Layers=[LAYER_NAME, other])],
                          {CONFIG_NAME: file(config_name, config), other: symlink(other, f"../{LAYER_NAME}")})
    [loaded] = store.import_archive(path)
    image = store.image(TAG)
    assert loaded.reference == TAG and [layer.digest for layer in image.layers] == [DIFF_ID, DIFF_ID]
    assert store.verify().ok


@pytest.mark.parametrize("make, words", [
    (lambda p: docker_archive(p, members={CONFIG_NAME: directory(CONFIG_NAME)}), [CONFIG_NAME, "directory"]),
    (lambda p: docker_archive(p, members={LAYER_NAME: directory(LAYER_NAME)}), [LAYER_NAME, "directory"]),
    (lambda p: docker_archive(p, members={"manifest.json": directory("manifest.json")}),
     ["'manifest.json'", "directory"]),
    (lambda p: docker_archive(p, [docker_entry(Layers=[5])]), ["manifest.json entry 1", "Layers", "number"]),
    (lambda p: docker_archive(p, members={"manifest.json": symlink("manifest.json", "gone.json")}),
     ["'manifest.json'", "'gone.json'", "not in the archive"]),
    (lambda p: oci_archive(p, members={"index.json": symlink("index.json", "gone.json")}),
     ["'index.json'", "'gone.json'", "not in the archive"]),
    (lambda p: oci_archive(p, members={"index.json": file("index.json", b"[" * 100_000 + b"]" * 100_000)}),
     ["index.json", "nested too deeply"]),
    (lambda p: oci_archive(p, oci_index(oci_entry(5))), ["index.json entry 1", REF_NAME_ANNOTATION, "number"]),
], ids=["config-is-directory", "layer-is-directory", "manifest-json-is-directory", "layers-holds-number",
        "manifest-json-dangling-symlink", "index-json-dangling-symlink", "index-json-nested-100000",
        "ref-name-is-number"])
def test_the_eight_malformed_archives_of_issue_12(store, tmp_path, make, words):
    refused(store, make(tmp_path / "bad.tar"), *words)


def test_names_that_are_not_references_are_refused(store, tmp_path):
    cron = "../../../../etc/cron.d/x"
    refused(store, oci_archive(tmp_path / "oci.tar", oci_index(oci_entry(cron))), "index.json entry 1", repr(cron))
    refused(store, docker_archive(tmp_path / "docker.tar", [docker_entry(RepoTags=[cron])]),
            "manifest.json entry 1", repr(cron))
    assert not store.layout.names()


def test_repo_tags_as_a_string_is_refused_not_split_into_letters(store, tmp_path):
    path = docker_archive(tmp_path / "string.tar", [docker_entry(RepoTags=TAG)])
    refused(store, path, "manifest.json entry 1", "RepoTags", "must be a list")
    assert not store.layout.names()


def test_oci_index_with_a_wrong_size_is_refused(store, tmp_path):
    """Refused, not corrected: see ``_check_complete``; umoci reads the store afterwards
    (tests/test_archive.py checks that with the real tool)."""
    path = oci_archive(tmp_path / "size.tar", oci_index(oci_entry(size=len(OCI_MANIFEST) + 1)))
    message = refused(store, path, MANIFEST_DIGEST, "index.json entry 1", error=SizeMismatch)
    assert f"expected {len(OCI_MANIFEST) + 1} bytes, got {len(OCI_MANIFEST)}" in message


def test_a_wrong_size_inside_a_manifest_is_refused(store, tmp_path):
    manifest = json.loads(OCI_MANIFEST)
    manifest["layers"][0]["size"] += 7
    raw = json.dumps(manifest).encode()
    entry = oci_entry(digest=f"sha256:{sha256(raw)}", size=len(raw))
    path = oci_archive(tmp_path / "inner.tar", oci_index(entry), {"extra": blob(raw)})
    refused(store, path, DIFF_ID, "index.json entry 1", error=SizeMismatch)


# -- docker-archives of every shape ------------------------------------------------------------

DOCKER_CASES = {
    "manifest-not-json": (lambda p: docker_archive(p, b"\xff\xfe{"), ["manifest.json", "not valid JSON"]),
    "manifest-null": (lambda p: docker_archive(p, b"null"), ["manifest.json", "must be a list", "null"]),
    "manifest-object": (lambda p: docker_archive(p, {"Config": CONFIG_NAME}), ["manifest.json", "an object"]),
    "manifest-nested": (lambda p: docker_archive(p, b"[" * 100_000), ["manifest.json"]),
    "manifest-too-large": (lambda p: docker_archive(p, b" " * (4 * 1024 * 1024) + b"[]"),
                           ["'manifest.json'", "too large"]),
    "entry-number": (lambda p: docker_archive(p, [5]), ["manifest.json entry 1", "an image must be an object"]),
    "entry-list": (lambda p: docker_archive(p, [[CONFIG_NAME]]), ["manifest.json entry 1"]),
    "config-number": (lambda p: docker_archive(p, [docker_entry(Config=5)]), ["entry 1", "Config", "number"]),
    "config-list": (lambda p: docker_archive(p, [docker_entry(Config=[CONFIG_NAME])]), ["Config", "a list"]),
    "config-missing-key": (lambda p: docker_archive(p, [{"Layers": [LAYER_NAME]}]), ["Config", "null"]),
    "config-missing-member": (lambda p: docker_archive(p, members={CONFIG_NAME: None}),
                              [CONFIG_NAME, "not in the archive"]),
    "config-outside": (lambda p: docker_archive(p, [docker_entry(Config="../../etc/passwd")]),
                       ["'../../etc/passwd'", "outside the archive"]),
    "config-not-json": (lambda p: docker_archive(p, members={CONFIG_NAME: file(CONFIG_NAME, b"{")}),
                        [CONFIG_NAME, "not a valid image config"]),
    "config-os-number": (lambda p: docker_archive(p, members={CONFIG_NAME: json_file(CONFIG_NAME, {
        "os": 5, "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]}})}),
        [CONFIG_NAME, "not a valid image config"]),
    "config-nested": (lambda p: docker_archive(p, [docker_entry(Config=f"{sha256(b'[' * 100_000)}.json")], {
        CONFIG_NAME: file(f"{sha256(b'[' * 100_000)}.json", b"[" * 100_000)}), ["config", "nested too deeply"]),
    "config-no-rootfs": (lambda p: docker_archive(p, members={CONFIG_NAME: json_file(CONFIG_NAME, {})}),
                         [CONFIG_NAME, "rootfs"]),
    "config-list-json": (lambda p: docker_archive(p, members={CONFIG_NAME: json_file(CONFIG_NAME, [1])}),
                         [CONFIG_NAME, "not a valid image config"]),
    "layers-string": (lambda p: docker_archive(p, [docker_entry(Layers=LAYER_NAME)]), ["Layers", "string"]),
    "layers-object": (lambda p: docker_archive(p, [docker_entry(Layers={LAYER_NAME: 1})]), ["Layers", "object"]),
    "layers-null-item": (lambda p: docker_archive(p, [docker_entry(Layers=[None])]), ["Layers", "null"]),
    "layer-missing": (lambda p: docker_archive(p, members={LAYER_NAME: None}), [LAYER_NAME, "not in the archive"]),
    "layer-fifo": (lambda p: docker_archive(p, members={LAYER_NAME: fifo(LAYER_NAME)}),
                   [LAYER_NAME, "not a regular file"]),
    "layer-symlink-loop": (lambda p: docker_archive(p, members={
        LAYER_NAME: symlink(LAYER_NAME, "../b/layer.tar"), "b/layer.tar": symlink("b/layer.tar", f"../{LAYER_NAME}")}),
        [LAYER_NAME, "too many links"]),
    "layer-symlink-outside": (lambda p: docker_archive(p, members={
        LAYER_NAME: symlink(LAYER_NAME, "../../../../etc/passwd")}), [LAYER_NAME, "outside the archive"]),
    "layer-symlink-absolute": (lambda p: docker_archive(p, members={LAYER_NAME: symlink(LAYER_NAME, "/etc/passwd")}),
                               [LAYER_NAME, "'/etc/passwd'", "not in the archive"]),
    "layer-hardlink-missing": (lambda p: docker_archive(p, members={LAYER_NAME: hardlink(LAYER_NAME, "gone")}),
                               [LAYER_NAME, "'gone'", "not in the archive"]),
    "layer-count": (lambda p: docker_archive(p, [docker_entry(Layers=[LAYER_NAME, LAYER_NAME])]), ["entry 1", "layers"]),
    "repotags-string": (lambda p: docker_archive(p, [docker_entry(RepoTags="ab")]), ["RepoTags", "'ab'"]),
    "repotags-number": (lambda p: docker_archive(p, [docker_entry(RepoTags=[5])]), ["RepoTags", "number"]),
    "repotags-nested": (lambda p: docker_archive(p, [docker_entry(RepoTags=[[TAG]])]), ["RepoTags", "a list"]),
    "repotags-no-tag": (lambda p: docker_archive(p, [docker_entry(RepoTags=["example.com/x"])]),
                        ["'example.com/x'", "with a tag"]),
    "repotags-digest": (lambda p: docker_archive(p, [docker_entry(RepoTags=[f"example.com/x@{DIFF_ID}"])]),
                        ["RepoTags", "with a tag"]),
    "repotags-uppercase": (lambda p: docker_archive(p, [docker_entry(RepoTags=["Example/X:1"])]),
                           ["'Example/X:1'", "not a reference"]),
    "only-repositories": (lambda p: write_tar(p, [json_file("repositories", {"x": {"1": "a" * 64}})]),
                          ["without manifest.json"]),
}


@pytest.mark.parametrize("case", DOCKER_CASES)
def test_malformed_docker_archives(store, tmp_path, case):
    make, words = DOCKER_CASES[case]
    refused(store, make(tmp_path / "bad.tar"), *words,
            error=VerificationError if case == "layer-count" else ArchiveError)


def test_docker_archive_bytes_that_fail_verification_name_the_member(store, tmp_path):
    wrong_name = f"{'c' * 64}.json"
    path = docker_archive(tmp_path / "config.tar", [docker_entry(Config=wrong_name)],
                          {CONFIG_NAME: file(wrong_name, CONFIG)})
    refused(store, path, repr(wrong_name), "manifest.json entry 1", error=DigestMismatch)
    path = docker_archive(tmp_path / "layer.tar", members={LAYER_NAME: file(LAYER_NAME, LAYER[:-1] + b"x")})
    refused(store, path, repr(LAYER_NAME), "layer 1", DIFF_ID, error=DigestMismatch)
    assert not store.exists(f"sha256:{sha256(LAYER[:-1] + b'x')}")


def test_links_inside_the_archive_are_followed(store, tmp_path):
    """A hard link, an absolute symlink (taken from the archive's root, as Docker does),
    a symlinked directory and a symlinked manifest.json all lead to members inside."""
    path = docker_archive(tmp_path / "links.tar", [docker_entry(Config="cfg/config.json", Layers=["hard"])], {
        "real/config.json": file("real/config.json", CONFIG),
        CONFIG_NAME: symlink(CONFIG_NAME, "/real/config.json"),
        "cfg": symlink("cfg", "real"),
        "hard": hardlink("hard", LAYER_NAME),
        "manifest.json": symlink("manifest.json", "./meta/m.json"),
        "meta/m.json": json_file("meta/m.json", [docker_entry(Config="cfg/config.json", Layers=["hard"])]),
    })
    [loaded] = store.import_archive(path)
    assert loaded.reference == TAG and store.verify().ok


def test_repositories_of_any_shape_is_ignored_beside_manifest_json(store, tmp_path):
    """``docker load`` reads ``repositories`` only without ``manifest.json``; so does this."""
    for number, junk in enumerate([b"[" * 100_000, b"\x00", b"5", json.dumps({"x": [1, {"y": None}]}).encode()]):
        path = docker_archive(tmp_path / f"r{number}.tar", members={"repositories": file("repositories", junk)})
        assert [i.reference for i in store.import_archive(path)] == [TAG]


def test_truncated_and_corrupt_archives(store, tmp_path):
    good = docker_archive(tmp_path / "good.tar").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good[:good.index(LAYER[:100]) + 600])
    refused(store, cut, "truncated")
    packed = gzip.compress(good)
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(packed[:len(packed) // 2] + bytes(b ^ 0x55 for b in packed[len(packed) // 2:]))
    refused(store, broken)
    (tmp_path / "gz-cut.tar.gz").write_bytes(packed[:len(packed) // 2])
    refused(store, tmp_path / "gz-cut.tar.gz")


def test_a_layer_that_fails_half_way_leaves_no_ingest(store, tmp_path, monkeypatch):
    """An import's layer ingest has a name of its own that nothing could resume."""
    writer = store.content.writer

    def failing_writer(*args, **kwargs):
        opened = writer(*args, **kwargs)
        opened.write = lambda data: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        return opened

    monkeypatch.setattr(store.content, "writer", failing_writer)
    with pytest.raises(OSError):
        store.import_archive(docker_archive(tmp_path / "good.tar"))
    assert store.content.ingests() == [] and not store.layout.names()


# -- OCI archives of every shape -------------------------------------------------------------

OCI_CASES = {
    "index-directory": (lambda p: oci_archive(p, members={"index.json": directory("index.json")}),
                        ["'index.json'", "directory"]),
    "index-not-json": (lambda p: oci_archive(p, b"{"), ["index.json", "not valid JSON"]),
    "index-list": (lambda p: oci_archive(p, [oci_entry()]), ["index.json", "must be an object", "a list"]),
    "index-null": (lambda p: oci_archive(p, b"null"), ["index.json", "null"]),
    "manifests-object": (lambda p: oci_archive(p, {"manifests": oci_entry()}), ["manifests", "an object"]),
    "manifests-number": (lambda p: oci_archive(p, {"manifests": 5}), ["manifests", "number"]),
    "entry-number": (lambda p: oci_archive(p, oci_index(5)), ["index.json entry 1", "number"]),
    "entry-list": (lambda p: oci_archive(p, oci_index([MANIFEST_DIGEST])), ["index.json entry 1", "a list"]),
    "digest-number": (lambda p: oci_archive(p, oci_index(oci_entry(digest=5))), ["index.json entry 1"]),
    "digest-missing": (lambda p: oci_archive(p, oci_index({"mediaType": mt.OCI_MANIFEST, "size": 1})),
                       ["index.json entry 1", "digest"]),
    "size-string": (lambda p: oci_archive(p, oci_index(oci_entry(size=str(len(OCI_MANIFEST))))),
                    ["index.json entry 1", "size"]),
    "size-float": (lambda p: oci_archive(p, oci_index(oci_entry(size=float(len(OCI_MANIFEST))))),
                   ["index.json entry 1", "size"]),
    "media-type-number": (lambda p: oci_archive(p, oci_index(oci_entry(mediaType=5))), ["mediaType", "number"]),
    "media-type-missing": (lambda p: oci_archive(p, oci_index({"digest": MANIFEST_DIGEST, "size": len(OCI_MANIFEST)})),
                           ["mediaType", "null"]),
    "annotations-string": (lambda p: oci_archive(p, oci_index(oci_entry(annotations="x"))), ["index.json entry 1"]),
    "annotations-list": (lambda p: oci_archive(p, oci_index(oci_entry(annotations=[1, 2, 3]))), ["index.json entry 1"]),
    "platform-number": (lambda p: oci_archive(p, oci_index(oci_entry(platform=5))), ["index.json entry 1"]),
    "platform-os-number": (lambda p: oci_archive(p, oci_index(oci_entry(platform={"os": 5, "architecture": "x"}))),
                           ["index.json entry 1"]),
    "platform-features-numbers": (lambda p: oci_archive(p, oci_index(oci_entry(platform={
        "os": "linux", "architecture": "amd64", "os.features": [1]}))), ["index.json entry 1", "platform"]),
    "name-list": (lambda p: oci_archive(p, oci_index(oci_entry([TAG]))), [REF_NAME_ANNOTATION, "a list"]),
    "name-empty": (lambda p: oci_archive(p, oci_index(oci_entry(""))), ["index.json entry 1", "neither"]),
    "name-space": (lambda p: oci_archive(p, oci_index(oci_entry("a b"))), ["'a b'", "neither"]),
    "name-dotdot": (lambda p: oci_archive(p, oci_index(oci_entry(".."))), ["'..'", "neither"]),
    "name-digest": (lambda p: oci_archive(p, oci_index(oci_entry(f"example.com/x@{MANIFEST_DIGEST}"))),
                    ["index.json entry 1", "digest"]),
    "blob-missing": (lambda p: oci_archive(p, members={blob(OCI_MANIFEST)[0].name: None}),
                     ["lacks", MANIFEST_DIGEST, "index.json entry 1"]),
    "layer-missing": (lambda p: oci_archive(p, members={blob(OCI_LAYER)[0].name: None}), ["lacks", DIFF_ID]),
    "blob-bad-name": (lambda p: oci_archive(p, members={"junk": file("blobs/sha256/xyz", b"x")}),
                      ["'blobs/sha256/xyz'", "not named by a valid digest"]),
    "blob-dangling-symlink": (lambda p: oci_archive(p, members={
        blob(OCI_LAYER)[0].name: symlink(blob(OCI_LAYER)[0].name, "../../gone")}), ["'../../gone'"]),
    "manifest-not-json": (lambda p: oci_archive(p, oci_index(oci_entry(digest=f"sha256:{sha256(b'{')}", size=1)),
                                                {"junk": blob(b"{")}), ["index.json entry 1"]),
    "manifest-nested": (lambda p: oci_archive(p, oci_index(oci_entry(digest=f"sha256:{sha256(b'[' * 100_000)}",
                                                                     size=100_000)),
                                              {"junk": blob(b"[" * 100_000)}), ["index.json entry 1"]),
    "second-entry-bad-name": (lambda p: oci_archive(p, oci_index(oci_entry(), oci_entry("../x"))),
                              ["index.json entry 2", "'../x'"]),
    "second-entry-lacks-blob": (lambda p: oci_archive(p, oci_index(oci_entry(), oci_entry(
        "example.com/other:1", digest=f"sha256:{'d' * 64}"))), ["index.json entry 2", "lacks"]),
}


@pytest.mark.parametrize("case", OCI_CASES)
def test_malformed_oci_archives(store, tmp_path, case):
    make, words = OCI_CASES[case]
    refused(store, make(tmp_path / "bad.tar"), *words, error=ContentStoreError)


def test_oci_blob_that_fails_verification_names_the_member(store, tmp_path):
    name = blob(OCI_LAYER)[0].name
    path = oci_archive(tmp_path / "bad.tar", members={name: file(name, OCI_LAYER[:-1] + b"x")})
    refused(store, path, repr(name), error=DigestMismatch)


@pytest.mark.parametrize("name, local", [
    ("1.0", "1.0"), ("latest", "latest"), ("Release_2", "Release_2"),
    (TAG, TAG), ("example.com/app", "example.com/app:latest"), ("alpine:3", "docker.io/library/alpine:3"),
    (None, None),
])
def test_oci_names_a_reference_or_a_bare_tag(store, tmp_path, name, local):
    [loaded] = store.import_archive(oci_archive(tmp_path / "named.tar", oci_index(oci_entry(name))))
    assert loaded.reference == local and loaded.digest == MANIFEST_DIGEST
    assert list(store.layout.names()) == ([local] if local else [])
    assert store.verify().ok


def test_annotations_of_any_shape_are_not_copied(store, tmp_path):
    deep = {}
    for _ in range(200):
        deep = {"x": [deep]}
    entry = oci_entry(annotations={REF_NAME_ANNOTATION: TAG, "other": deep, "n": 5})
    store.import_archive(oci_archive(tmp_path / "annotated.tar", oci_index(entry)))
    assert store.layout.names()[TAG].annotations == {REF_NAME_ANNOTATION: TAG}


# -- nothing half-imported -------------------------------------------------------------------


def test_a_failing_docker_archive_adds_no_reference(store, tmp_path):
    """The second image's layer fails verification after the first image's blobs were
    stored: no name of either is given."""
    second = f"{'e' * 64}/layer.tar"
    path = docker_archive(tmp_path / "two.tar", [docker_entry(), docker_entry(RepoTags=["example.com/two:2"],
                                                                              Layers=[second])],
                          {second: file(second, b"not the layer")})
    refused(store, path, "layer 1", "entry 2", error=DigestMismatch)
    assert store.exists(DIFF_ID)  # verified, kept for gc
    assert not store.layout.names()


def test_a_failing_import_leaves_existing_references_as_they_were(store, tmp_path):
    store.import_archive(oci_archive(tmp_path / "first.tar", oci_index(oci_entry("example.com/keep:1"))))
    before = store.layout.names()
    path = oci_archive(tmp_path / "second.tar", oci_index(oci_entry("example.com/keep:1"), oci_entry(7)))
    refused(store, path, "index.json entry 2")
    assert store.layout.names() == before


def test_names_are_put_back_when_naming_fails_part_way(store, tmp_path, monkeypatch):
    store.import_archive(oci_archive(tmp_path / "old.tar", oci_index(oci_entry("example.com/one:1"))))
    old = store.layout.resolve("example.com/one:1")
    manifest = json.loads(OCI_MANIFEST)
    manifest["annotations"] = {"new": "yes"}
    raw = json.dumps(manifest).encode()
    newer = {"digest": f"sha256:{sha256(raw)}", "size": len(raw)}
    path = oci_archive(tmp_path / "new.tar", oci_index(oci_entry("example.com/one:1", **newer),
                                                       oci_entry("example.com/two:2", **newer)), {"m": blob(raw)})
    tag = store.layout.tag

    def failing_tag(name, target):
        if name == "example.com/two:2":
            raise OSError(28, "No space left on device")
        tag(name, target)

    monkeypatch.setattr(store.layout, "tag", failing_tag)
    with pytest.raises(OSError):
        store.import_archive(path)
    assert store.layout.names() == {"example.com/one:1": old}
    assert store.layout.resolve("example.com/one:1").digest == MANIFEST_DIGEST


# -- through the command line ----------------------------------------------------------------


@pytest.mark.parametrize("case", ["manifest-json-is-directory", "layers-holds-number", "index-json-nested-100000",
                                  "ref-name-is-number", "cron-name", "repotags-string", "wrong-size"])
def test_cli_prints_one_error_line(tmp_path, case):
    path = tmp_path / "bad.tar"
    {
        "manifest-json-is-directory": lambda: docker_archive(path, members={"manifest.json": directory("manifest.json")}),
        "layers-holds-number": lambda: docker_archive(path, [docker_entry(Layers=[5])]),
        "index-json-nested-100000": lambda: oci_archive(path, members={
            "index.json": file("index.json", b"[" * 100_000 + b"]" * 100_000)}),
        "ref-name-is-number": lambda: oci_archive(path, oci_index(oci_entry(5))),
        "cron-name": lambda: oci_archive(path, oci_index(oci_entry("../../../../etc/cron.d/x"))),
        "repotags-string": lambda: docker_archive(path, [docker_entry(RepoTags=TAG)]),
        "wrong-size": lambda: oci_archive(path, oci_index(oci_entry(size=1))),
    }[case]()
    out = cli(tmp_path / "store", "import", str(path))
    assert out.returncode == 1 and out.stdout == ""
    [line] = out.stderr.splitlines()
    assert line.startswith(f"contentstore: error: {path}: "), out.stderr
    assert out.stderr == line + "\n"
    assert json.loads((tmp_path / "store" / "index.json").read_text())["manifests"] == []


def test_cli_imports_docker_save_shared_layer(tmp_path):
    other = f"{'b' * 64}/layer.tar"
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [DIFF_ID, DIFF_ID]}}).encode()
    config_name = f"{sha256(config)}.json"
    path = docker_archive(tmp_path / "shared.tar", [docker_entry(Config=config_name, Layers=[LAYER_NAME, other])],
                          {CONFIG_NAME: file(config_name, config), other: symlink(other, f"../{LAYER_NAME}")})
    out = cli(tmp_path / "store", "import", str(path))
    assert (out.returncode, out.stdout, out.stderr) == (0, f"Loaded image: {TAG}\n", "")


# -- any JSON shape ----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from([TAG, LAYER_NAME, CONFIG_NAME, MANIFEST_DIGEST, DIFF_ID, mt.OCI_MANIFEST, "../x", ""]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
KEYS = ["Config", "Layers", "RepoTags", "manifests", "mediaType", "digest", "size", "annotations", "platform",
        REF_NAME_ANNOTATION, "os", "architecture", "os.features"]


def places(value, path=()):
    """Every place in a JSON document: the paths of its values, and new keys of its objects."""
    yield path
    if isinstance(value, dict):
        for key in KEYS:
            if key not in value:
                yield path + (key,)
        for key, child in value.items():
            yield from places(child, path + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from places(child, path + (i,))


def replaced(document, path, value):
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


def import_mutated(write, document, data) -> None:
    """Put a generated JSON value at a generated place of ``document``; the import either
    works or fails with one clean error, adding no reference."""
    path = data.draw(st.sampled_from(list(places(document))), label="place")
    value = data.draw(JSON, label="value")
    with tempfile.TemporaryDirectory() as tmp:
        archive = write(Path(tmp) / "fuzz.tar", replaced(document, path, value))
        store = Store(Path(tmp) / "store")
        try:
            store.import_archive(archive)
        except ContentStoreError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{archive}: ")
            assert store.layout.names() == {}
        else:
            assert store.verify().ok


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_docker_manifest_json_of_any_shape(data):
    import_mutated(docker_archive, [docker_entry()], data)


@FUZZ
@given(data=st.data())
def test_oci_index_json_of_any_shape(data):
    entry = oci_entry(platform={"os": "linux", "architecture": "amd64"})
    import_mutated(oci_archive, oci_index(entry), data)


@FUZZ
@given(data=st.data())
def test_docker_config_of_any_shape(data):
    config = json.loads(CONFIG)

    def write(path, value):
        raw = json.dumps(value).encode()
        name = f"{sha256(raw)}.json"
        return docker_archive(path, [docker_entry(Config=name)], {CONFIG_NAME: file(name, raw)})

    import_mutated(write, config, data)


@FUZZ
@given(data=st.data())
def test_oci_manifest_of_any_shape(data):
    def write(path, value):
        raw = json.dumps(value).encode()
        entry = oci_entry(digest=f"sha256:{sha256(raw)}", size=len(raw))
        return oci_archive(path, oci_index(entry), {"manifest": blob(raw)})

    import_mutated(write, json.loads(OCI_MANIFEST), data)
