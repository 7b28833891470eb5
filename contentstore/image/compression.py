"""Streaming decompression of layer blobs, to compute diffIDs and to unpack.

Compressions are named ``gzip``, ``zstd``, ``none`` and ``not-a-tar`` (what the
``contentstore_layer_compression`` hook answers). Multi-member gzip and multi-frame
zstd streams are handled as single streams, as Go's readers do.

Two shapes: :func:`decompressor` (push compressed bytes in, get what they inflate to,
for hashing as a download arrives) and :func:`decompressed_reader` (a file object that
pulls from a compressed one, for unpacking). The reader never holds more than about
one read's worth of output and :data:`INPUT_CHUNK` of input, whatever the compression
ratio: a gigabyte of zeros gzips to a megabyte, and must not be inflated in one piece.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import BinaryIO

import zstandard

from contentstore.errors import InvalidManifest, VerificationError
from contentstore.model.digest import Digest, from_hasher
from contentstore.model.limits import CHUNK_SIZE

#: Compressed bytes read at a time by :class:`GzipReader`. Small, because zlib hands
#: back the input it has not used yet as a new bytes object on every call.
INPUT_CHUNK = 32 * 1024

class _Gzip:
    def __init__(self) -> None:
        self._new_member()

    def _new_member(self) -> None:
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._fed = False

    def decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            self._fed = True
            out.append(self._d.decompress(data))
            if self._d.eof:  # another gzip member may follow
                data = self._d.unused_data
                self._new_member()
            else:
                data = b""
        return b"".join(out)

    def finish(self) -> bytes:
        if self._fed:
            raise VerificationError("layer is a truncated gzip stream")
        return b""


class _Zstd:
    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def decompress(self, data: bytes) -> bytes:
        return self._d.decompress(data)

    def finish(self) -> bytes:
        return b""


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


#: ``not-a-tar`` (a plain file, a ``.wasm`` module): read as it is, like ``none``.
_DECOMPRESSORS = {"gzip": _Gzip, "zstd": _Zstd, "none": _Identity, "not-a-tar": _Identity}


def decompressor(compression: str):
    try:
        return _DECOMPRESSORS[compression]()
    except KeyError:
        raise InvalidManifest(f"unknown layer compression {compression!r}") from None


class DiffIDHasher:
    """Feed compressed bytes; get the digest of the uncompressed stream (the diffID).

    A stream that does not decompress is reported by :meth:`digest`, not by
    :meth:`update`, so that a download can finish and let its digest check speak first:
    corrupted bytes are a digest mismatch, a well-transferred broken layer is not.
    """

    def __init__(self, compression: str):
        self._decompressor = decompressor(compression)
        self._hasher = hashlib.sha256()
        self._error: VerificationError | None = None
        self.uncompressed_size = 0

    def update(self, data: bytes | memoryview) -> None:
        if self._error is not None:
            return
        try:
            out = self._decompressor.decompress(bytes(data) if isinstance(data, memoryview) else data)
        except (zlib.error, zstandard.ZstdError) as exc:
            self._error = VerificationError(f"layer does not decompress: {exc}")
            return
        self._hasher.update(out)
        self.uncompressed_size += len(out)

    def digest(self) -> Digest:
        if self._error is not None:
            raise self._error
        tail = self._decompressor.finish()
        self._hasher.update(tail)
        return from_hasher(self._hasher)


def diff_id_of(stream: BinaryIO, compression: str) -> Digest:
    """The diffID of a whole layer blob read from ``stream``."""
    hasher = DiffIDHasher(compression)
    while chunk := stream.read(CHUNK_SIZE):
        hasher.update(chunk)
    return hasher.digest()


class GzipReader:
    """The decompressed bytes of a (multi-member) gzip stream, read from ``source``.

    ``read(n)`` returns at most ``n`` bytes and only ``b""`` at the end of the last
    member; a stream that ends inside a member raises :class:`EOFError`, bytes after a
    member that do not start another one raise :class:`zlib.error` (as Go's reader).
    """

    def __init__(self, source: BinaryIO, input_chunk: int = INPUT_CHUNK):
        self._source = source
        self._input_chunk = input_chunk
        self._input = b""
        self._member = None  # the current member's decompressobj, None between members
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        if not self._input:
            self._input = self._source.read(self._input_chunk)
        return bool(self._input)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(CHUNK_SIZE), b""))
        while n and not self._eof:
            if self._member is None:
                if not self._fill():
                    self._eof = True  # the end, between members
                    break
                self._member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            elif not self._fill():
                raise EOFError("gzip stream ends inside a member (truncated)")
            out = self._member.decompress(self._input, n)
            if self._member.eof:
                self._input = self._member.unused_data  # another member may follow
                self._member = None
            else:
                self._input = self._member.unconsumed_tail
            if out:
                return out
        return b""

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._input = b""
        self._member = None


def decompressed_reader(source: BinaryIO, compression: str) -> BinaryIO:
    """A file object reading the decompressed bytes of ``source`` (``read(n)`` returns at
    most ``n`` bytes), with bounded memory. Closing it does not close ``source``."""
    if compression == "gzip":
        return GzipReader(source)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(source, read_size=INPUT_CHUNK,
                                                          read_across_frames=True, closefd=False)
    if compression == "none":
        return source
    raise InvalidManifest(f"unknown layer compression {compression!r}")
