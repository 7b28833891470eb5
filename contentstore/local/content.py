"""The content-addressable blob store: ``blobs/<alg>/<hex>`` plus a private ingest area.

Bytes enter only through an :class:`IngestWriter`: they stream into
``.contentstore/ingest/<key>/data`` while hashed, and :meth:`IngestWriter.commit` fsyncs
them and renames them into ``blobs/`` only when digest and size match. A reader therefore
never sees a partial or unverified blob.

An ingest is named by a *ref* (for a download, the expected digest). A writer that finds
an ingest of its ref left by a writer that died continues from where it stopped,
rebuilding the hash from the bytes already there (containerd's resumable ingests). Each
ingest is guarded by a ``flock``, released by the kernel when its holder dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

from contentstore.errors import BlobNotFound, DigestMismatch, IngestLocked, SizeMismatch
from contentstore.local.fsutil import FileLock, atomic_file, atomic_write, fsync_dir
from contentstore.model import digest as digests
from contentstore.model.digest import Digest
from contentstore.model.limits import CHUNK_SIZE


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


class IngestWriter:
    """Writes one ingest; get one from :meth:`ContentStore.writer`.

    Use as a context manager. Leaving the block without :meth:`commit` keeps the bytes
    written so far for a later writer of the same ref to resume; :meth:`abort` drops them.
    """

    def __init__(self, store: "ContentStore", ref: str, directory: Path, lock: FileLock,
                 expected: Digest | None, total: int | None, algorithm: str):
        self._store = store
        self.ref = ref
        self.expected = expected
        self.total = total
        self._dir = directory
        self._lock = lock
        self._data_path = directory / "data"
        self._hasher = hashlib.new(expected.algorithm if expected else algorithm)
        self._file: BinaryIO = open(self._data_path, "ab+")
        self.offset = 0
        self._closed = False
        self._resume()

    def _resume(self) -> None:
        """Rehash what a previous writer left, so writing continues at its end."""
        size = os.fstat(self._file.fileno()).st_size
        if self.total is not None and size > self.total:
            size = 0  # more than the blob can hold: it is not a prefix of it
        self._file.seek(0)
        if size:
            remaining = size
            buffer = bytearray(CHUNK_SIZE)
            view = memoryview(buffer)
            while remaining:
                n = self._file.readinto(view[: min(CHUNK_SIZE, remaining)])
                if not n:
                    break
                self._hasher.update(view[:n])
                remaining -= n
            size -= remaining
        self._file.truncate(size)
        self._file.seek(size)
        self.offset = size

    def write(self, data: bytes | memoryview) -> int:
        n = self._file.write(data)
        self._hasher.update(data)
        self.offset += n
        return n

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
        self._file.seek(0)
        self._file.truncate(0)
        self._hasher = hashlib.new(self._hasher.name)
        self.offset = 0

    @property
    def digest(self) -> Digest:
        return digests.from_hasher(self._hasher.copy())

    def commit(self, size: int | None = None, expected: str | None = None) -> BlobInfo:
        """Verify and move the ingest into ``blobs/``; the writer is closed afterwards.

        :raises DigestMismatch: the bytes hash to another digest; the ingest is dropped.
        :raises SizeMismatch: the byte count differs; the ingest is dropped.
        """
        expected = Digest(expected) if expected else self.expected
        size = size if size is not None else self.total
        try:
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
        self._finish(remove=False)

    def _finish(self, remove: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._file.close()
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
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def read(self, digest: str, limit: int | None = None) -> bytes:
        """A small blob's bytes (manifests, configs); refuses more than ``limit`` bytes."""
        with self.open(digest) as f:
            data = f.read(limit + 1 if limit is not None else -1)
        if limit is not None and len(data) > limit:
            raise SizeMismatch(limit, len(data), f"{digest} (too large to read whole)")
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
        directory = self._ingest_path(ref)
        while True:
            directory.mkdir(parents=True, exist_ok=True)
            lock = FileLock(directory / "lock")
            try:
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
            atomic_write(state, json.dumps({
                "ref": ref, "expected": expected, "total": total,
                "started_at": previous.get("started_at", time.time()),
            }).encode(), durable=False)  # advisory: the data file is the ingest's truth
            return IngestWriter(self, ref, directory, lock, expected_digest, total, algorithm)
        except BaseException:
            lock.release()
            raise

    def put(self, data: bytes | bytearray | memoryview | BinaryIO, expected: str | None = None,
            size: int | None = None, algorithm: str = digests.CANONICAL) -> BlobInfo:
        """Store bytes or a binary stream; with ``expected``, refuse any other content."""
        if expected:
            expected = Digest(expected)
            if self.exists(expected):
                return BlobInfo(expected, self.size(expected))
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._put_bytes(memoryview(data), expected, size, algorithm)
        ref = f"put-{expected}" if expected else f"put-{uuid.uuid4().hex}"
        seekable = _seekable(data)
        base = data.tell() if seekable else 0
        with self.writer(ref, expected=expected, total=size, algorithm=algorithm) as writer:
            if expected and self.exists(expected):  # another process stored it meanwhile
                writer.abort()
                return BlobInfo(expected, self.size(expected))
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

        Nothing to resume, so no named ingest, lock or state is needed.
        """
        hasher = digests.new_hasher(expected.algorithm if expected else algorithm)
        hasher.update(data)
        actual = digests.from_hasher(hasher)
        if size is not None and size != len(data):
            raise SizeMismatch(size, len(data), expected or actual)
        if expected and actual != expected:
            raise DigestMismatch(expected, actual, "blob")
        if not self.exists(actual):
            target = self.path(actual)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target, mode=0o444, temp_dir=self.tmp_dir) as f:
                f.write(data)
        return BlobInfo(actual, len(data))

    @staticmethod
    def _write_from(writer: IngestWriter, data, offset: int, seekable: bool) -> None:
        if seekable:
            data.seek(offset)
        writer.copy_from(data)

    def _install(self, source: Path, digest: Digest) -> None:
        target = self.path(digest)
        if target.exists():
            return  # another writer got there first with the same, verified bytes
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

    def ingests(self) -> list[IngestStatus]:
        """Every ingest in progress or left behind, with how far it got."""
        result = []
        for directory in sorted(self.ingest_dir.iterdir()):
            lock = FileLock(directory / "lock")
            try:
                active = not lock.acquire(blocking=False)
            except FileNotFoundError:
                continue  # committed just now
            lock.release()
            result.append(_ingest_status(directory, active))
        return result

    def remove_stale_ingests(self, older_than: float, dry_run: bool = False) -> list[IngestStatus]:
        """Drop ingests nobody is writing and nobody touched for ``older_than`` seconds."""
        cutoff = time.time() - older_than
        removed = []
        for directory in sorted(self.ingest_dir.iterdir()):
            lock = FileLock(directory / "lock")
            try:
                if not lock.acquire(blocking=False):
                    continue  # a live writer holds it
            except FileNotFoundError:
                continue
            try:
                status = _ingest_status(directory, active=False)
                if status.updated_at <= cutoff:
                    removed.append(status)
                    if not dry_run:
                        shutil.rmtree(directory, ignore_errors=True)
            finally:
                lock.release()
        for leftover in self.tmp_dir.iterdir():  # from a process killed mid-put
            with contextlib.suppress(FileNotFoundError):
                stat = leftover.stat()
                if stat.st_mtime <= cutoff:
                    removed.append(IngestStatus(leftover.name, stat.st_size, None, None,
                                                stat.st_mtime, stat.st_mtime, False))
                    if not dry_run:
                        leftover.unlink()
        return removed

    # -- checking ------------------------------------------------------------------------

    def verify(self, workers: int | None = None) -> tuple[int, list[tuple[Digest, Digest]]]:
        """Rehash every blob; return how many were checked and ``(name, actual)`` of bad ones."""
        blobs = list(self.walk())

        def check(info: BlobInfo):
            with self.open(info.digest) as f:
                actual, _ = digests.of_file(f, info.digest.algorithm)
            return None if actual == info.digest else (info.digest, actual)

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            bad = [result for result in pool.map(check, blobs) if result]
        return len(blobs), bad


def _read_state(path: Path) -> dict:
    with contextlib.suppress(FileNotFoundError, ValueError):
        with open(path, "rb") as f:
            state = json.load(f)
        if isinstance(state, dict):
            return state
    return {}


def _ingest_status(directory: Path, active: bool) -> IngestStatus:
    state = _read_state(directory / "state.json")
    try:
        stat = (directory / "data").stat()
        offset, updated = stat.st_size, stat.st_mtime
    except FileNotFoundError:
        offset, updated = 0, state.get("started_at", 0.0)
    return IngestStatus(state.get("ref", directory.name), offset, state.get("expected"),
                        state.get("total"), updated, state.get("started_at", updated), active)


def _seekable(stream) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, OSError):
        return False
