"""Layer inflation with each installed library (ISA-L, zlib-ng, zlib): the same
diffIDs, the same errors, output in bounded pieces whatever the ratio, and the threaded
pipeline equal to the plain hasher."""

import gzip
import hashlib
import os
import threading
import zlib

import pytest
import zstandard

from contentstore.errors import VerificationError
from contentstore.image import compression
from contentstore.image.compression import (
    GZIP_BACKENDS,
    OUTPUT_CHUNK,
    DiffIDHasher,
    ThreadedDiffIDHasher,
    decompressor,
)

BACKENDS = list(GZIP_BACKENDS)
DATA = os.urandom(300_000) + b"\0" * 3_000_000 + b"text " * 200_000


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setattr(compression, "GZIP_BACKEND", request.param)
    return request.param


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def feed(hasher, blob: bytes, step: int = 100_000):
    for start in range(0, len(blob), step):
        hasher.update(blob[start:start + step])
    return hasher.digest()


def test_isal_is_used_where_it_is_installed():
    pytest.importorskip("isal")
    assert compression.GZIP_BACKEND == "isal"


@pytest.mark.parametrize("threaded", [False, True])
def test_multi_member_gzip_gives_the_diffid(backend, threaded):
    blob = gzip.compress(DATA[:1_000_000]) + gzip.compress(DATA[1_000_000:])
    hasher = ThreadedDiffIDHasher("gzip") if threaded else DiffIDHasher("gzip")
    assert feed(hasher, blob) == sha(DATA)
    assert hasher.uncompressed_size == len(DATA)


@pytest.mark.parametrize("threaded", [False, True])
def test_multi_frame_zstd_and_plain_give_the_diffid(threaded):
    compressor = zstandard.ZstdCompressor()
    blob = compressor.compress(DATA[:1_000_000]) + compressor.compress(DATA[1_000_000:])
    make = ThreadedDiffIDHasher if threaded else DiffIDHasher
    assert feed(make("zstd"), blob) == sha(DATA)
    assert feed(make("none"), DATA) == sha(DATA)


def test_isal_decompressor_object_inflates_as_decompressobj():
    """With ISA-L, gzip goes through its decompressor object (which keeps the input it
    has not used, instead of copying it back at every call): the same output, pieces and
    errors as the zlib-like decompressobj, for every shape of stream."""
    pytest.importorskip("isal")
    assert isinstance(decompressor("gzip"), compression._IsalGzip)
    whole = gzip.compress(DATA)
    cases = {
        "members": gzip.compress(DATA[:1_000_000]) + gzip.compress(DATA[1_000_000:]),
        "garbage after a member": gzip.compress(b"x") + b"garbage that is not gzip",
        "truncated": whole[:-100],
        "wrong checksum": whole[:-8] + bytes([whole[-8] ^ 0xFF]) + whole[-7:],
        "empty": b"",
    }

    def run(make, blob, step):
        pieces = []
        try:
            inflater = make()
            for start in range(0, len(blob), step):
                inflater.feed(blob[start:start + step], pieces.append)
            inflater.finish()
        except (zlib.error, VerificationError) as exc:
            return type(exc).__name__
        assert max(map(len, pieces), default=0) <= OUTPUT_CHUNK
        return b"".join(pieces)

    for name, blob in cases.items():
        for step in (1_000, 300_000, 1 << 22):
            assert run(compression._IsalGzip, blob, step) == run(lambda: compression._Gzip("isal"), blob, step), name


def test_memoryview_input_is_hashed_as_bytes(backend):
    blob = gzip.compress(DATA)
    view = memoryview(bytearray(blob))
    hasher = DiffIDHasher("gzip")
    for start in range(0, len(view), 65_536):
        hasher.update(view[start:start + 65_536])
    assert hasher.digest() == sha(DATA)


@pytest.mark.parametrize("compression_name", ["gzip", "zstd"])
def test_output_comes_in_bounded_pieces_whatever_the_ratio(backend, compression_name):
    zeros = b"\0" * (64 << 20)
    blob = gzip.compress(zeros, 9) if compression_name == "gzip" else zstandard.ZstdCompressor(level=19).compress(zeros)
    assert len(blob) < 1 << 20  # one chunk of input, 64 MiB of output
    pieces = []
    decompressor(compression_name).feed(blob, lambda piece: pieces.append(len(piece)))
    assert sum(pieces) == len(zeros) and max(pieces) <= OUTPUT_CHUNK


@pytest.mark.parametrize("threaded", [False, True])
def test_corrupt_and_truncated_gzip_are_verification_errors(backend, threaded):
    make = ThreadedDiffIDHasher if threaded else DiffIDHasher
    blob = bytearray(gzip.compress(DATA))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(VerificationError):
        feed(make("gzip"), bytes(blob))
    with pytest.raises(VerificationError):
        feed(make("gzip"), gzip.compress(DATA)[:-100])


@pytest.mark.parametrize("threaded", [False, True])
def test_corrupt_zstd_is_a_verification_error(threaded):
    """zstandard is imported with the first zstd layer; its errors still mean a layer
    that does not decompress."""
    make = ThreadedDiffIDHasher if threaded else DiffIDHasher
    blob = bytearray(zstandard.ZstdCompressor().compress(DATA))
    blob[5] ^= 0xFF
    blob[-3] ^= 0xFF
    with pytest.raises(VerificationError):
        feed(make("zstd"), bytes(blob))


def test_threaded_hasher_stops_when_closed():
    hasher = ThreadedDiffIDHasher("gzip")
    hasher.update(gzip.compress(DATA)[:500_000])
    hasher.close()
    assert not any(thread.is_alive() for thread in hasher._threads)


def test_threaded_hasher_inflates_on_one_thread_and_hashes_on_the_callers():
    """Two threads in all, the caller's and the inflater: the caller hashes what is
    inflated as it goes (in update), so no third thread competes for the cores."""
    hashing_threads = set()

    class Spy:
        def __init__(self):
            self._real = hashlib.sha256()
            self.name = self._real.name

        def update(self, data):
            hashing_threads.add(threading.current_thread())
            self._real.update(data)

        def hexdigest(self):
            return self._real.hexdigest()

    before = threading.active_count()
    hasher = ThreadedDiffIDHasher("gzip")
    assert threading.active_count() == before + 1
    hasher._hasher = Spy()
    blob = gzip.compress(DATA)
    for start in range(0, len(blob), 10_000):
        hasher.update(blob[start:start + 10_000])
    assert hasher.digest() == sha(DATA)
    assert hashing_threads == {threading.current_thread()}
    assert threading.active_count() == before


def test_threaded_hasher_holds_bounded_bytes_and_stops_when_blocked(monkeypatch):
    """What waits between the two threads stays under the bounds whatever the ratio,
    and close() ends an inflater that waits for its output to be taken."""
    monkeypatch.setattr(ThreadedDiffIDHasher, "INPUT_BYTES", 1)
    monkeypatch.setattr(ThreadedDiffIDHasher, "OUTPUT_BYTES", 1)
    zeros = b"\0" * (32 << 20)
    blob = gzip.compress(zeros, 9)
    hasher = ThreadedDiffIDHasher("gzip")
    for start in range(0, len(blob), 4096):
        piece = blob[start:start + 4096]
        hasher.update(piece)
        assert hasher._input_bytes <= len(piece) and hasher._output_bytes <= OUTPUT_CHUNK
    assert hasher.digest() == sha(zeros)
    blocked = ThreadedDiffIDHasher("gzip")
    blocked.update(blob)  # inflates to far more than the output bound: the inflater waits
    closer = threading.Thread(target=blocked.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive() and not blocked._thread.is_alive()


def test_gzip_members_garbage_and_truncation_as_unpack_reads_them():
    """What unpack's layer thread pushes through :func:`decompressor` (Go's rules)."""
    out = []
    inflater = decompressor("gzip")
    inflater.feed(gzip.compress(DATA[:10]) + gzip.compress(DATA[10:]), out.append)
    inflater.finish()
    assert b"".join(out) == DATA
    with pytest.raises(zlib.error):  # bytes after a member that start no other one
        decompressor("gzip").feed(gzip.compress(b"x") + b"garbage that is not gzip", out.append)
    truncated = decompressor("gzip")
    truncated.feed(gzip.compress(DATA)[:-100], out.append)
    with pytest.raises(VerificationError):
        truncated.finish()
