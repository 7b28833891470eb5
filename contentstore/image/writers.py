"""File bodies and their metadata written by a small pool of threads during unpack.

Unpacking a real tree is mostly creating small files: for each, a write, an owner, a
mode, times and a close, each a system call. The unpacker creates every file itself
(``openat`` with ``O_CREAT | O_EXCL | O_NOFOLLOW`` relative to a directory it holds, so
the checks that keep it inside its directory stay in one thread, in order) and hands the
open descriptor, with the body and metadata, to :class:`FileWriters`; their threads do
the rest while it goes on to the next entry. System calls release the GIL, so these run
beside the tar reader and the decompressing thread.

Memory stays bounded: the bodies waiting (views of the decompressed stream's chunks,
never copies) are capped at :data:`FileWriters.BUDGET` bytes, each file counting at least
:data:`FileWriters.MIN_COST` so that open descriptors are bounded too. The first failure
is raised to the unpacker, naming its entry, at its next :meth:`~FileWriters.submit` or
:meth:`~FileWriters.wait`; later jobs are then only closed.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass

from contentstore.errors import UnpackError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FileJob:
    """One file the unpacker created and opened for writing.

    :ivar fd: the open descriptor; the writer closes it.
    :ivar pieces: the body, in order (buffers that do not change).
    :ivar mtime_ns: set as both access and modification time, last.
    :ivar owner: ``(uid, gid)`` to set, or ``None`` to leave it (rootless).
    :ivar mode: the mode to set, or ``None`` when the file was created with it.
    :ivar entry: the tar entry's name, for errors.
    """

    fd: int
    pieces: list
    size: int
    mtime_ns: int
    owner: tuple[int, int] | None
    mode: int | None
    entry: str


def write_file(job: FileJob) -> None:
    """Write ``job``'s body and metadata to its descriptor (owner before mode: chown
    clears set-id bits); does not close it."""
    fd = job.fd
    for piece in job.pieces:
        view = memoryview(piece)
        written = os.write(fd, view)
        while written < len(view):
            written += os.write(fd, view[written:])
    if job.owner is not None:
        try:
            os.chown(fd, *job.owner)
        except OSError as exc:  # an id the user namespace does not map
            log.debug("entry %r: chown refused: %s", job.entry, exc)
    if job.mode is not None:
        os.chmod(fd, job.mode)
    os.utime(fd, ns=(job.mtime_ns, job.mtime_ns))


class FileWriters:
    """A pool of threads finishing the files the unpacker opened (see the module)."""

    #: Bytes of bodies waiting at most.
    BUDGET = 16 << 20
    #: What each file counts against the budget at least (bounds open descriptors).
    MIN_COST = 64 << 10

    def __init__(self, workers: int = 2):
        self._jobs: queue.SimpleQueue[FileJob | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._pending = 0  # jobs submitted, not finished
        self._cost = 0  # their cost against the budget
        self._failure: UnpackError | None = None
        self._threads = [threading.Thread(target=self._work, name=f"unpack-writer-{n}", daemon=True)
                         for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._failure is None:
                    write_file(job)
            except Exception as exc:  # noqa: BLE001 - handed to the unpacker
                with self._cond:
                    if self._failure is None:
                        self._failure = UnpackError(f"entry {job.entry!r}: {exc}")
            finally:
                try:
                    os.close(job.fd)
                except OSError as exc:
                    with self._cond:
                        if self._failure is None:
                            self._failure = UnpackError(f"entry {job.entry!r}: {exc}")
                with self._cond:
                    self._pending -= 1
                    self._cost -= max(job.size, self.MIN_COST)
                    self._cond.notify_all()

    def submit(self, job: FileJob) -> None:
        """Queue ``job`` (the pool closes its descriptor, whatever happens); waits while
        the budget is spent; raises a failure of an earlier job."""
        cost = max(job.size, self.MIN_COST)
        with self._cond:
            while self._cost and self._cost + cost > self.BUDGET and self._failure is None:
                self._cond.wait()
            self._pending += 1
            self._cost += cost
            failure = self._failure
        self._jobs.put(job)
        if failure is not None:
            raise failure

    def wait(self) -> None:
        """Wait until every job submitted is done; raise the first failure."""
        with self._cond:
            while self._pending:
                self._cond.wait()
            failure = self._failure
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Finish what was submitted and stop the threads (failures are not raised)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> FileWriters:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
