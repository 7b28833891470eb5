"""File-system primitives the store is built from: locks and atomic, durable writes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644, durable: bool = True,
                temp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """A file to write that replaces ``path`` only when the block ends without error.

    It is written under a temporary name (in ``temp_dir``, default ``path``'s directory,
    which must be on the same file system), flushed, fsynced, given ``mode`` and renamed
    over ``path``; on error it is removed and ``path`` is left as it was. With
    ``durable=False`` the fsyncs are skipped: readers still see old or new bytes, never a
    mix, but a power cut may lose the change (for advisory state only).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=temp_dir or path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), mode)
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, mode, durable) as f:
        f.write(data)


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
