"""Referrers in the local store (OCI 1.1): the subject index in metadata.db, gc keeping a
referrer while it keeps its subject (and dropping both together), verify --repair
rebuilding the index from the stored manifests; sizes and exports leave referrers out;
put_artifact refusing bad input before it stores anything."""

import sqlite3
import tarfile

import pytest

from contentstore import Store
from contentstore.errors import BlobNotFound, InvalidArtifact, InvalidReference
from contentstore.local.metadata import Metadata
from contentstore.model import artifact
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import Descriptor
from contentstore.testing import build_image

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"


def d(name: str) -> digests.Digest:
    return digests.of_bytes(name.encode())


def attach(store: Store, subject: Descriptor, artifact_type: str, content: bytes, index: bool = True) -> Descriptor:
    """A referrer of ``subject`` in the store, as a pull or put_artifact stores one (or, with
    ``index=False``, as a raw blob put leaves it: not in the subject index)."""
    blob = store.put(content)
    store.put(artifact.EMPTY_CONFIG)
    raw = artifact.artifact_manifest([artifact.file_layer("file", blob.digest, blob.size)], artifact_type,
                                     subject, {"note": artifact_type})
    info = store.put(raw)
    descriptor = Descriptor(mt.OCI_MANIFEST, info.digest, info.size)
    if index:
        store.manifests.index_referrer(descriptor, store.manifest(descriptor))
    return descriptor


def blobs(store: Store) -> set[str]:
    return {b.digest for b in store.blobs()}


def test_subject_index_in_metadata(tmp_path):
    metadata = Metadata(tmp_path / "metadata.db")
    sbom = Descriptor(mt.OCI_MANIFEST, d("sbom"), 10, annotations={"a": "1"}, artifact_type=SBOM)
    sig = Descriptor(mt.OCI_MANIFEST, d("sig"), 20, artifact_type=SIG)
    metadata.add_referrer(d("image"), sbom)
    metadata.add_referrer(d("image"), sig)
    metadata.add_referrer(d("sbom"), sig)
    metadata.add_referrer(d("image"), sbom)  # again: still one row
    [first, second] = metadata.referrers(d("image"))
    assert first.to_json() == sbom.to_json() and second.to_json() == sig.to_json()
    assert metadata.referrer_digests() == {d("image"): [d("sbom"), d("sig")], d("sbom"): [d("sig")]}
    metadata.forget_blobs([d("sig")])  # gc deleted the signature
    assert [r.digest for r in metadata.referrers(d("image"))] == [d("sbom")]
    assert metadata.referrers(d("sbom")) == []
    metadata.replace_referrers([(d("other"), sig)])
    assert metadata.referrer_digests() == {d("other"): [d("sig")]}
    metadata.check()


def test_a_database_from_before_gets_the_table(tmp_path):
    path = tmp_path / "metadata.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE diffid (diff_id TEXT NOT NULL, digest TEXT NOT NULL, registry TEXT NOT NULL,
                             repository TEXT NOT NULL, PRIMARY KEY (diff_id, digest, registry, repository));
        CREATE TABLE blob_source (digest TEXT NOT NULL, registry TEXT NOT NULL, repository TEXT NOT NULL,
                                  PRIMARY KEY (digest, registry, repository));
        CREATE TABLE label (digest TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                            PRIMARY KEY (digest, key));
    """)
    db.close()
    metadata = Metadata(path)
    assert metadata.referrers(d("image")) == []
    metadata.check()


def test_gc_keeps_referrers_while_it_keeps_their_subject(store):
    image = build_image(store, "example.com/app:1", {"a.txt": "app"})
    sbom = attach(store, image, SBOM, b"the sbom")
    sig = attach(store, sbom, SIG, b"the signature of the sbom")  # recursively
    unrelated = attach(store, Descriptor(mt.OCI_MANIFEST, d("gone"), 5), SIG, b"of nothing here")
    before = blobs(store)

    report = store.gc()
    assert {b.digest for b in report.removed} == {unrelated.digest, digests.of_bytes(b"of nothing here")}
    assert blobs(store) == before - {b.digest for b in report.removed}
    assert {sbom.digest, sig.digest} <= blobs(store)
    assert store.verify().ok

    store.untag("example.com/app:1")
    store.gc()
    assert blobs(store) == set()  # the image went, and its referrers with it
    assert store.metadata.referrer_digests() == {}


def test_gc_keeps_a_referrer_the_index_does_not_know(store):
    """A manifest with a subject put as a raw blob (or a store whose metadata.db was lost)
    is not in the subject index: gc reads what it would sweep and keeps it all the same."""
    image = build_image(store, "example.com/app:1")
    sbom = attach(store, image, SBOM, b"raw sbom", index=False)
    sig = attach(store, sbom, SIG, b"raw signature", index=False)
    stray = attach(store, Descriptor(mt.OCI_MANIFEST, d("elsewhere"), 5), SIG, b"stray", index=False)
    assert store.metadata.referrer_digests() == {}
    removed = {b.digest for b in store.gc().removed}
    assert removed == {stray.digest, digests.of_bytes(b"stray")}
    assert {sbom.digest, sig.digest, digests.of_bytes(b"raw sbom"), digests.of_bytes(b"raw signature")} \
        <= blobs(store)
    assert store.metadata.referrer_digests() == {}  # gc writes nothing

    report = store.verify(repair=True)
    assert "rebuilt the subject index from the stored manifests: 2 referrers" in report.repaired
    assert [r.digest for r in store.metadata.referrers(image.digest)] == [sbom.digest]
    assert store.verify(repair=True).repaired == []  # nothing left to do


def test_a_lost_metadata_db_loses_no_referrer(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    image = build_image(store, "example.com/app:1")
    sbom = attach(store, image, SBOM, b"sbom")
    (root / ".contentstore" / "metadata.db").unlink()
    fresh = Store(root)
    assert fresh.metadata.referrers(image.digest) == []                # the cache is gone
    assert sbom.digest not in {b.digest for b in fresh.gc().removed}  # the referrer is not
    fresh.verify(repair=True)
    assert [r.digest for r in fresh.metadata.referrers(image.digest)] == [sbom.digest]


def test_sizes_and_exports_leave_referrers_out(store, tmp_path):
    image = build_image(store, "example.com/app:1")
    size = store.images()[0].size
    attach(store, image, SBOM, b"x" * 10_000)
    assert store.images()[0].size == size
    store.export("example.com/app:1", tmp_path / "app.tar")
    with tarfile.open(tmp_path / "app.tar") as tar:
        names = {name for name in tar.getnames() if name.startswith("blobs/sha256/")}
    assert digests.of_bytes(b"x" * 10_000).replace(":", "/") not in {n[len("blobs/"):] for n in names}
    assert len(names) == 3  # manifest, config, layer


def test_put_artifact_checks_everything_before_storing(store, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    for files, kwargs, error in [
        ([tmp_path / "missing.txt"], {}, FileNotFoundError),
        ([tmp_path], {}, InvalidArtifact),
        ([tmp_path / "a.txt", tmp_path / "a.txt"], {}, InvalidArtifact),
        ([(tmp_path / "a.txt", "not-a-type")], {}, InvalidArtifact),
        ([tmp_path / "a.txt"], {"artifact_type": "nonsense"}, InvalidArtifact),
        ([tmp_path / "a.txt"], {"annotations": {"": "x"}}, InvalidArtifact),
        ([tmp_path / "a.txt"], {"subject": "sha256:" + "0" * 64}, BlobNotFound),  # no registry to ask
    ]:
        with pytest.raises(error):
            store.put_artifact("example.com/art:1", files, **kwargs)
    with pytest.raises(InvalidReference):
        store.put_artifact(f"example.com/art@sha256:{'0' * 64}", [tmp_path / "a.txt"])
    assert store.blobs() == [] and store.references() == {}

    put = store.put_artifact("example.com/art:1", [tmp_path / "a.txt"], artifact_type=SBOM)
    assert store.images()[0].artifact_type == SBOM and store.resolve("example.com/art:1").digest == put.digest
    with pytest.raises(InvalidReference):  # a digest alone names no registry
        store.get_artifact(put.digest, tmp_path / "out")
    assert store.get_artifact(put.digest, tmp_path / "out", remote=False).files == [tmp_path / "out" / "a.txt"]
