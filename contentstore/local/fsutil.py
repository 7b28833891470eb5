"""File-system primitives the store is built from: locks and atomic, durable writes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from contentstore.errors import WriteError

#: Errors by which a file system says it has no room (disk full, quota, file too large).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def write_error(what: str, path: Path | str, error: OSError) -> WriteError:
    """A :class:`WriteError` naming ``what`` was being written to ``path``."""
    return WriteError(what, str(path), error.strerror or str(error), error.errno)


@contextlib.contextmanager
def writing(what: str, path: Path | str) -> Iterator[None]:
    """Name ``what`` and ``path`` in a failed write: an ``OSError`` that says the disk is
    full, or that names no file (a ``write``/``fsync`` error), becomes a
    :class:`WriteError`; others (which name their file) pass through."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE or not exc.filename:
            raise write_error(what, path, exc) from exc
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644, durable: bool = True,
                temp_dir: Path | None = None, what: str | None = None,
                sync_dir: bool = True) -> Iterator[BinaryIO]:
    """A file to write that replaces ``path`` only when the block ends without error.

    It is written under a temporary name (in ``temp_dir``, default ``path``'s directory,
    which must be on the same file system), flushed, fsynced, given ``mode`` and renamed
    over ``path``; on error it is removed and ``path`` is left as it was. With
    ``durable=False`` the fsyncs are skipped: readers still see old or new bytes, never a
    mix, but a power cut may lose the change (for advisory state only). With
    ``sync_dir=False`` only the directory's fsync is skipped: the file's bytes are on disk
    before its rename, so a power cut never leaves it partly written, but may undo the
    rename (the previous file stays whole).

    A full disk (or any write error that names no file) is a :class:`WriteError` naming
    ``what`` (default: the file's name) and ``path``, not the temporary file.
    """
    path = Path(path)
    with writing(what or path.name, path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=temp_dir or path.parent)
    try:
        f = os.fdopen(fd, "wb")
        try:
            try:
                yield f
            except OSError as exc:
                if exc.errno in NO_SPACE and not exc.filename:  # a write to ``f`` in the block
                    raise write_error(what or path.name, path, exc) from exc
                raise
            with writing(what or path.name, path):
                f.flush()
                os.fchmod(f.fileno(), mode)
                if durable:
                    os.fsync(f.fileno())
        finally:
            with contextlib.suppress(OSError):
                f.close()  # a flush that failed above fails here again: already reported
        with writing(what or path.name, path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable and sync_dir:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, durable: bool = True,
                 what: str | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, mode, durable, what=what) as f, writing(what or Path(path).name, path):
        f.write(data)


@dataclass(frozen=True)
class StrayFile:
    """A file (or folder) no writer uses, left by a process that was killed: gc removes it."""

    path: Path
    size: int


def remove_files(paths: Iterable[Path], dry_run: bool = False) -> list[StrayFile]:
    """Remove each of ``paths`` (a folder with what is in it); return them with their sizes."""
    removed = []
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                size = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())
                if not dry_run:
                    shutil.rmtree(path)
            else:
                size = path.lstat().st_size
                if not dry_run:
                    path.unlink()
        except FileNotFoundError:
            continue  # gone meanwhile
        removed.append(StrayFile(path, size))
    return removed


class FileLock:
    """An advisory ``flock`` on a file, shared or exclusive; released on close or death.

    The kernel drops the lock when the holding process dies, so a SIGKILLed writer never
    leaves a store locked.
    """

    def __init__(self, path: Path, shared: bool = False):
        self.path = Path(path)
        self.shared = shared
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if it is held."""
        flags = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        if not blocking:
            flags |= fcntl.LOCK_NB
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # The file may have been removed (and maybe recreated) while we waited:
            # then we hold a lock nobody else sees, so take the lock again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
