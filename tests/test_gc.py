import json

import pytest

from contentstore.errors import UnsupportedMediaType
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.testing import build_image, build_index


def all_blobs(store):
    return {b.digest for b in store.blobs()}


def reachable_from(store, ref):
    image = store.image(ref)
    return {image.digest, image.config.digest, *(l.digest for l in image.layers)}


def test_gc_keeps_referenced_and_removes_the_rest(store):
    build_image(store, "example.com/keep:1", {"a.txt": "keep me"})
    build_image(store, "example.com/drop:1", {"b.txt": "drop me"})
    loose = store.put(b"unreferenced").digest
    keep = reachable_from(store, "example.com/keep:1")
    drop = reachable_from(store, "example.com/drop:1")
    store.untag("example.com/drop:1")

    dry = store.gc(dry_run=True)
    assert {b.digest for b in dry.removed} == drop | {loose}
    assert dry.removed_bytes == sum(b.size for b in dry.removed)
    assert all_blobs(store) == keep | drop | {loose}  # nothing deleted by a dry run

    report = store.gc()
    assert {b.digest for b in report.removed} == drop | {loose}
    assert all_blobs(store) == keep
    assert store.verify().ok
    assert store.gc().removed == []


def test_gc_follows_indexes_and_shared_layers(store):
    build_index(store, "example.com/multi:1", [("linux", "amd64", None), ("linux", "arm64", "v8")])
    shared = build_image(store, "example.com/single:1", {"hello.txt": "hello\n"})
    before = all_blobs(store)
    assert store.gc().removed == []
    assert all_blobs(store) == before
    store.untag("example.com/multi:1")
    removed = {b.digest for b in store.gc().removed}
    assert shared.digest not in removed and len(removed) >= 5
    assert store.image("example.com/single:1").digest == shared.digest


def test_gc_keeps_blobs_named_by_gc_ref_labels(store):
    desc = build_image(store, "example.com/converted:1")
    image = store.image("example.com/converted:1")
    schema1 = {"schemaVersion": 1, "name": "converted", "tag": "1", "architecture": "amd64",
               "fsLayers": [{"blobSum": image.layers[0].digest}],
               "history": [{"v1Compatibility": json.dumps({"id": "a" * 64})}]}
    original = store.put(json.dumps(schema1).encode()).digest
    store.set_label(desc.digest, "contentstore.gc.ref.content.schema1", original)
    assert original not in {b.digest for b in store.gc().removed}
    assert store.exists(original)


def test_gc_refuses_when_a_reference_cannot_be_read(store):
    weird = store.put(json.dumps({"schemaVersion": 2, "mediaType": "application/x-unknown"}).encode())
    store.layout.tag("example.com/weird:1", store.descriptor(weird.digest).__class__(
        "application/x-unknown", weird.digest, weird.size))
    loose = store.put(b"would be swept").digest
    with pytest.raises(UnsupportedMediaType) as info:
        store.gc()
    assert "gc refused" in str(info.value) and "application/x-unknown" in str(info.value)
    assert store.exists(loose)


def test_gc_removes_stale_ingests_only(store):
    with store.writer("stale") as writer:
        writer.write(b"partial")
    with store.writer("live", wait=False) as live:
        live.write(b"in progress")
        report = store.content.remove_stale_ingests(older_than=0)
        assert [i.ref for i in report] == ["stale"]
    assert [i.ref for i in store.content.ingests()] == ["live"]
    # through gc, with the default age, a fresh ingest stays
    assert store.gc().ingests == []
    leftover = store.content.tmp_dir / "put-killed"
    leftover.write_bytes(b"half a put")
    assert [f.path for f in store.content.remove_temporary()] == [leftover]
    assert not leftover.exists()


def test_verify_reports_corrupt_and_missing(store):
    desc = build_image(store, "example.com/app:1")
    image = store.image("example.com/app:1")
    layer_path = store.content.path(image.layers[0].digest)
    layer_path.chmod(0o644)
    layer_path.write_bytes(b"flipped")
    store.delete(desc.digest)
    report = store.verify()
    assert not report.ok
    assert report.corrupt == [(image.layers[0].digest, digests.of_bytes(b"flipped"))]
    assert report.missing == [("example.com/app:1", desc.digest)]
    assert mt.OCI_MANIFEST  # the store itself keeps working
