"""LayerStream: a layer blob read, hashed, decompressed and hashed again on its own thread."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading
import time
from contextlib import contextmanager

import pytest
import zstandard

from contentstore.errors import DigestMismatch, UnpackError
from contentstore.image.compression import OUTPUT_CHUNK
from contentstore.image.layerstream import LayerStream


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def opener(blob: bytes):
    @contextmanager
    def open_blob():
        yield io.BytesIO(blob)
    return open_blob


def read_all(stream: LayerStream) -> bytes:
    out = []
    while chunk := stream.next_chunk():
        out.append(chunk)
    return b"".join(out)


DATA = os.urandom(300_000) + bytes(3_000_000) + b"tail"


@pytest.mark.parametrize("compression, compress", [
    ("gzip", lambda d: gzip.compress(d, 1)),
    ("zstd", lambda d: zstandard.ZstdCompressor().compress(d)),
    ("none", lambda d: d),
])
def test_the_uncompressed_stream_in_bounded_chunks_and_both_digests_checked(compression, compress):
    blob = compress(DATA)
    with LayerStream(opener(blob), compression, sha(blob), sha(DATA)) as stream:
        chunks = []
        while chunk := stream.next_chunk():
            assert isinstance(chunk, bytes)
            chunks.append(len(chunk))
        stream.check()
    assert sum(chunks) == len(DATA)
    if compression != "none":
        assert max(chunks) <= OUTPUT_CHUNK


def test_a_damaged_blob_is_a_digest_mismatch_even_when_it_also_fails_to_decompress():
    blob = bytearray(gzip.compress(DATA, 1))
    good = sha(bytes(blob))
    blob[len(blob) // 2] ^= 0xFF
    with LayerStream(opener(bytes(blob)), "gzip", good, sha(DATA)) as stream:
        read_all(stream)
        with pytest.raises(DigestMismatch) as info:
            stream.check()
    assert info.value.expected == good


def test_a_wrong_diff_id_is_named_as_the_uncompressed_layer():
    blob = gzip.compress(DATA, 1)
    with LayerStream(opener(blob), "gzip", sha(blob), sha(b"other"), name="L") as stream:
        read_all(stream)
        with pytest.raises(DigestMismatch, match="uncompressed layer L"):
            stream.check()


def test_a_truncated_stream_ends_early_and_check_says_it_does_not_decompress():
    blob = gzip.compress(DATA, 1)[:-100]  # the digest is of these bytes: they arrived as stored
    with LayerStream(opener(blob), "gzip", sha(blob), None, name="L") as stream:
        assert len(read_all(stream)) < len(DATA)
        with pytest.raises(UnpackError, match="layer L does not decompress"):
            stream.check()


def test_check_blob_reads_the_whole_blob_after_the_consumer_stopped():
    blob = gzip.compress(DATA, 1)
    with LayerStream(opener(blob), "gzip", sha(blob), sha(DATA)) as stream:
        stream.next_chunk()
        stream.check_blob()  # no mismatch: every byte was hashed though few were read


def test_an_error_reading_the_blob_reaches_the_consumer():
    @contextmanager
    def failing():
        raise OSError(5, "Input/output error")
        yield  # pragma: no cover

    with LayerStream(failing, "gzip", None, None) as stream:
        with pytest.raises(OSError, match="Input/output"):
            read_all(stream)


def test_closing_early_stops_the_thread_without_reading_the_rest():
    reads = []

    class Endless(io.RawIOBase):
        def readable(self):
            return True

        def read(self, n=-1):
            reads.append(n)
            return bytes(65536)

    @contextmanager
    def endless():
        yield Endless()

    stream = LayerStream(endless, "none", None, None)
    stream.next_chunk()
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 5
    assert not any(t.name.startswith("unpack ") and t.is_alive() for t in threading.enumerate())
    assert len(reads) < 1000
