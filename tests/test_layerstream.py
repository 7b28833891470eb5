"""A layer blob read, hashed, decompressed and hashed again on a thread of its own
(LayerStream) or by a child process (LayerProcess): the same behaviour from both."""

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
from contentstore.image.layerprocess import LayerProcess, layer_source
from contentstore.image.layerstream import LayerStream


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def opener(blob: bytes):
    @contextmanager
    def open_blob():
        yield io.BytesIO(blob)
    return open_blob


@pytest.fixture(params=["thread", "process"])
def make(request, tmp_path):
    """Builds the producer under test for a blob given as bytes."""
    def build(blob: bytes, compression: str, digest, diff_id, name=None):
        if request.param == "thread":
            return LayerStream(opener(blob), compression, digest, diff_id, name)
        path = tmp_path / "blob"
        path.write_bytes(blob)
        source = layer_source(lambda: open(path, "rb"), compression, digest, diff_id, name)
        assert isinstance(source, LayerProcess) or compression == "none"
        return source
    return build


def read_all(stream) -> bytes:
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
def test_the_uncompressed_stream_in_bounded_chunks_and_both_digests_checked(make, compression, compress):
    blob = compress(DATA)
    with make(blob, compression, sha(blob), sha(DATA)) as stream:
        chunks = []
        while chunk := stream.next_chunk():
            assert isinstance(chunk, bytes)
            chunks.append(len(chunk))
        stream.check()
    assert sum(chunks) == len(DATA)
    assert max(chunks) <= max(OUTPUT_CHUNK, 1 << 20)


def test_a_damaged_blob_is_a_digest_mismatch_even_when_it_also_fails_to_decompress(make):
    blob = bytearray(gzip.compress(DATA, 1))
    good = sha(bytes(blob))
    blob[len(blob) // 2] ^= 0xFF
    with make(bytes(blob), "gzip", good, sha(DATA)) as stream:
        read_all(stream)
        with pytest.raises(DigestMismatch) as info:
            stream.check()
    assert info.value.expected == good


def test_a_wrong_diff_id_is_named_as_the_uncompressed_layer(make):
    blob = gzip.compress(DATA, 1)
    with make(blob, "gzip", sha(blob), sha(b"other"), name="L") as stream:
        read_all(stream)
        with pytest.raises(DigestMismatch, match="uncompressed layer L"):
            stream.check()


def test_a_truncated_stream_ends_early_and_check_says_it_does_not_decompress(make):
    blob = gzip.compress(DATA, 1)[:-100]  # the digest is of these bytes: they arrived as stored
    with make(blob, "gzip", sha(blob), None, name="L") as stream:
        assert len(read_all(stream)) < len(DATA)
        with pytest.raises(UnpackError, match="layer L does not decompress"):
            stream.check()


def test_check_blob_reads_the_whole_blob_after_the_consumer_stopped(make):
    blob = gzip.compress(DATA, 1)
    with make(blob, "gzip", sha(blob), sha(DATA)) as stream:
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


def test_a_child_that_dies_is_one_error_naming_the_layer(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(gzip.compress(DATA * 20, 1))
    with open(path, "rb") as blob:
        stream = LayerProcess(blob, "gzip", None, None, name="L")
    with stream:
        stream.next_chunk()
        stream._process.kill()
        with pytest.raises(UnpackError, match="layer L: the decompressing process failed"):
            read_all(stream)
            stream.check()


def test_closing_a_process_early_ends_it(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(gzip.compress(DATA * 20, 1))
    with open(path, "rb") as blob:
        stream = LayerProcess(blob, "gzip", None, None)
    stream.next_chunk()
    stream.close()
    assert stream._process.returncode is not None


def test_a_blob_that_is_no_file_is_read_by_a_thread():
    blob = gzip.compress(DATA, 1)
    with layer_source(opener(blob), "gzip", sha(blob), sha(DATA)) as stream:
        assert isinstance(stream, LayerStream)
        read_all(stream)
        stream.check()
