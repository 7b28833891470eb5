"""contentstore.local.metadata.Metadata: diffIDs, where blobs are, labels, in SQLite."""

import multiprocessing
import sqlite3

import pytest

from contentstore.errors import InvalidDigest
from contentstore.local.metadata import GC_REF_LABEL_PREFIX, ORIGINAL_LABEL, BlobSource, Metadata
from contentstore.model import digest as digests


def d(name: str) -> digests.Digest:
    return digests.of_bytes(name.encode())


@pytest.fixture
def metadata(tmp_path):
    return Metadata(tmp_path / "metadata.db")


def test_prepare_makes_a_new_database_ready_for_writes(tmp_path):
    """What a new store's first write would do (the tables, labels.json), done ahead: a
    pull calls it while its blobs arrive."""
    metadata = Metadata(tmp_path / "metadata.db")
    metadata.prepare()
    assert (tmp_path / "labels.json").is_file()
    tables = {row[0] for row in sqlite3.connect(tmp_path / "metadata.db").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"diffid", "blob_source", "label", "referrer", "image_summary"} <= tables
    metadata.prepare()  # again: nothing changes
    metadata.add_sources([d("blob")], "docker.io", "library/alpine")
    assert metadata.blob_sources(d("blob")) == [BlobSource(d("blob"), "docker.io", "library/alpine")]


# -- diffIDs ---------------------------------------------------------------------------------------


def test_diff_ids_both_ways_with_their_sources(metadata):
    metadata.add_diff_id(d("tar"), d("tar.gz"), "docker.io", "library/alpine")
    metadata.add_diff_id(d("tar"), d("tar.zst"), "ghcr.io", "team/app")
    metadata.add_diff_id(d("tar"), d("tar.gz"), "docker.io", "team/copy")
    metadata.add_diff_id(d("other tar"), d("other.gz"), "docker.io", "library/alpine")
    assert metadata.sources(d("tar")) == [  # most recently recorded first
        BlobSource(d("tar.gz"), "docker.io", "team/copy"),
        BlobSource(d("tar.zst"), "ghcr.io", "team/app"),
        BlobSource(d("tar.gz"), "docker.io", "library/alpine"),
    ]
    assert metadata.diff_id(d("tar.gz")) == d("tar") and metadata.diff_id(d("tar.zst")) == d("tar")
    assert metadata.diff_id(d("other.gz")) == d("other tar")
    assert isinstance(metadata.diff_id(d("tar.gz")), digests.Digest)
    assert metadata.diff_id(d("unknown")) is None and metadata.sources(d("unknown")) == []


def test_recording_a_diff_id_again_makes_it_the_most_recent(metadata):
    metadata.add_diff_id(d("tar"), d("tar.gz"), "docker.io", "a")
    metadata.add_diff_id(d("tar"), d("tar.gz"), "docker.io", "b")
    metadata.add_diff_id(d("tar"), d("tar.gz"), "docker.io", "a")
    assert [s.repository for s in metadata.sources(d("tar"))] == ["a", "b"]  # and no duplicate


def test_digests_are_validated(metadata):
    with pytest.raises(InvalidDigest):
        metadata.add_diff_id("sha256:nope", d("x"), "r", "p")
    with pytest.raises(InvalidDigest):
        metadata.add_sources([d("x"), "md5:abc"], "r", "p")
    with pytest.raises(InvalidDigest):
        metadata.set_label("not a digest", "k", "v")
    assert metadata.blob_sources(d("x")) == []  # the whole call was refused


# -- where blobs are ----------------------------------------------------------------------------------


def test_blob_sources_most_recent_first(metadata):
    metadata.add_sources([d("config"), d("layer")], "docker.io", "library/alpine")
    metadata.add_sources([d("layer")], "127.0.0.1:5000", "team/app")
    metadata.add_sources([d("layer")], "docker.io", "team/other")
    assert metadata.blob_sources(d("layer")) == [
        BlobSource(d("layer"), "docker.io", "team/other"),
        BlobSource(d("layer"), "127.0.0.1:5000", "team/app"),
        BlobSource(d("layer"), "docker.io", "library/alpine"),
    ]
    assert metadata.blob_sources(d("config")) == [BlobSource(d("config"), "docker.io", "library/alpine")]
    # seen there again (pulled again, pushed again): that is now the most recent record
    metadata.add_sources([d("layer")], "docker.io", "library/alpine")
    assert [s.repository for s in metadata.blob_sources(d("layer"))] == \
        ["library/alpine", "team/other", "team/app"]
    metadata.add_sources([], "docker.io", "x")  # nothing to record is fine


# -- labels ------------------------------------------------------------------------------------------


def test_labels_set_replace_delete(metadata):
    metadata.set_label(d("blob"), "a", "1")
    metadata.set_label(d("blob"), "b", "2")
    metadata.set_label(d("other"), "a", "x")
    metadata.set_label(d("blob"), "a", "3")
    assert metadata.labels(d("blob")) == {"a": "3", "b": "2"}
    metadata.set_label(d("blob"), "b", None)
    metadata.set_label(d("blob"), "never set", None)
    assert metadata.labels(d("blob")) == {"a": "3"}
    assert metadata.labels(d("other")) == {"a": "x"} and metadata.labels(d("none")) == {}


def test_gc_refs_only_from_gc_ref_labels(metadata):
    metadata.set_label(d("converted"), ORIGINAL_LABEL, d("original"))
    metadata.set_label(d("converted"), GC_REF_LABEL_PREFIX + "sbom", d("sbom"))
    metadata.set_label(d("sbom"), GC_REF_LABEL_PREFIX + "sig", d("signature"))
    # not gc references: other keys, look-alikes that a LIKE pattern would match
    metadata.set_label(d("converted"), "contentstore.note", d("note"))
    metadata.set_label(d("x"), "contentstoreXgcXref.a", d("lookalike 1"))
    metadata.set_label(d("x"), "contentstore_gc_ref_a", d("lookalike 2"))
    metadata.set_label(d("x"), "CONTENTSTORE.GC.REF.a", d("other case"))
    metadata.set_label(d("x"), "Contentstore.gc.ref.b", d("other case 2"))
    metadata.set_label(d("x"), "contentstore.gc.refs", d("no dot"))
    metadata.set_label(d("x"), "x.contentstore.gc.ref.a", d("not a prefix"))
    # a gc-ref label whose value is no digest keeps nothing
    metadata.set_label(d("y"), GC_REF_LABEL_PREFIX + "broken", "not a digest")
    refs = metadata.gc_refs()
    assert {k: sorted(v) for k, v in refs.items()} == {
        d("converted"): sorted([d("original"), d("sbom")]),
        d("sbom"): [d("signature")],
    }
    assert all(isinstance(v, digests.Digest) for values in refs.values() for v in values)


def test_forget_blobs_drops_their_labels_only(metadata):
    for name in ("a", "b", "c"):
        metadata.set_label(d(name), ORIGINAL_LABEL, d(name + " original"))
        metadata.set_label(d(name), "note", name)
        metadata.add_diff_id(d(name + " tar"), d(name), "docker.io", "team/app")
        metadata.add_sources([d(name)], "docker.io", "team/app")
    metadata.forget_blobs([d("a"), d("c"), d("never stored")])
    assert metadata.labels(d("a")) == {} and metadata.labels(d("c")) == {}
    assert metadata.labels(d("b")) == {ORIGINAL_LABEL: d("b original"), "note": "b"}
    assert list(metadata.gc_refs()) == [d("b")]
    # a registry may still hold a forgotten blob: push can still mount it from there
    assert metadata.diff_id(d("a")) == d("a tar") and metadata.blob_sources(d("a"))
    metadata.forget_blobs([])


def test_reopening_keeps_everything(tmp_path, metadata):
    metadata.add_diff_id(d("tar"), d("gz"), "r", "p")
    metadata.set_label(d("gz"), "k", "v")
    again = Metadata(tmp_path / "metadata.db")
    assert again.diff_id(d("gz")) == d("tar") and again.labels(d("gz")) == {"k": "v"}


def test_a_failed_write_leaves_no_partial_change(metadata):
    with pytest.raises(sqlite3.Error):
        with metadata._connect(write=True) as db:
            db.execute("INSERT INTO label VALUES (?, ?, ?)", (d("a"), "k", "v"))
            db.execute("INSERT INTO no_such_table VALUES (1)")
    assert metadata.labels(d("a")) == {}
    metadata.set_label(d("a"), "k", "v")  # the database is not left locked
    assert metadata.labels(d("a")) == {"k": "v"}


# -- several processes --------------------------------------------------------------------------

PROCESSES = 4
ROUNDS = 15


def _writer(path: str, number: int, start) -> None:
    metadata = Metadata(path)
    start.wait()
    for i in range(ROUNDS):
        blob = d(f"p{number} blob {i}")
        metadata.add_diff_id(d(f"p{number} tar {i}"), blob, "docker.io", f"team/p{number}")
        metadata.add_sources([blob, d("shared")], "docker.io", f"team/p{number}")
        metadata.set_label(blob, GC_REF_LABEL_PREFIX + "x", d(f"p{number} kept {i}"))
        metadata.set_label(d("shared"), f"p{number}", str(i))
        metadata.gc_refs()  # readers among the writers


def test_concurrent_writers_from_several_processes(tmp_path):
    path = tmp_path / "metadata.db"
    Metadata(path)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(path), n, start)) for n in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    metadata = Metadata(path)
    for n in range(PROCESSES):
        for i in range(ROUNDS):
            blob = d(f"p{n} blob {i}")
            assert metadata.diff_id(blob) == d(f"p{n} tar {i}")
            assert metadata.blob_sources(blob) == [BlobSource(blob, "docker.io", f"team/p{n}")]
    assert {s.repository for s in metadata.blob_sources(d("shared"))} == {f"team/p{n}" for n in range(PROCESSES)}
    assert metadata.labels(d("shared")) == {f"p{n}": str(ROUNDS - 1) for n in range(PROCESSES)}
    assert len(metadata.gc_refs()) == PROCESSES * ROUNDS
