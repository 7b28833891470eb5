"""The content-addressable blob store: ``blobs/<alg>/<hex>`` plus a private ingest area.

Bytes enter only through an :class:`IngestWriter`: they stream into
``.contentstore/ingest/<key>/data`` while hashed, and :meth:`IngestWriter.commit` fsyncs
them and renames them into ``blobs/`` only when digest and size match. A reader therefore
never sees a partial or unverified blob.

An ingest is named by a *ref* (for a download, the expected digest). A writer that finds
an ingest of its ref left by a writer that died continues from where it stopped,
rebuilding the hash from the bytes already there (containerd's resumable ingests). Each
ingest is guarded by a ``flock``, released by the kernel when its holder dies.

Written in order (:meth:`IngestWriter.write`), an ingest's bytes on disk are a prefix of
the blob. Written in parallel ranges (:meth:`IngestWriter.write_at`, several connections
for one blob), they may have holes: the ranges held are then recorded in the ingest's
``state.json`` (only ever ranges whose bytes were written before), so that a writer that
resumes fetches only the missing ones; the digest is still computed over the file in
order, as the contiguous prefix grows (:meth:`IngestWriter.hash_held`), on the thread
that calls it, so the threads writing ranges never wait for the hash.

A blob read back for use (:meth:`ContentStore.open_verified`, :meth:`ContentStore.read`)
is hashed as it streams, and the read that reaches its end raises :class:`CorruptBlob`
instead of returning the last bytes when the file changed on disk since it was stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NamedTuple

from contentstore.errors import BlobNotFound, CorruptBlob, DigestMismatch, IngestLocked, SizeMismatch, WriteError
from contentstore.local.fsutil import (
    FileLock,
    StrayFile,
    atomic_file,
    atomic_write,
    fsync_dir,
    remove_files,
    write_error,
    writing,
)
from contentstore.model import digest as digests
from contentstore.model.digest import Digest
from contentstore.model.limits import CHUNK_SIZE

#: Bytes written to an ingest after which writeback of what it holds is started (an
#: ``fdatasync`` on another thread), so that a large blob goes to disk while it arrives.
FLUSH_BEHIND = 32 << 20


#: Bytes read back at a time to hash ranges that arrived before the prefix reached them.
READ_BACK = 1 << 20


class BlobInfo(NamedTuple):
    """A stored blob: ``digest, size = store.put(...)`` works too."""

    digest: Digest
    size: int


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int
    expected: str | None
    total: int | None
    updated_at: float
    started_at: float
    active: bool


class VerifiedReader(io.RawIOBase):
    """A stored blob read back for use: its bytes are hashed as they are read, and the
    read that reaches the blob's end raises :class:`CorruptBlob` instead of returning its
    last bytes when they do not hash to the blob's digest (the file changed on disk). A
    consumer that reads to the end has therefore either every byte, verified, or an
    error naming the blob; it never holds all of a changed blob.

    Seeking is free; a read that does not start where hashing stopped first rehashes the
    bytes before it (from the file, without moving), so a consumer that goes back (a
    retried request) or skips (an upload resumed mid-blob) is still verified in full.
    Once the whole blob has been verified, reads are not hashed again.
    """

    def __init__(self, path: Path, digest: Digest, size: int | None = None):
        super().__init__()
        self.digest = digest
        self.name = str(path)
        try:
            self._file = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        self._hasher = digest.hasher()
        self._hashed = 0       # the hasher holds bytes [0, _hashed)
        self._position = 0
        self._verified = False
        self._error: Exception | None = None
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            if size is not None and size >= 0 and size != self.size:
                self._wrong_size(size)
            if self.size == 0:
                self._check()
        except BaseException:
            self._file.close()
            raise

    def _wrong_size(self, stated: int) -> None:
        """The file's size is not the one a descriptor states: the blob is corrupt, or
        (when its bytes still hash right) the descriptor is wrong."""
        actual, _ = digests.of_file(self._file, self.digest.algorithm)
        if actual != self.digest:
            raise CorruptBlob(self.digest, actual, self.name)
        raise SizeMismatch(stated, self.size, f"blob {self.digest} (its descriptor states another size)")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._error is not None:
            raise self._error
        if not self._verified and self._position != self._hashed:
            self._catch_up()
        n = self._file.readinto(buffer) or 0
        if not self._verified:
            if n:
                with memoryview(buffer) as view, view.cast("B") as octets:
                    self._hasher.update(octets[:n])
                self._hashed += n
            if self._hashed >= self.size or (n == 0 and len(buffer)):
                self._check()  # the end (or a file that shrank since it was opened)
        self._position += n
        return n

    def _catch_up(self) -> None:
        """Make the hash cover exactly the bytes before the read position."""
        if self._position < self._hashed:
            self._hasher = self.digest.hasher()
            self._hashed = 0
        fd = self._file.fileno()
        while self._hashed < self._position:
            chunk = os.pread(fd, min(CHUNK_SIZE, self._position - self._hashed), self._hashed)
            if not chunk:
                break
            self._hasher.update(chunk)
            self._hashed += len(chunk)
        if self._hashed >= self.size:
            self._check()

    def _check(self) -> None:
        actual = digests.from_hasher(self._hasher.copy())
        if actual != self.digest or self._hashed != self.size:
            self._error = CorruptBlob(self.digest, actual, self.name)
            raise self._error
        self._verified = True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self.size
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        self._file.seek(offset)
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        """The blob's size (what ``requests`` sends as the body's length)."""
        return self.size

    @property
    def verified(self) -> bool:
        """Whether every byte has been read and found to hash to the digest."""
        return self._verified

    def readall(self) -> bytes:
        """The rest of the blob, in as few reads as its size allows."""
        result = bytearray()
        while True:
            buffer = bytearray(max(self.size - self._position, 0) + 1)
            n = self.readinto(buffer)
            if not n:
                return bytes(result)
            result += memoryview(buffer)[:n]

    def close(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None and not self.closed:
            file.close()
        super().close()


class IngestWriter:
    """Writes one ingest; get one from :meth:`ContentStore.writer`.

    Use as a context manager. Leaving the block without :meth:`commit` keeps the bytes
    written so far for a later writer of the same ref to resume; :meth:`abort` drops them.
    A write that fails (a full disk) is a :class:`WriteError` naming the blob and file.

    Two ways to write, not mixed in one writer: :meth:`write` appends at :attr:`offset`
    (the bytes hashed so far); or, for a blob of known size fetched in parallel ranges,
    :meth:`write_at` puts bytes anywhere (from several threads, hashing nothing),
    :meth:`missing` says what is still to fetch, :meth:`hash_held` (on another thread)
    hashes what continues the prefix, reading it back from the file, and
    :meth:`save_ranges` records the ranges held for a resume.

    :ivar offset: the bytes from the start that are written and hashed.
    """

    def __init__(self, store: "ContentStore", ref: str, directory: Path, lock: FileLock,
                 expected: Digest | None, total: int | None, algorithm: str,
                 state: dict | None = None):
        self._store = store
        self.ref = ref
        self.expected = expected
        self.total = total
        self._dir = directory
        self._lock = lock
        self._data_path = directory / "data"
        self._state = dict(state or {})
        self.what = f"blob {expected}" if expected else f"a new blob (ingest {ref!r})"
        self._hasher = hashlib.new(expected.algorithm if expected else algorithm)
        with writing(self.what, self._data_path):
            fd = os.open(self._data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._file: BinaryIO = open(fd, "r+b", buffering=0)
        self._fd = fd
        self.offset = 0
        #: Byte ranges ``[start, end)`` on disk, merged and sorted, when written in ranges
        #: (None: the file is a prefix of the blob).
        self._held: list[list[int]] | None = None
        self._held_lock = threading.Lock()
        self._hash_lock = threading.Lock()
        self._unflushed = 0
        self._flusher: threading.Thread | None = None
        self._flusher_lock = threading.Lock()
        #: Called with each piece of the blob, in order, as ranges are hashed (a diffID).
        self.on_hashed: Callable[[bytes], object] | None = None
        self._saved_held: list[list[int]] | None = None
        self._closed = False
        try:
            self._resume()
        except BaseException:
            self._file.close()
            raise

    def _resume(self) -> None:
        """Rehash what a previous writer left, so writing continues at its end."""
        size = os.fstat(self._fd).st_size
        ranges = self._state.pop("ranges", None)
        if ranges is not None and self.total is not None:
            limit = min(self.total, size)
            held = _merge([[a, min(b, limit)] for a, b in ranges if a < min(b, limit)])
            prefix = held[0][1] if held and held[0][0] == 0 else 0
            self._held = held
            self._saved_held = [list(r) for r in held]
        else:
            if self.total is not None and size > self.total:
                size = 0  # more than the blob can hold: it is not a prefix of it
            prefix = size
        hashed = self._rehash(prefix)
        if self._held is None or hashed < prefix:
            # A prefix (or ranges whose bytes are gone): keep what was hashed, drop the rest.
            self._held = None
            with writing(self.what, self._data_path):
                self._file.truncate(hashed)
        self.offset = hashed

    def _rehash(self, size: int) -> int:
        """Hash the first ``size`` bytes of the file; how many there were."""
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        done = 0
        while done < size:
            n = os.preadv(self._fd, [view[: min(CHUNK_SIZE, size - done)]], done)
            if not n:
                break
            self._hasher.update(view[:n])
            done += n
        return done

    def _pwrite(self, data, position: int) -> int:
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        written = 0
        try:
            while written < len(view):
                written += os.pwrite(self._fd, view[written:] if written else view, position + written)
        except OSError as exc:
            raise write_error(self.what, self._data_path, exc) from exc
        self._unflushed += written
        if self._unflushed >= FLUSH_BEHIND:
            self._flush_behind()
        return written

    def _flush_behind(self) -> None:
        """Have the bytes written so far written back to disk on another thread while
        more arrive, so that the fsync of :meth:`commit` finds little left to do."""
        with self._flusher_lock:
            if self._flusher is not None and self._flusher.is_alive():
                return
            self._unflushed = 0
            self._flusher = threading.Thread(target=self._fdatasync_quietly, name="flush-behind", daemon=True)
            self._flusher.start()

    def _fdatasync_quietly(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError:
            pass  # an early flush only; commit's fsync reports what fails

    def _join_flusher(self) -> None:
        flusher = self._flusher
        if flusher is not None:
            flusher.join()

    def write(self, data: bytes | memoryview) -> int:
        if self._held is not None:
            self._drop_ranges()
        n = self._pwrite(data, self.offset)
        self._hasher.update(data)
        self.offset += n
        return n

    def _drop_ranges(self) -> None:
        """Going on in order after ranges: keep the prefix, forget the rest."""
        with writing(self.what, self._data_path):
            self._file.truncate(self.offset)
        self._held = None
        self._saved_held = None
        self._store._write_state(self._dir, self._state, None)

    # -- parallel ranges -----------------------------------------------------------------

    def missing(self) -> list[tuple[int, int]]:
        """The byte ranges ``[start, end)`` of the blob not written yet (size known)."""
        if self.total is None:
            raise ValueError("ranges need the blob's size")
        with self._held_lock:
            held = [list(r) for r in self._held] if self._held is not None else \
                ([[0, self.offset]] if self.offset else [])
        gaps, position = [], 0
        for start, end in held:
            if start > position:
                gaps.append((position, start))
            position = max(position, end)
        if position < self.total:
            gaps.append((position, self.total))
        return gaps

    def write_at(self, position: int, data: bytes | memoryview) -> int:
        """Write ``data`` at ``position`` and record it as held, for :meth:`hash_held` to
        hash. Safe from several threads at once, for ranges that do not overlap."""
        if self.total is None or position < 0 or position + len(data) > self.total:
            raise ValueError(f"{self.what}: a range past the blob's size")
        with self._held_lock:
            if self._held is None:
                self._held = [[0, self.offset]] if self.offset else []
        n = self._pwrite(data, position)
        if n:
            with self._held_lock:
                _add_range(self._held, position, position + n)
        return n

    def hash_held(self, limit: int | None = None) -> bool:
        """Hash the bytes held that continue the hashed prefix, reading them back from
        the file (the page cache, just written), and advance :attr:`offset`; each piece
        goes to :attr:`on_hashed` too.

        :param limit: hash at most about this many bytes (the caller has other things
            to do in between).
        :return: whether held bytes are left to hash (only when stopped at ``limit``).
        """
        done = 0
        while True:
            with self._hash_lock:
                with self._held_lock:
                    held = self._held
                    end = held[0][1] if held and held[0][0] == 0 else 0
                if self.offset >= end:
                    return False
                if limit is not None and done >= limit:
                    return True
                piece = os.pread(self._fd, min(READ_BACK, end - self.offset), self.offset)
                if not piece:
                    raise WriteError(self.what, str(self._data_path),
                                     "the file is shorter than the ranges written")
                self._hashed(piece)
                done += len(piece)

    def _hashed(self, piece: bytes) -> None:
        self._hasher.update(piece)
        self.offset += len(piece)
        if self.on_hashed is not None:
            self.on_hashed(piece)

    def held_bytes(self) -> int:
        """How many bytes of the blob are on disk."""
        with self._held_lock:
            if self._held is None:
                return self.offset
            return sum(end - start for start, end in self._held)

    def save_ranges(self) -> None:
        """Record the ranges held in the ingest's state (each was written before), so a
        writer that resumes fetches only the others."""
        with self._held_lock:
            held = [list(r) for r in self._held] if self._held is not None else None
        if held is None or held == self._saved_held:
            return
        self._store._write_state(self._dir, self._state, held)
        self._saved_held = held

    def copy_from(self, stream: BinaryIO) -> None:
        """Write everything ``stream`` yields, in large chunks, with no extra copies."""
        readinto = getattr(stream, "readinto", None)
        if readinto is None:
            while chunk := stream.read(CHUNK_SIZE):
                self.write(chunk)
            return
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while n := readinto(buffer):
            self.write(view[:n])

    def truncate(self) -> None:
        """Drop what was written and start again at offset 0 (a server ignored Range)."""
        with writing(self.what, self._data_path):
            self._file.truncate(0)
        if self._held is not None:
            self._held = None
            self._saved_held = None
            self._store._write_state(self._dir, self._state, None)
        self._hasher = hashlib.new(self._hasher.name)
        self.offset = 0

    @property
    def digest(self) -> Digest:
        return digests.from_hasher(self._hasher.copy())

    def commit(self, size: int | None = None, expected: str | None = None) -> BlobInfo:
        """Verify and move the ingest into ``blobs/``; the writer is closed afterwards.

        The blob replaces a stored copy of the same digest: its bytes are verified, and
        the rename is atomic, so a copy that changed on disk is repaired this way.

        :raises DigestMismatch: the bytes hash to another digest; the ingest is dropped.
        :raises SizeMismatch: the byte count differs; the ingest is dropped.
        :raises WriteError: the bytes could not be written (kept for a resume).
        """
        expected = Digest(expected) if expected else self.expected
        size = size if size is not None else self.total
        try:
            self._join_flusher()
            with writing(self.what, self._data_path):
                self._file.flush()
                os.fsync(self._file.fileno())
            actual = self.digest
            if size is not None and size >= 0 and self.offset != size:
                raise SizeMismatch(size, self.offset, expected or actual)
            if expected and actual != expected:
                raise DigestMismatch(expected, actual, "blob")
        except (DigestMismatch, SizeMismatch):
            self.abort()
            raise
        self._store._install(self._data_path, actual)
        self._finish(remove=True)
        return BlobInfo(actual, self.offset)

    def abort(self) -> None:
        """Drop the ingest and its bytes."""
        self._finish(remove=True)

    def close(self) -> None:
        """Stop writing and keep the bytes for a later writer to resume."""
        if not self._closed and self._held is not None:
            with contextlib.suppress(OSError):
                self.save_ranges()
        self._finish(remove=False)

    def _finish(self, remove: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._join_flusher()  # it uses the file descriptor closed here
        try:
            self._file.close()
        except OSError:
            pass  # a write that failed (a full disk) fails again flushing: already reported
        if remove:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._lock.release()

    def __enter__(self) -> "IngestWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ContentStore:
    """Blobs by digest under ``root/blobs``, ingests under ``root/.contentstore/ingest``."""

    def __init__(self, root: Path, state_dir: Path):
        self.blobs_dir = Path(root) / "blobs"
        self.ingest_dir = Path(state_dir) / "ingest"
        self.tmp_dir = Path(state_dir) / "tmp"  # one-shot writes of in-memory content
        for directory in (self.blobs_dir, self.ingest_dir, self.tmp_dir):
            with writing("the store's folders", directory):
                directory.mkdir(parents=True, exist_ok=True)

    # -- reading -------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        d = Digest(digest)
        return self.blobs_dir / d.algorithm / d.hex

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def open(self, digest: str) -> BinaryIO:
        """The stored file as it is, unchecked (see :meth:`open_verified` to use a blob)."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def open_verified(self, digest: str, size: int | None = None) -> VerifiedReader:
        """The blob as a binary file whose reads are hashed; the read that reaches its end
        raises :class:`CorruptBlob` if the bytes changed on disk (see :class:`VerifiedReader`).

        :param size: the size a descriptor states: another size on disk is an error at once.
        """
        digest = Digest(digest)
        return VerifiedReader(self.path(digest), digest, size)

    def read(self, digest: str, limit: int | None = None) -> bytes:
        """A small blob's bytes (manifests, configs), verified; refuses more than ``limit``
        bytes. :raises CorruptBlob: the stored bytes changed on disk."""
        with self.open_verified(digest) as f:
            if limit is not None and f.size > limit:
                raise SizeMismatch(limit, f.size, f"{digest} (too large to read whole)")
            data = f.readall()
        return data

    def walk(self) -> Iterator[BlobInfo]:
        """Every blob, as digest and size; files that are not valid digests are skipped."""
        for algorithm in sorted(digests.ALGORITHMS):
            directory = self.blobs_dir / algorithm
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            for entry in sorted(entries, key=lambda e: e.name):
                name = f"{algorithm}:{entry.name}"
                if entry.is_file(follow_symlinks=False) and digests.is_valid(name):
                    with contextlib.suppress(FileNotFoundError):
                        yield BlobInfo(Digest(name), entry.stat().st_size)

    # -- writing -------------------------------------------------------------------------

    def _ingest_path(self, ref: str) -> Path:
        return self.ingest_dir / hashlib.sha256(ref.encode()).hexdigest()

    def writer(self, ref: str, expected: str | None = None, total: int | None = None,
               algorithm: str = digests.CANONICAL, wait: bool = True) -> IngestWriter:
        """Open (or resume) the ingest ``ref``.

        :param expected: the digest the bytes must have; also the hash algorithm.
        :param total: the size the bytes must have, when known.
        :param wait: block while another process writes this ref; else :class:`IngestLocked`.
        """
        expected_digest = Digest(expected) if expected else None
        digests.new_hasher(algorithm)
        what = f"blob {expected}" if expected else f"a new blob (ingest {ref!r})"
        directory = self._ingest_path(ref)
        while True:
            with writing(what, directory):
                directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(directory / "lock")
            try:
                with writing(what, directory / "lock"):
                    if not lock.acquire(blocking=wait):
                        raise IngestLocked(ref)
            except FileNotFoundError:
                continue  # the ingest was committed and removed while we waited
            break
        try:
            state = directory / "state.json"
            previous = _read_state(state)
            if previous.get("expected") not in (None, expected) or previous.get("total") not in (None, total):
                (directory / "data").unlink(missing_ok=True)  # another blob: start afresh
                previous = {}
            fields = {"ref": ref, "expected": expected, "total": total,
                      "started_at": previous.get("started_at", time.time())}
            ranges = previous.get("ranges") if total is not None else None
            self._write_state(directory, fields, ranges)
            if ranges is not None:
                fields["ranges"] = ranges
            return IngestWriter(self, ref, directory, lock, expected_digest, total, algorithm, fields)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _write_state(directory: Path, fields: dict, ranges: list[list[int]] | None) -> None:
        """An ingest's state: advisory (the data is the truth) except ``ranges``, which
        names only bytes written before it, so it is written after them."""
        state = dict(fields)
        if ranges is not None:
            state["ranges"] = ranges
        atomic_write(directory / "state.json", json.dumps(state).encode(), durable=False,
                     what=f"the state of ingest {fields.get('ref')!r}")

    def put(self, data: bytes | bytearray | memoryview | BinaryIO, expected: str | None = None,
            size: int | None = None, algorithm: str = digests.CANONICAL) -> BlobInfo:
        """Store bytes or a binary stream; with ``expected``, refuse any other content.

        ``data`` is always hashed, also when ``expected`` is already stored, so wrong bytes
        are refused whatever the store holds; right bytes replace the stored copy (an atomic
        rename of verified bytes), which repairs a copy that changed on disk.
        """
        expected = Digest(expected) if expected else None
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._put_bytes(memoryview(data), expected, size, algorithm)
        seekable = _seekable(data)
        base = data.tell() if seekable else 0
        if expected is None:
            # A fresh ref nobody can resume: drop what was written whatever goes wrong.
            with self.writer(f"put-{os.urandom(16).hex()}", total=size, algorithm=algorithm) as writer:
                try:
                    self._write_from(writer, data, base, seekable)
                    return writer.commit()
                except BaseException:
                    writer.abort()
                    raise
        ref = f"put-{expected}"
        with self.writer(ref, expected=expected, total=size, algorithm=algorithm) as writer:
            resumed = writer.offset
            if resumed and not seekable:
                writer.truncate()  # cannot skip ahead in this stream: start again
                resumed = 0
            try:
                self._write_from(writer, data, base + resumed, seekable)
                return writer.commit()
            except DigestMismatch:
                if not resumed:
                    raise
        # The bytes left by an earlier writer were not a prefix of these: start afresh once.
        with self.writer(ref, expected=expected, total=size, algorithm=algorithm) as writer:
            writer.truncate()
            self._write_from(writer, data, base, seekable)
            return writer.commit()

    def _put_bytes(self, data: memoryview, expected: Digest | None, size: int | None,
                   algorithm: str) -> BlobInfo:
        """In-memory content: hash first, then one private temp file, fsync, rename.

        Nothing to resume, so no named ingest, lock or state is needed. A stored copy that
        has exactly these bytes is left as it is; any other is replaced.
        """
        hasher = digests.new_hasher(expected.algorithm if expected else algorithm)
        hasher.update(data)
        actual = digests.from_hasher(hasher)
        if size is not None and size != len(data):
            raise SizeMismatch(size, len(data), expected or actual)
        if expected and actual != expected:
            raise DigestMismatch(expected, actual, "blob")
        target = self.path(actual)
        if not _holds(target, data):
            with writing(f"blob {actual}", target.parent):
                target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target, mode=0o444, temp_dir=self.tmp_dir, what=f"blob {actual}") as f:
                f.write(data)
        return BlobInfo(actual, len(data))

    @staticmethod
    def _write_from(writer: IngestWriter, data, offset: int, seekable: bool) -> None:
        if seekable:
            data.seek(offset)
        writer.copy_from(data)

    def _install(self, source: Path, digest: Digest) -> None:
        """Rename verified bytes into ``blobs/``, over any stored copy (which has the same
        bytes, or changed on disk and is repaired so)."""
        target = self.path(digest)
        with writing(f"blob {digest}", target):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(source, 0o444)
            os.replace(source, target)
            fsync_dir(target.parent)

    def delete(self, digest: str) -> None:
        path = self.path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    # -- ingests -------------------------------------------------------------------------

    def _ingest_dirs(self) -> list[Path]:
        """The ingest folders (anything else in ``ingest/`` is stray, see
        :meth:`remove_temporary`)."""
        try:
            entries = list(os.scandir(self.ingest_dir))
        except FileNotFoundError:
            return []
        return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))

    def ingests(self) -> list[IngestStatus]:
        """Every ingest in progress or left behind, with how far it got."""
        result = []
        for directory in self._ingest_dirs():
            lock = FileLock(directory / "lock")
            try:
                active = not lock.acquire(blocking=False)
            except FileNotFoundError:
                continue  # committed just now
            except OSError:
                active = False  # a lock file nobody can open (damaged): nobody holds it
            lock.release()
            result.append(_ingest_status(directory, active))
        return result

    def remove_stale_ingests(self, older_than: float, dry_run: bool = False) -> list[IngestStatus]:
        """Drop ingests nobody is writing and nobody touched for ``older_than`` seconds
        (``0``: every ingest no running process holds)."""
        cutoff = time.time() - older_than
        removed = []
        for directory in self._ingest_dirs():
            lock = FileLock(directory / "lock")
            try:
                if not lock.acquire(blocking=False):
                    continue  # a live writer holds it
            except FileNotFoundError:
                continue
            except OSError:
                pass  # a lock file nobody can open (damaged): nobody holds it
            try:
                status = _ingest_status(directory, active=False)
                if status.updated_at <= cutoff:
                    removed.append(status)
                    if not dry_run:
                        shutil.rmtree(directory, ignore_errors=True)
            finally:
                lock.release()
        return removed

    def remove_temporary(self, dry_run: bool = False) -> list[StrayFile]:
        """Remove what killed processes left that no ingest owns: one-shot writes in
        ``tmp/``, anything in ``ingest/`` that is not an ingest folder, temporary files
        beside blobs, and half-written ``state.json`` files of ingests nobody holds.

        Call it only while no writer holds a lease (gc holds the exclusive lock): every
        one-shot write is made under a lease, so none of these files is in use.
        """
        stray: list[Path] = []
        with contextlib.suppress(FileNotFoundError):
            stray.extend(sorted(self.tmp_dir.iterdir()))
        with contextlib.suppress(FileNotFoundError):
            stray.extend(sorted(Path(e.path) for e in os.scandir(self.ingest_dir)
                                if not e.is_dir(follow_symlinks=False)))
        for algorithm in sorted(digests.ALGORITHMS):
            with contextlib.suppress(FileNotFoundError):
                stray.extend(sorted(p for p in (self.blobs_dir / algorithm).iterdir()
                                    if p.name.startswith(".") and p.name.endswith(".tmp")))
        for directory in self._ingest_dirs():
            lock = FileLock(directory / "lock")
            try:
                if not lock.acquire(blocking=False):
                    continue
            except OSError:
                continue
            try:
                stray.extend(sorted(directory.glob(".state.json.*.tmp")))
            finally:
                lock.release()
        return remove_files(stray, dry_run)

    # -- checking ------------------------------------------------------------------------

    def rehash(self, digest: str) -> Digest:
        """What the stored bytes of ``digest`` hash to now."""
        digest = Digest(digest)
        with self.open(digest) as f:
            actual, _ = digests.of_file(f, digest.algorithm)
        return actual

    def verify(self, workers: int | None = None) -> tuple[int, list[tuple[Digest, Digest]]]:
        """Rehash every blob; return how many were checked and ``(name, actual)`` of bad ones."""
        blobs = list(self.walk())

        def check(info: BlobInfo):
            try:
                actual = self.rehash(info.digest)
            except BlobNotFound:
                return None  # deleted meanwhile (gc)
            return None if actual == info.digest else (info.digest, actual)

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            bad = [result for result in pool.map(check, blobs) if result]
        return len(blobs), bad

    def remove_corrupt(self, digest: str) -> bool:
        """Delete the stored copy of ``digest`` if its bytes (rehashed now) are not its
        digest's; return whether it was deleted. Blobs are read-only (0444), but their
        folder is writable, so unlinking works. Call it under the exclusive lock, so no
        writer installs good bytes between the check and the unlink."""
        try:
            if self.rehash(digest) == digest:
                return False
            self.delete(digest)
        except BlobNotFound:
            return False
        fsync_dir(self.path(digest).parent)
        return True


def _holds(path: Path, data: memoryview) -> bool:
    """Whether the file at ``path`` has exactly the bytes ``data``."""
    try:
        f = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    with f:
        if os.fstat(f.fileno()).st_size != len(data):
            return False
        offset = 0
        while offset < len(data):
            chunk = f.read(min(CHUNK_SIZE, len(data) - offset))
            if not chunk or chunk != data[offset:offset + len(chunk)]:
                return False
            offset += len(chunk)
        return True


def _merge(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted ``[start, end)`` ranges with overlapping and adjacent ones joined."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _add_range(held: list[list[int]], start: int, end: int) -> None:
    """Add ``[start, end)`` to the merged list ``held`` in place (mostly extending one)."""
    for existing in held:
        if existing[0] <= start <= existing[1]:
            existing[1] = max(existing[1], end)
            break
    else:
        held.append([start, end])
    held[:] = _merge(held)


def _valid_ranges(value) -> bool:
    return isinstance(value, list) and len(value) <= 100_000 and all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
        and 0 <= r[0] < r[1] for r in value)


def _read_state(path: Path) -> dict:
    """An ingest's advisory state; whatever is missing or malformed in it is left out."""
    state = {}
    with contextlib.suppress(OSError, ValueError, RecursionError):
        with open(path, "rb") as f:
            state = json.load(f)
    if not isinstance(state, dict):
        return {}
    valid = {
        "ref": lambda v: isinstance(v, str),
        "expected": lambda v: v is None or (isinstance(v, str) and digests.is_valid(v)),
        "total": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "started_at": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "ranges": _valid_ranges,
    }
    return {key: state[key] for key, ok in valid.items() if key in state and ok(state[key])}


def _ingest_status(directory: Path, active: bool) -> IngestStatus:
    state = _read_state(directory / "state.json")
    try:
        stat = (directory / "data").stat()
        offset, updated = stat.st_size, stat.st_mtime
    except OSError:
        offset, updated = 0, state.get("started_at", 0.0)
    if "ranges" in state:  # written in ranges: the bytes held, not the file's length
        offset = sum(min(end, offset) - start for start, end in state["ranges"] if start < min(end, offset))
    return IngestStatus(state.get("ref", directory.name), offset, state.get("expected"),
                        state.get("total"), updated, state.get("started_at", updated), active)


def _seekable(stream) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, OSError):
        return False
