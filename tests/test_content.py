import io
import os

import pytest

from contentstore.errors import BlobNotFound, DigestMismatch, IngestLocked, InvalidDigest, SizeMismatch
from contentstore.model import digest as digests


def blob_files(store):
    return sorted(p for p in (store.root / "blobs").rglob("*") if p.is_file())


def test_put_open_exists_delete_round_trip(store):
    info = store.put(b"hello world")
    assert info.digest == digests.of_bytes(b"hello world") and info.size == 11
    digest, size = info
    assert store.exists(digest)
    with store.open(digest) as f:
        assert f.read() == b"hello world"
    assert (store.root / "blobs" / "sha256" / digest.hex).is_file()
    assert [b.digest for b in store.blobs()] == [digest]
    store.delete(digest)
    assert not store.exists(digest)
    with pytest.raises(BlobNotFound):
        store.open(digest)
    with pytest.raises(BlobNotFound):
        store.delete(digest)


def test_put_stream_and_expected(store):
    data = os.urandom(5 << 20)
    expected = digests.of_bytes(data)
    info = store.put(io.BytesIO(data), expected=expected, size=len(data))
    assert info == (expected, len(data))
    # a second put of the same content is checked again and stores nothing new ...
    assert store.put(data, expected=expected) == info
    assert store.put(io.BytesIO(data), expected=expected) == info
    assert len(blob_files(store)) == 1
    # ... and other bytes are refused even though the digest is stored
    with pytest.raises(DigestMismatch):
        store.put(b"other bytes", expected=expected)
    with pytest.raises(DigestMismatch):
        store.put(io.BytesIO(b"other bytes"), expected=expected)
    assert store.content.rehash(expected) == expected and store.content.ingests() == []


def test_put_sha512(store):
    data = b"sha512 please"
    expected = digests.of_bytes(data, "sha512")
    assert store.put(data, expected=expected).digest == expected
    assert (store.root / "blobs" / "sha512" / expected.hex).is_file()
    assert store.exists(expected)


def test_mismatch_leaves_nothing_in_blobs(store):
    with pytest.raises(DigestMismatch) as info:
        store.put(b"evil bytes", expected=digests.of_bytes(b"good bytes"))
    assert "expected sha256:" in str(info.value)
    assert blob_files(store) == []
    assert store.content.ingests() == []
    with pytest.raises(SizeMismatch):
        store.put(b"12345", size=4)
    assert blob_files(store) == []


def test_invalid_digest_never_touches_the_filesystem(store):
    for bad in ("sha256:../../../etc/passwd", "sha256:" + "A" * 64):
        with pytest.raises(InvalidDigest):
            store.exists(bad)
        with pytest.raises(InvalidDigest):
            store.put(b"x", expected=bad)


def test_partial_ingest_is_invisible_and_resumes(store):
    data = os.urandom(3 << 20)
    expected = digests.of_bytes(data)
    half = len(data) // 2
    with store.writer(expected, expected=expected, size=len(data)) as writer:
        assert writer.offset == 0
        writer.write(data[:half])
    # nothing visible yet, but the ingest is recorded
    assert not store.exists(expected)
    [status] = store.content.ingests()
    assert status.ref == expected and status.offset == half and not status.active
    with store.writer(expected, expected=expected, size=len(data)) as writer:
        assert writer.offset == half  # resumed, hash state rebuilt from the bytes on disk
        writer.write(data[half:])
        assert writer.commit() == (expected, len(data))
    assert store.exists(expected)
    assert store.content.ingests() == []


def test_resume_with_wrong_prefix_fails_verification_and_is_dropped(store):
    data = b"A" * 1000
    expected = digests.of_bytes(data)
    with store.writer("ref", expected=expected) as writer:
        writer.write(b"B" * 500)
    with store.writer("ref", expected=expected) as writer:
        assert writer.offset == 500
        writer.write(data[500:])
        with pytest.raises(DigestMismatch):
            writer.commit()
    assert not store.exists(expected) and store.content.ingests() == []


def test_put_recovers_from_a_bad_leftover_prefix(store):
    data = b"A" * 1000
    expected = digests.of_bytes(data)
    with store.writer(f"put-{expected}", expected=expected) as writer:
        writer.write(b"B" * 500)
    assert store.put(io.BytesIO(data), expected=expected).digest == expected


def test_truncate_restarts_cleanly(store):
    data = b"0123456789" * 100
    with store.writer("r", expected=digests.of_bytes(data)) as writer:
        writer.write(b"garbage")
        writer.truncate()
        writer.write(data)
        assert writer.commit().digest == digests.of_bytes(data)


def test_second_writer_of_a_ref_is_refused_without_wait(store):
    with store.writer("same", wait=False):
        with pytest.raises(IngestLocked):
            store.writer("same", wait=False)


def test_oversized_leftover_is_discarded(store):
    data = b"x" * 100
    with store.writer("r", size=1000) as writer:
        writer.write(b"y" * 1000)
    with store.writer("r", expected=digests.of_bytes(data), size=100) as writer:
        assert writer.offset == 0  # different expectations: start afresh
        writer.write(data)
        writer.commit()


def test_blobs_are_read_only(store):
    info = store.put(b"immutable")
    mode = (store.root / "blobs" / "sha256" / info.digest.hex).stat().st_mode & 0o777
    assert mode == 0o444


def test_ranges_are_hashed_by_hash_held_not_by_the_writing_thread(store):
    """write_at only writes (the connections never wait for the hash); hash_held hashes
    the contiguous prefix, in steps when given a limit, and hands each piece on."""
    from contentstore.local import content

    data = os.urandom(3 * content.READ_BACK + 100)
    expected = digests.of_bytes(data)
    seen = []
    with store.content.writer(expected, expected=expected, total=len(data)) as writer:
        writer.on_hashed = seen.append
        writer.write_at(0, data[:content.READ_BACK + 10])
        writer.write_at(2 * content.READ_BACK, data[2 * content.READ_BACK:])
        assert writer.offset == 0 and seen == []  # written, not hashed
        assert writer.hash_held(limit=1) is True  # one piece, more held
        assert writer.offset == content.READ_BACK
        assert writer.hash_held() is False and writer.offset == content.READ_BACK + 10
        writer.write_at(content.READ_BACK + 10, data[content.READ_BACK + 10:2 * content.READ_BACK])
        assert writer.hash_held() is False and writer.offset == len(data)
        assert b"".join(seen) == data
        assert writer.commit() == (expected, len(data))
