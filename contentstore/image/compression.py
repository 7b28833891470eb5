"""Streaming decompression of layer blobs, to compute diffIDs and to unpack.

Compressions are named ``gzip``, ``zstd``, ``none`` and ``not-a-tar`` (what the
``contentstore_layer_compression`` hook answers). Multi-member gzip and multi-frame
zstd streams are handled as single streams, as Go's readers do.

:func:`decompressor` takes compressed bytes pushed in and hands out what they inflate
to (for hashing as a download arrives, and for unpacking, whose
:class:`~contentstore.image.layerstream.LayerStream` pushes the blob in). It never holds
more than about
:data:`OUTPUT_CHUNK` of output and one input chunk, whatever the compression ratio: a
gigabyte of zeros gzips to a megabyte, and must not be inflated in one piece.

gzip is inflated by the fastest library installed (:data:`GZIP_BACKEND`): ISA-L
(``isal``), else zlib-ng (``zlib_ng``), else the standard library's ``zlib``. Their
errors are raised as :class:`zlib.error` whichever is used. All three, ``hashlib`` and
``zstandard`` release the GIL while they work, so a :class:`ThreadedDiffIDHasher` inflates
on another core while the bytes keep arriving (and are hashed, with what was inflated,
on the caller's).
"""

from __future__ import annotations

import collections
import hashlib
import sys
import threading
import zlib
from typing import BinaryIO, Callable

from contentstore.errors import InvalidManifest, VerificationError
from contentstore.model.digest import Digest, from_hasher
from contentstore.model.limits import CHUNK_SIZE

#: The most bytes one inflate call hands back: a bound on memory whatever the ratio.
OUTPUT_CHUNK = 256 * 1024

#: Compressed bytes given to one inflate call: what it has not used yet comes back as a
#: copy (``unconsumed_tail``), so a large chunk is fed in slices of this size.
FEED_CHUNK = 128 * 1024


def _gzip_backends() -> dict[str, tuple[object, tuple[type[BaseException], ...]]]:
    """The inflaters installed, fastest first: name -> (zlib-like module, its errors)."""
    found: dict[str, tuple[object, tuple[type[BaseException], ...]]] = {}
    try:
        from isal import isal_zlib
        found["isal"] = (isal_zlib, (isal_zlib.error,))
    except ImportError:  # no wheel for this platform: the next one
        pass
    try:
        from zlib_ng import zlib_ng
        found["zlib-ng"] = (zlib_ng, (zlib_ng.error,))
    except ImportError:
        pass
    found["zlib"] = (zlib, (zlib.error,))
    return found


#: Every gzip inflater installed, fastest first.
GZIP_BACKENDS = _gzip_backends()
#: The one used: the first of :data:`GZIP_BACKENDS`.
GZIP_BACKEND = next(iter(GZIP_BACKENDS))

Sink = Callable[[bytes], object]


class _GzipMembers:
    """What both gzip inflaters share: ``decompress`` through their ``feed``, and a
    stream that ends inside a member (``_fed`` still set) is truncated."""

    _fed: bool
    feed: Callable[[object, Sink], None]

    def decompress(self, data) -> bytes:
        out: list[bytes] = []
        self.feed(data, out.append)
        return b"".join(out)

    def finish(self) -> bytes:
        if self._fed:
            raise VerificationError("layer is a truncated gzip stream")
        return b""


class _Gzip(_GzipMembers):
    """Inflates gzip members one after another; hands out pieces of at most
    :data:`OUTPUT_CHUNK` bytes."""

    def __init__(self, backend: str | None = None) -> None:
        self._module, self._errors = GZIP_BACKENDS[backend or GZIP_BACKEND]
        self._new_member()

    def _new_member(self) -> None:
        self._d = self._module.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._fed = False

    def feed(self, data, sink: Sink) -> None:
        """Inflate ``data``, passing each piece of output to ``sink`` as it comes."""
        if len(data) <= FEED_CHUNK:
            return self._feed(data, sink)
        view = memoryview(data).cast("B")
        for start in range(0, len(view), FEED_CHUNK):
            self._feed(view[start:start + FEED_CHUNK], sink)

    def _feed(self, data, sink: Sink) -> None:
        try:
            while data:
                self._fed = True
                out = self._d.decompress(data, OUTPUT_CHUNK)
                if out:
                    sink(out)
                if self._d.eof:  # another gzip member may follow
                    data = self._d.unused_data
                    self._new_member()
                elif self._d.unconsumed_tail:
                    data = self._d.unconsumed_tail
                else:
                    # every input byte taken; output may still wait behind a full piece
                    while len(out) == OUTPUT_CHUNK and not self._d.eof:
                        out = self._d.decompress(b"", OUTPUT_CHUNK)
                        if out:
                            sink(out)
                    if self._d.eof:
                        data = self._d.unused_data
                        self._new_member()
                    else:
                        data = b""
        except self._errors as exc:
            if isinstance(exc, zlib.error):
                raise
            raise zlib.error(str(exc)) from None



class _IsalGzip(_GzipMembers):
    """gzip inflated by ISA-L's decompressor object, which keeps the input it has not
    used yet itself (no copy of the rest of a chunk at every call, as ``decompressobj``'s
    ``unconsumed_tail`` makes): whole chunks go in, pieces of at most
    :data:`OUTPUT_CHUNK` come out. Members one after another, as :class:`_Gzip`."""

    def __init__(self) -> None:
        from isal import igzip_lib

        self._igzip = igzip_lib
        self._errors = GZIP_BACKENDS["isal"][1]
        self._new_member()

    def _new_member(self) -> None:
        self._d = self._igzip.IgzipDecompressor(flag=self._igzip.DECOMP_GZIP)
        self._fed = False

    def feed(self, data, sink: Sink) -> None:
        if len(data) <= FEED_CHUNK:
            return self._feed(data, sink)
        view = memoryview(data).cast("B")  # the decompressor keeps a copy of what it has not used
        for start in range(0, len(view), FEED_CHUNK):
            self._feed(view[start:start + FEED_CHUNK], sink)

    def _feed(self, data, sink: Sink) -> None:
        try:
            while len(data):
                self._fed = True
                d = self._d
                out = d.decompress(data, OUTPUT_CHUNK)
                if out:
                    sink(out)
                while not d.eof and not d.needs_input:  # output waits behind a full piece
                    out = d.decompress(b"", OUTPUT_CHUNK)
                    if out:
                        sink(out)
                if d.eof:  # another gzip member may follow
                    data = d.unused_data
                    self._new_member()
                else:
                    data = b""
        except self._errors as exc:
            raise zlib.error(str(exc)) from None



class _Zstd:
    def __init__(self) -> None:
        import zstandard  # with the first zstd layer: gzip layers never need it

        self._sink: Sink | None = None
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            self, write_size=OUTPUT_CHUNK, closefd=False)

    def write(self, data) -> int:  # the stream writer's output: bounded pieces
        self._sink(bytes(data) if not isinstance(data, bytes) else data)
        return len(data)

    def feed(self, data, sink: Sink) -> None:
        self._sink = sink
        try:
            self._writer.write(data)
        finally:
            self._sink = None

    def decompress(self, data) -> bytes:
        out: list[bytes] = []
        self.feed(data, out.append)
        return b"".join(out)

    def finish(self) -> bytes:
        return b""


class _Identity:
    def feed(self, data, sink: Sink) -> None:
        if len(data):
            sink(data)

    def decompress(self, data) -> bytes:
        return bytes(data)

    def finish(self) -> bytes:
        return b""


#: ``not-a-tar`` (a plain file, a ``.wasm`` module): read as it is, like ``none``.
_DECOMPRESSORS = {"gzip": _Gzip, "zstd": _Zstd, "none": _Identity, "not-a-tar": _Identity}


def decompressor(compression: str):
    """``feed(data, sink)`` hands ``sink`` the output in bounded pieces; ``decompress(data)``
    returns it whole (for callers that bound their input); ``finish()`` at the end."""
    if compression == "gzip" and GZIP_BACKEND == "isal":
        return _IsalGzip()
    try:
        return _DECOMPRESSORS[compression]()
    except KeyError:
        raise InvalidManifest(f"unknown layer compression {compression!r}") from None


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What a decompressor raises for bytes that do not decompress (zstandard's errors
    only once it was imported: nothing else raises them)."""
    zstandard = sys.modules.get("zstandard")
    return (zlib.error, zstandard.ZstdError) if zstandard is not None else (zlib.error,)


class DiffIDHasher:
    """Feed compressed bytes; get the digest of the uncompressed stream (the diffID).

    A stream that does not decompress is reported by :meth:`digest`, not by
    :meth:`update`, so that a download can finish and let its digest check speak first:
    corrupted bytes are a digest mismatch, a well-transferred broken layer is not.
    ``update`` takes bytes or any buffer (a ``memoryview``) without copying it.
    """

    def __init__(self, compression: str):
        self._decompressor = decompressor(compression)
        self._hasher = hashlib.sha256()
        self._error: VerificationError | None = None
        self.uncompressed_size = 0

    def _out(self, data: bytes) -> None:
        self._hasher.update(data)
        self.uncompressed_size += len(data)

    def update(self, data: bytes | memoryview) -> None:
        if self._error is not None:
            return
        try:
            self._decompressor.feed(data, self._out)
        except _decompression_errors() as exc:
            self._error = VerificationError(f"layer does not decompress: {exc}")

    def digest(self) -> Digest:
        if self._error is not None:
            raise self._error
        tail = self._decompressor.finish()
        self._hasher.update(tail)
        return from_hasher(self._hasher)

    def close(self) -> None:
        """Nothing to stop (see :class:`ThreadedDiffIDHasher`)."""


class ThreadedDiffIDHasher:
    """A :class:`DiffIDHasher` whose inflation runs on a thread of its own, while the
    caller goes on receiving, writing and hashing the compressed bytes, and hashes what
    was inflated in between (in :meth:`update` and :meth:`digest`): two threads, each
    releasing the GIL while it works, so the two stages use two cores, and no third
    thread competes with the inflater for them.

    The two threads meet at two bounded queues (compressed bytes waiting to be inflated,
    :data:`INPUT_BYTES`; inflated bytes waiting to be hashed, :data:`OUTPUT_BYTES`), under
    one lock: a thread only waits when its side is full or empty, and only then is the
    other one woken, so each piece costs a few lock operations.

    ``update`` must be given bytes that do not change afterwards (``bytes``, not a
    reused buffer), and ``update`` and :meth:`digest` are called from one thread. Call
    :meth:`digest` at the end, or :meth:`close` to stop early.
    """

    #: Compressed bytes that may wait for the inflater (``update`` blocks past it).
    INPUT_BYTES = 512 * 1024
    #: Inflated bytes that may wait to be hashed (the inflater blocks past it).
    OUTPUT_BYTES = 1 << 20

    def __init__(self, compression: str):
        self._decompressor = decompressor(compression)
        self._hasher = hashlib.sha256()
        self._error: VerificationError | None = None
        self._failure: Exception | None = None
        self.uncompressed_size = 0
        self._lock = threading.Condition(threading.Lock())
        self._input: collections.deque = collections.deque()
        self._input_bytes = 0
        self._output: collections.deque = collections.deque()
        self._output_bytes = 0
        self._waiting = False     # one side waits on the condition (never both at once)
        self._inflated = False    # the inflater has put its last output
        self._stopped = False
        self._thread = threading.Thread(target=self._inflate, name="inflate", daemon=True)
        self._threads = [self._thread]
        self._thread.start()

    # -- the inflating thread --------------------------------------------------------------

    def _inflate(self) -> None:
        lock = self._lock
        try:
            while True:
                with lock:
                    while not self._input:
                        self._wait()
                    data = self._input.popleft()
                    self._input_bytes -= len(data) if data is not None else 0
                    self._wake()
                if data is None:
                    return
                if self._stopped or self._error is not None:
                    continue
                try:
                    self._decompressor.feed(data, self._emit)
                except _decompression_errors() as exc:
                    self._error = VerificationError(f"layer does not decompress: {exc}")
                except Exception as exc:  # noqa: BLE001 - raised by digest(); the input is still drained
                    self._failure = exc
        finally:
            with lock:
                self._inflated = True
                self._wake()

    def _emit(self, data: bytes) -> None:
        with self._lock:
            while self._output_bytes >= self.OUTPUT_BYTES and not self._stopped:
                self._wait()
            if self._stopped:
                return
            self._output.append(data)
            self._output_bytes += len(data)
            self._wake()

    # -- both sides, under the lock ----------------------------------------------------------

    def _wait(self) -> None:
        self._waiting = True
        self._lock.wait()

    def _wake(self) -> None:
        if self._waiting:
            self._waiting = False
            self._lock.notify()

    # -- the caller's thread ---------------------------------------------------------------

    def _take_output(self) -> collections.deque:
        """What was inflated so far (under the lock)."""
        taken = self._output
        if taken:
            self._output = collections.deque()
            self._output_bytes = 0
            self._wake()
        return taken

    def _hash(self, pieces: collections.deque) -> None:
        while pieces:
            piece = pieces.popleft()  # let go of each piece once hashed
            self._hasher.update(piece)
            self.uncompressed_size += len(piece)

    def update(self, data: bytes) -> None:
        lock = self._lock
        queued = False
        while not queued:
            with lock:
                if self._input_bytes < self.INPUT_BYTES or self._inflated:
                    if not self._inflated:
                        self._input.append(data)
                        self._input_bytes += len(data)
                        self._wake()
                    queued = True
                taken = self._take_output()
                if not taken and not queued:
                    self._wait()  # the input is full and nothing is inflated yet
                    continue
            self._hash(taken)  # outside the lock: the inflater goes on meanwhile

    def _finish(self) -> None:
        """Send the end, and hash what is inflated until the inflater is done."""
        lock = self._lock
        with lock:
            if not self._inflated:
                self._input.append(None)
                self._wake()
        while True:
            with lock:
                taken = self._take_output()
                if not taken:
                    if self._inflated:
                        break
                    self._wait()
                    continue
            if not self._stopped:
                self._hash(taken)
        self._thread.join()

    def digest(self) -> Digest:
        self._finish()
        if self._failure is not None:
            raise self._failure
        if self._error is not None:
            raise self._error
        self._hasher.update(self._decompressor.finish())
        return from_hasher(self._hasher)

    def close(self) -> None:
        """Stop without a digest (the download failed); waits for the thread."""
        with self._lock:
            self._stopped = True
            self._wake()
        self._finish()


def diff_id_of(stream: BinaryIO, compression: str) -> Digest:
    """The diffID of a whole layer blob read from ``stream``."""
    hasher = DiffIDHasher(compression)
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
        return hasher.digest()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    while n := readinto(buffer):
        hasher.update(view[:n])
    return hasher.digest()
