"""A layer blob read, checked and decompressed on a thread of its own.

Unpacking has two kinds of work: turning the blob into the uncompressed tar (read,
hash for the digest, inflate, hash for the diffID: all C code that releases the GIL)
and applying the entries (Python, between system calls). :class:`LayerStream` does the
first on its own thread and hands the second the uncompressed bytes as immutable chunks
through a short queue, so the two run on two cores; memory stays bounded by
:data:`LayerStream.DEPTH` chunks of at most :data:`~contentstore.image.compression.OUTPUT_CHUNK`
(or one read, uncompressed) whatever the layer's size or ratio.

The thread always reads the blob to its end, so its digest is known even when the
consumer stops early or the layer does not decompress: a damaged blob is reported as a
digest mismatch, not as a strange layer.
"""

from __future__ import annotations

import queue
import threading
import zlib
from contextlib import AbstractContextManager
from typing import BinaryIO, Callable

import zstandard

from contentstore.errors import DigestMismatch, UnpackError, VerificationError
from contentstore.image.compression import decompressor
from contentstore.model.digest import Digest, from_hasher
from contentstore.model.limits import CHUNK_SIZE

_END = b""
_DECOMPRESSION_ERRORS = (zlib.error, zstandard.ZstdError, EOFError, VerificationError)


class LayerStream:
    """The uncompressed bytes of one layer blob, produced on a thread of its own.

    :param open_blob: returns the blob as a binary file object (a context manager).
    :param compression: ``gzip``, ``zstd`` or ``none``.
    :param digest: the blob's digest, checked by :meth:`check`; ``None`` for none.
    :param diff_id: the uncompressed stream's digest, checked by :meth:`check`; ``None``.

    Read with :meth:`next_chunk` until it returns ``b""``; then :meth:`check`. Use it as
    a context manager (or call :meth:`close`): leaving early stops the thread.
    """

    #: Chunks waiting between the thread and the consumer.
    DEPTH = 8

    def __init__(self, open_blob: Callable[[], AbstractContextManager[BinaryIO]], compression: str,
                 digest: str | None, diff_id: str | None, name: str | None = None,
                 read_size: int = CHUNK_SIZE):
        self._open_blob = open_blob
        self._decompressor = decompressor(compression)
        self._digest = digest
        self._diff_id = diff_id
        self.name = name or digest or "layer"
        self._read_size = read_size
        self._blob_hasher = Digest(digest).hasher() if digest else None
        self._diff_hasher = Digest(diff_id).hasher() if diff_id else None
        self._queue: queue.Queue[bytes] = queue.Queue(self.DEPTH)
        self._stopped = False  # decompress no more (the blob is still read and hashed)
        self._abandoned = False  # read no more
        self._ended = False
        self._undecompressable: str | None = None  # why the blob does not decompress
        self._failure: BaseException | None = None  # the blob could not be read
        # the diffID is hashed on a third thread: inflating and hashing 600 MiB are each
        # about half a second, more than one core gives while entries are applied
        self._to_hash: queue.Queue[bytes | None] | None = None
        self._hash_thread: threading.Thread | None = None
        if self._diff_hasher is not None:
            self._to_hash = queue.Queue(self.DEPTH)
            self._hash_thread = threading.Thread(target=self._hash, name=f"unpack-hash {self.name}", daemon=True)
            self._hash_thread.start()
        self._thread = threading.Thread(target=self._produce, name=f"unpack {self.name}", daemon=True)
        self._thread.start()

    # -- the thread ------------------------------------------------------------------------

    def _produce(self) -> None:
        try:
            with self._open_blob() as raw:
                while not self._abandoned and (data := raw.read(self._read_size)):
                    if self._blob_hasher is not None:
                        self._blob_hasher.update(data)
                    if self._undecompressable is None and not self._stopped:
                        try:
                            self._decompressor.feed(data, self._emit)
                        except _DECOMPRESSION_ERRORS as exc:
                            self._undecompressable = str(exc)
            if self._undecompressable is None and not self._stopped:
                try:
                    tail = self._decompressor.finish()
                    if tail:
                        self._emit(tail)
                except _DECOMPRESSION_ERRORS as exc:
                    self._undecompressable = str(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._failure = exc
        finally:
            if self._to_hash is not None:
                self._to_hash.put(None)
            self._queue.put(_END)

    def _emit(self, data: bytes) -> None:
        if self._to_hash is not None:
            self._to_hash.put(data)
        if not self._stopped:
            self._queue.put(data)

    def _hash(self) -> None:
        while (data := self._to_hash.get()) is not None:
            self._diff_hasher.update(data)

    # -- the consumer ----------------------------------------------------------------------

    def next_chunk(self) -> bytes:
        """The next piece of the uncompressed stream (immutable), ``b""`` at its end. A
        stream cut short by a decompression error ends there (see :meth:`check`)."""
        if self._ended:
            return _END
        data = self._queue.get()
        if not data:
            self._ended = True
            self._thread.join()
            if self._hash_thread is not None:
                self._hash_thread.join()
            if self._failure is not None:
                raise self._failure
        return data

    def drain(self) -> None:
        """Read what is left (end-of-archive blocks, padding): it is hashed too."""
        while self.next_chunk():
            pass

    def check_blob(self) -> None:
        """Wait for the whole blob to be read; raise
        :class:`~contentstore.errors.DigestMismatch` if it is not what its digest says."""
        self._finish()
        if self._blob_hasher is not None:
            actual = from_hasher(self._blob_hasher)
            if actual != self._digest:
                raise DigestMismatch(self._digest, actual, f"layer {self.name}")

    def check(self) -> None:
        """After the stream was read to its end: the blob's digest, that it decompressed
        whole, then the diffID."""
        self.check_blob()
        if self._undecompressable is not None:
            raise UnpackError(f"layer {self.name} does not decompress: {self._undecompressable}")
        if self._diff_hasher is not None:
            actual = from_hasher(self._diff_hasher)
            if actual != self._diff_id:
                raise DigestMismatch(self._diff_id, actual, f"uncompressed layer {self.name}")

    def _finish(self) -> None:
        """Let the thread read the blob to its end, dropping what it decompresses."""
        self._stopped = True
        while not self._ended:
            self.next_chunk()

    def close(self) -> None:
        """Stop the thread (at once: the rest of the blob is not read) and wait for it."""
        self._abandoned = True
        try:
            self._finish()
        except BaseException:  # noqa: BLE001 - closing after a failure already raised
            pass

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
