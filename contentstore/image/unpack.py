"""Unpack an image into a plain directory: layers in order, whiteouts applied, no FUSE.

Safety: nothing outside the target directory is ever changed. Paths are resolved the
way the container will see them (an absolute symlink points into the image's root, as
in Docker, containerd and umoci), and an entry is refused, naming it, when:

- its name is absolute or has a ``..`` component;
- reaching it would climb out of the root through a relative symlink (``evil ->
  ../../..``), or a hard link's target would;
- it is a hard link to something that is not a file or symlink already in the image;
- it is crafted: a NUL byte in a name, an owner, size or time out of range.

No system call follows a symlink that came from a layer. The staging directory is held
open and every other directory is reached from it one component at a time with
``O_NOFOLLOW | O_DIRECTORY`` (an image symlink on the way is read and resolved inside
the root, by us, never by the kernel); everything is then done relative to those
descriptors: ``openat(O_NOFOLLOW)``, ``mkdirat``, ``linkat`` without
``AT_SYMLINK_FOLLOW``, ``fchmod``/``futimens``/``fchown`` on descriptors. Directory modes
and times are applied last (children change a directory's mtime, and a read-only
directory would block them); each is recorded with the directory's inode, dropped when
the directory is removed or replaced, and applied only to that same inode, reopened the
same way.

tarfile's ``data_filter`` does not fit image layers: it refuses absolute symlinks,
which images legitimately hold (``/etc/alternatives/*``), and checks paths against the
host's view of symlinks rather than the image's. So the checks are our own.

Each layer is read as a stream, in time linear in its size and bounded memory, by three
kinds of thread: a :class:`~contentstore.image.layerstream.LayerStream` reads the blob,
hashes it (its digest) and decompresses it on a thread of its own (and hashes that, the
diffID, on another), reading the whole blob even when the archive ends early; the caller's thread parses
the tar (:mod:`contentstore.image.tarstream`) and makes every entry, in order, through
descriptors; on an interpreter without a GIL, small files' bodies (views of the
decompressed chunks, never copies) and metadata are finished by a pool of
:mod:`~contentstore.image.writers` (with a GIL they cost more than they save). Both digests are
checked when the layer is done.

The layers are applied in a private directory beside the target and renamed into place
only when all of them applied and verified, so a refused, tampered or broken image
leaves the target as it was.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import sys
import tempfile
from collections import OrderedDict, deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from contentstore.errors import InvalidTar, UnpackError, UnsafeLayer
from contentstore.image.layerstream import LayerStream
from contentstore.image.tarstream import TarEntry, TarReader
from contentstore.image.writers import FileJob, FileWriters

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40
#: Directories nested deeper than this are refused (PATH_MAX allows about 2,000 one-letter
#: components; real trees stay far below): it bounds descriptors held and loops.
MAX_DEPTH = 512


def default_writers() -> int:
    """How many writer threads: ``CONTENTSTORE_UNPACK_WRITERS`` if set (0 for none),
    else some only where threads run Python at once, an interpreter without a GIL
    (CPython's free-threaded build). With a GIL every hand-off between the entry thread
    and a writer costs more than the system calls it moves: on 2 cores, 45,000 files
    (a CPython standard library) unpacked into tmpfs in 3.3 s with two writers, 1.9 s
    with none."""
    setting = os.environ.get("CONTENTSTORE_UNPACK_WRITERS", "").strip()
    if setting.isdigit():
        return min(int(setting), 64)
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is not None and not is_gil_enabled():
        return min(4, os.cpu_count() or 1)
    return 0


#: The largest file the writer threads are given (larger ones are written as they stream).
POOLED_FILE_SIZE = 256 << 10
#: Directory descriptors kept open between entries (entries come grouped by directory).
FD_CACHE_SIZE = 256
FD_CACHE_DEPTH = 64

_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_DIR_PATH = _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PAX_TIME = re.compile(r"(-?)([0-9]+)(?:\.([0-9]*))?")
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "leave unchanged" to chown
_NS = 10**9


@dataclass
class UnpackReport:
    """What an unpack did, and what it could not do as the layer asked.

    :ivar device_placeholders: device nodes written as empty regular files (with the
        node's mode and times) because creating devices needs root; what
        ``umoci unpack --rootless`` writes.
    :ivar dropped_xattrs: ``(entry, attribute)`` for each extended attribute the file
        system or our privileges refused (``trusted.*``, ``security.*`` without root,
        ``user.*`` on a file system without xattrs).
    """

    layers: int = 0
    entries: int = 0
    device_placeholders: list[str] = field(default_factory=list)
    dropped_xattrs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def skipped_devices(self) -> list[str]:
        """Earlier name of :attr:`device_placeholders`."""
        return self.device_placeholders

    @property
    def xattrs_dropped(self) -> int:
        return len(self.dropped_xattrs)


@dataclass(frozen=True)
class LayerInput:
    """One layer to apply, and what to check it against.

    :ivar digest: the blob's digest; its compressed bytes must hash to it.
    :ivar open: returns the blob as a binary file object (a context manager).
    :ivar compression: ``gzip``, ``zstd`` or ``none``.
    :ivar diff_id: the digest of the uncompressed tar (the image config's
        ``rootfs.diff_ids``), or ``None`` to check only the blob.
    """

    digest: str
    open: Callable[[], AbstractContextManager[BinaryIO]]
    compression: str = "none"
    diff_id: str | None = None


# -- reading a layer -----------------------------------------------------------------------


def _layer_stream(layer: LayerInput) -> LayerStream:
    return LayerStream(layer.open, layer.compression, layer.digest or None, layer.diff_id, layer.digest)


# -- the staging tree, through descriptors -----------------------------------------------------


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _proc_path(fd: int, name: str | None = None) -> str:
    """A path for calls that take no descriptor (l*xattr, chmod of an ``O_PATH`` one):
    the kernel's link to the open directory or file, never a symlink of the layer."""
    return f"/proc/self/fd/{fd}" + (f"/{name}" if name is not None else "")


def _chmod_path_fd(fd: int, mode: int) -> None:
    """chmod what an ``O_PATH`` descriptor holds (fchmod refuses those)."""
    os.chmod(_proc_path(fd), mode)


def _rmtree(parent_fd: int, name: str, on_directory: Callable[[os.stat_result], None] | None = None) -> None:
    """Remove the directory ``name`` in ``parent_fd`` and all it holds, without following
    any symlink and without recursion; ``on_directory`` sees each directory removed."""
    frames: list[tuple[int, str, int, list[str]]] = []

    def enter(pfd: int, child: str) -> None:
        fd = os.open(child, _DIR_PATH, dir_fd=pfd)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o700 != 0o700:  # a restricted directory (after finish): ours to open
                _chmod_path_fd(fd, stat.S_IMODE(st.st_mode) | 0o700)
            frames.append((pfd, child, fd, _names(fd)))
        except BaseException:
            os.close(fd)
            raise

    enter(parent_fd, name)
    try:
        while frames:
            pfd, dname, fd, names = frames[-1]
            if names:
                child = names.pop()
                st = _lstat(child, fd)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if len(frames) > MAX_DEPTH + 2:
                        raise UnpackError(f"directory tree deeper than {MAX_DEPTH} levels")
                    enter(fd, child)
                else:
                    os.unlink(child, dir_fd=fd)
                continue
            frames.pop()
            try:
                if on_directory is not None:
                    on_directory(os.fstat(fd))
            finally:
                os.close(fd)
            os.rmdir(dname, dir_fd=pfd)
    finally:
        for _, _, fd, _ in frames:
            os.close(fd)


def _names(fd: int) -> list[str]:
    """The names in the directory that a (possibly ``O_PATH``) descriptor holds."""
    readable = os.open(".", _DIR_READ, dir_fd=fd)
    try:
        return os.listdir(readable)
    finally:
        os.close(readable)


class _Tree:
    """The staging root, reached only through directory descriptors opened one
    component at a time with ``O_NOFOLLOW``; image symlinks are resolved here, inside the
    root, as the container will see them.

    Descriptors :meth:`walk` returns belong to the tree and stay open until
    :meth:`end_entry` (called after each entry): directories reached recently are kept
    open, keyed by their real path, so an entry whose parent was reached before costs no
    system call to find it. The cache is dropped whenever a directory is removed (a
    name may then hold something else).
    """

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self._fds: OrderedDict[tuple[str, ...], int] = OrderedDict()  # real dirs (no symlink in the key)
        self._retired: list[int] = []  # closed at the end of the entry

    def close(self) -> None:
        self.forget()
        self.end_entry()

    def forget(self) -> None:
        """Drop every cached descriptor (a directory was removed: names may now hold
        something else); they close at the end of the entry."""
        self._retired.extend(self._fds.values())
        self._fds.clear()

    def end_entry(self) -> None:
        """Close the descriptors the entry used that are not kept."""
        retired, self._retired = self._retired, []
        for fd in retired:
            os.close(fd)

    def _child(self, fd: int, stack: list[str], part: str) -> int:
        """Open the directory ``part`` in ``fd`` (cached when shallow enough); raise
        OSError (ENOENT, ELOOP for a symlink, ENOTDIR) as openat does."""
        key = (*stack, part) if len(stack) < FD_CACHE_DEPTH else None
        if key is not None:
            cached = self._fds.get(key)
            if cached is not None:
                self._fds.move_to_end(key)
                return cached
        child = os.open(part, _DIR_PATH, dir_fd=fd)
        if key is None:
            self._retired.append(child)
            return child
        self._fds[key] = child
        if len(self._fds) > FD_CACHE_SIZE:
            self._retired.append(self._fds.popitem(last=False)[1])  # the least recently used
        return child

    def adopt(self, path: tuple[str, ...], fd: int) -> None:
        """Keep ``fd``, a directory just made at the real path ``path``, for the entries
        that follow (its children, as a rule); it closes with the others."""
        if len(path) > FD_CACHE_DEPTH:
            self._retired.append(fd)
            return
        old = self._fds.pop(path, None)
        if old is not None:
            self._retired.append(old)
        self._fds[path] = fd
        if len(self._fds) > FD_CACHE_SIZE:
            self._retired.append(self._fds.popitem(last=False)[1])

    def walk(self, parts: tuple[str, ...], entry: str, create: bool) -> tuple[int, tuple[str, ...]] | None:
        """The directory that ``parts`` names, symlinks resolved inside the root.

        Returns a descriptor of it (the tree's, open until :meth:`end_entry`) and its
        real path (components, no symlink among them); ``None`` when a component is
        missing (or not a directory) and not ``create``. Missing directories are made
        (0755) when ``create``.
        """
        if not parts:
            return self.root_fd, ()
        cached = self._fds.get(parts)  # a real path reached before: nothing to resolve
        if cached is not None:
            self._fds.move_to_end(parts)
            return cached, parts
        stack: list[str] = []
        fds = [self.root_fd]
        pending = deque(parts)
        hops = 0
        while pending:
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not stack:
                    raise UnsafeLayer(f"entry {entry!r} climbs out of the root directory")
                stack.pop()
                fds.pop()
                continue
            if len(stack) >= MAX_DEPTH:
                raise UnpackError(f"entry {entry!r} nests directories deeper than {MAX_DEPTH} levels")
            try:
                fd = self._child(fds[-1], stack, part)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(part, 0o755, dir_fd=fds[-1])
                fd = self._child(fds[-1], stack, part)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                st = _lstat(part, fds[-1])
                if st is None or not stat.S_ISLNK(st.st_mode):
                    if not create:
                        return None
                    where = "/".join((*stack, part))
                    raise UnpackError(f"entry {entry!r}: {where} is not a directory") from None
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise UnsafeLayer(f"entry {entry!r}: too many levels of symbolic links") from None
                target = os.readlink(part, dir_fd=fds[-1])
                if target.startswith("/"):  # absolute: from the image's root
                    stack.clear()
                    del fds[1:]
                pending.extendleft(reversed(target.split("/")))
                continue
            stack.append(part)
            fds.append(fd)
        return fds[-1], tuple(stack)

    def exact(self, path: tuple[str, ...]) -> int | None:
        """The directory at the real path ``path`` (the tree's descriptor, open until
        :meth:`end_entry`), reached with O_NOFOLLOW at every component; ``None`` if it
        is not there as a directory."""
        fd = self.root_fd
        stack: list[str] = []
        try:
            for part in path:
                fd = self._child(fd, stack, part)
                stack.append(part)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return None
            raise
        return fd

    def open_exact(self, path: tuple[str, ...]) -> int | None:
        """A readable descriptor of the directory at the real path ``path`` (the
        caller's to close), as :meth:`exact` finds it; ``None`` if it is not there."""
        if not path:
            return os.dup(self.root_fd)
        parent = self.exact(path[:-1])
        if parent is None:
            return None
        try:
            return os.open(path[-1], _DIR_READ, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return None
            raise


# -- entries -------------------------------------------------------------------------------


def _parts(name: str, entry: str) -> tuple[str, ...]:
    """A tar entry name as components; refuses absolute names and ``..``."""
    if "\x00" in name:
        raise UnsafeLayer(f"entry {entry!r} has a NUL byte in its name")
    if name.startswith("/"):
        raise UnsafeLayer(f"entry {entry!r} has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeLayer(f"entry {entry!r} has a '..' component")
    return parts


def _check_member(member: TarEntry) -> None:
    """Refuse what no honest tar writer produces and the system calls cannot take."""
    entry = member.name
    if "\x00" in member.linkname:
        raise UnsafeLayer(f"entry {entry!r} has a NUL byte in its link target")
    for what, value in (("uid", member.uid), ("gid", member.gid)):
        if not 0 <= value <= _MAX_ID:
            raise UnsafeLayer(f"entry {entry!r} has an invalid {what} {value!r}")
    if not -(2**63) <= member.mtime_ns // _NS < 2**63:
        raise UnsafeLayer(f"entry {entry!r} has a modification time out of range")
    if member.ischr() or member.isblk():
        for what, value in (("major", member.devmajor), ("minor", member.devminor)):
            if not 0 <= value < 2**32:
                raise UnsafeLayer(f"entry {entry!r} has an invalid device {what} number {value}")
    for name in member.xattrs:
        if "\x00" in name:
            raise UnsafeLayer(f"entry {entry!r} has a NUL byte in an extended attribute name")


@dataclass
class _DirMeta:
    path: tuple[str, ...]
    mode: int  # to apply at the end
    mtime_ns: int
    applied: int  # the mode it has until then


def _umask() -> int:
    """The process's umask, read without changing it (other threads may be creating
    files); set and restored where /proc does not say."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


class LayerApplier:
    """Applies layer tar streams, in order, to one (private, empty) root directory."""

    def __init__(self, root: Path, report: UnpackReport, rootless: bool | None = None,
                 writers: int | None = None):
        self.root = Path(root)
        self.report = report
        self.privileged = (os.geteuid() == 0) if rootless is None else not rootless
        self.root_fd = os.open(self.root, _DIR_READ)
        self.tree = _Tree(self.root_fd)
        self._dirs: dict[tuple[int, int], _DirMeta] = {}  # (st_dev, st_ino) -> applied at the end
        self._root_meta: tuple[int, int] | None = None  # mode, mtime_ns of the entry "./"
        self._written: set[str] = set()  # this layer's paths and their parents (for whiteouts)
        self._umask = _umask()  # what new files and directories lose from the mode asked
        writers = default_writers() if writers is None else writers
        self._writers = FileWriters(writers) if writers else None

    def close(self) -> None:
        if self._writers is not None:
            self._writers.close()
        self.tree.close()
        os.close(self.root_fd)

    # -- layers ------------------------------------------------------------------------

    def apply_layer(self, layer: LayerInput, stream: LayerStream | None = None) -> None:
        """Apply one layer, verifying its digest and diffID as it streams (``stream``: its
        :class:`LayerStream`, when already started)."""
        with stream or _layer_stream(layer) as stream:
            try:
                self.apply(stream.next_chunk, layer.digest).drain()  # and what follows the archive
                if self._writers is not None:
                    try:
                        self._writers.wait()
                    except UnpackError as exc:
                        raise type(exc)(f"layer {layer.digest}: {exc}") from None
            except UnpackError:
                stream.check_blob()  # a damaged blob is reported as such, not as a strange layer
                stream.check()  # and a stream cut short by a decompression error as that
                raise
            stream.check()

    def apply(self, next_chunk: Callable[[], bytes], layer_name: str) -> TarReader:
        """Apply the uncompressed tar stream that ``next_chunk`` hands out (``b""`` at its
        end) of the layer ``layer_name``; returns the reader, to drain what follows."""
        self._written = set()
        last = None
        reader = TarReader(next_chunk)
        try:
            while (member := reader.next()) is not None:
                last = member.name
                self._entry(reader, member)
                self.report.entries += 1
        except InvalidTar as exc:
            where = f" after entry {last!r}" if last is not None else ""
            raise InvalidTar(f"layer {layer_name} is not a valid tar stream{where}: {exc}") from None
        except UnpackError as exc:
            raise type(exc)(f"layer {layer_name}: {exc}") from None
        self.report.layers += 1
        return reader

    def finish(self) -> None:
        """Set directory modes and times last, deepest first, each on the very directory
        recorded; then the root's (from a ``./`` entry, else 0755)."""
        for key, meta in sorted(self._dirs.items(), key=lambda item: len(item[1].path), reverse=True):
            try:
                if meta.mode == meta.applied:
                    self._set_directory_time(key, meta)
                else:
                    self._set_directory_mode_and_time(key, meta)
            finally:
                self.tree.end_entry()
        self._dirs.clear()
        if self._root_meta is None:
            os.chmod(self.root_fd, 0o755)
        else:
            mode, mtime_ns = self._root_meta
            os.chmod(self.root_fd, mode)
            os.utime(self.root_fd, ns=(mtime_ns, mtime_ns))

    def _set_directory_time(self, key: tuple[int, int], meta: _DirMeta) -> None:
        """Times only (the mode it has is the one asked): relative to its parent, never
        following a symlink, if the name still holds that directory."""
        parent = self.tree.exact(meta.path[:-1])
        if parent is None:
            return
        name = meta.path[-1]
        st = _lstat(name, parent)
        if st is None or (st.st_dev, st.st_ino) != key:
            return  # replaced since: what is there now is not what was recorded
        os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def _set_directory_mode_and_time(self, key: tuple[int, int], meta: _DirMeta) -> None:
        """Mode and times, on the directory itself, opened and checked."""
        fd = self.tree.open_exact(meta.path)
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != key:
                return  # replaced since
            os.chmod(fd, meta.mode)
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        finally:
            os.close(fd)

    # -- one entry -----------------------------------------------------------------------

    def _entry(self, reader: TarReader, member: TarEntry) -> None:
        try:
            self._apply_entry(reader, member)
        except UnpackError:
            raise
        except (OSError, ValueError, OverflowError) as exc:
            raise UnpackError(f"entry {member.name!r}: {exc}") from None
        finally:
            self.tree.end_entry()

    def _apply_entry(self, reader: TarReader, member: TarEntry) -> None:
        entry = member.name
        parts = _parts(entry, entry)
        _check_member(member)
        mtime_ns = member.mtime_ns
        if not parts:
            if not member.isdir():
                raise UnsafeLayer(f"entry {entry!r} would replace the root directory with a non-directory")
            self._own(member, self.root_fd)
            self._xattrs(member, self.root_fd)
            self._root_meta = (member.mode & 0o7777, mtime_ns)
            return
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts, entry)
            return
        parent_fd, stack = self.tree.walk(parts[:-1], entry, create=True)
        path = (*stack, name)
        if member.isdir():
            self._directory(member, parent_fd, name, path, mtime_ns)
        else:
            if member.isreg():
                self._file(reader, member, parent_fd, name, mtime_ns)
            elif member.issym():
                self._symlink(member, parent_fd, name, mtime_ns)
            elif member.islnk():
                self._hardlink(member, parent_fd, name)
            elif member.ischr() or member.isblk() or member.isfifo():
                self._device(member, parent_fd, name, mtime_ns)
            else:
                log.warning("entry %r: unsupported tar type %r, skipped", entry, member.type)
                return
        self._mark_written(path)

    def _mark_written(self, path: tuple[str, ...]) -> None:
        for depth in range(len(path), 0, -1):
            key = "/".join(path[:depth])
            if key in self._written:
                return
            self._written.add(key)

    def _remove(self, parent_fd: int, name: str, st: os.stat_result) -> None:
        """Remove what ``name`` holds; a directory's recorded metadata goes with it."""
        if stat.S_ISDIR(st.st_mode):
            self.tree.forget()
            _rmtree(parent_fd, name, lambda d: self._dirs.pop((d.st_dev, d.st_ino), None))
        else:
            os.unlink(name, dir_fd=parent_fd)

    def _replacing(self, parent_fd: int, name: str, make: Callable[[], int | None]) -> int | None:
        """``make()`` the entry; if the name is taken, remove what holds it (a directory
        with all it holds) and make it again."""
        try:
            return make()
        except FileExistsError:
            existing = _lstat(name, parent_fd)
            if existing is not None:
                self._remove(parent_fd, name, existing)
            return make()

    def _directory(self, member, parent_fd: int, name: str, path: tuple[str, ...], mtime_ns: int) -> None:
        mode = member.mode & 0o777 | 0o700  # ours to fill until the end; no set-id yet
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
            made = not mode & self._umask  # made with exactly that mode
        except FileExistsError:
            made = False
            existing = _lstat(name, parent_fd)
            if existing is None or not stat.S_ISDIR(existing.st_mode):  # a directory stays, with what it holds
                self._replacing(parent_fd, name, lambda: os.mkdir(name, mode, dir_fd=parent_fd))
        fd = os.open(name, _DIR_READ, dir_fd=parent_fd)
        self.tree.adopt(path, fd)  # its children come next
        st = os.fstat(fd)
        self._own(member, fd)
        if not made:
            os.chmod(fd, mode)
        self._xattrs(member, fd)
        self._dirs[(st.st_dev, st.st_ino)] = _DirMeta(path, member.mode & 0o7777, mtime_ns, mode)

    def _file(self, reader: TarReader | None, member: TarEntry, parent_fd: int, name: str, mtime_ns: int) -> None:
        """A regular file (``reader`` gives its body; ``None``: an empty placeholder)."""
        mode = member.mode & 0o7777
        fd = self._replacing(parent_fd, name, lambda: os.open(name, _NEW_FILE, mode & 0o777, dir_fd=parent_fd))
        size = member.size if reader is not None else 0
        chmod = mode if mode & 0o7000 or mode & self._umask else None  # else created with that mode
        if self._writers is not None and size <= POOLED_FILE_SIZE and not member.xattrs:
            try:
                pieces = list(reader.body()) if size else []
            except BaseException:
                os.close(fd)
                raise
            owner = (member.uid, member.gid) if self.privileged else None
            self._writers.submit(FileJob(fd, pieces, size, mtime_ns, owner, chmod, member.name))
            return
        try:
            if size:
                for piece in reader.body():
                    written = os.write(fd, piece)
                    while written < len(piece):
                        written += os.write(fd, piece[written:])
            self._own(member, fd)  # before chmod: chown clears set-id bits
            if chmod is not None:
                os.chmod(fd, chmod)
            self._xattrs(member, fd)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def _symlink(self, member, parent_fd: int, name: str, mtime_ns: int) -> None:
        self._replacing(parent_fd, name, lambda: os.symlink(member.linkname, name, dir_fd=parent_fd))
        if self.privileged:
            self._chown_quietly(lambda: os.chown(name, member.uid, member.gid, dir_fd=parent_fd,
                                                 follow_symlinks=False))
        self._xattrs(member, _proc_path(parent_fd, name))
        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _hardlink(self, member, parent_fd: int, name: str) -> None:
        """A hard link to what the target names itself: a file, or a symlink (not
        followed); its metadata is the target's (no header of its own is applied)."""
        target = _parts(member.linkname, member.name)
        if not target:
            raise UnsafeLayer(f"entry {member.name!r} is a hard link to a directory")
        found = self.tree.walk(target[:-1], member.name, create=False)
        if found is None:
            raise UnsafeLayer(f"entry {member.name!r} is a hard link to {member.linkname!r}, "
                              f"which is not in the image")
        target_fd, _ = found
        st = _lstat(target[-1], target_fd)
        if st is None:
            raise UnsafeLayer(f"entry {member.name!r} is a hard link to {member.linkname!r}, "
                              f"which is not in the image")
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"entry {member.name!r} is a hard link to a directory")
        self._replacing(parent_fd, name, lambda: os.link(target[-1], name, src_dir_fd=target_fd,
                                                         dst_dir_fd=parent_fd, follow_symlinks=False))

    def _device(self, member, parent_fd: int, name: str, mtime_ns: int) -> None:
        if not member.isfifo() and not self.privileged:
            # As umoci --rootless: an empty file in its place, with its mode and times.
            self._file(None, member, parent_fd, name, mtime_ns)
            self.report.device_placeholders.append(member.name)
            log.debug("entry %r: device node written as an empty file (needs root)", member.name)
            return
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        device = os.makedev(member.devmajor, member.devminor) if kind != stat.S_IFIFO else 0
        self._replacing(parent_fd, name, lambda: os.mknod(name, kind | 0o600, device, dir_fd=parent_fd))
        fd = os.open(name, _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)  # never opened for I/O
        try:
            if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
                raise UnpackError(f"entry {member.name!r}: replaced while being made")
            if self.privileged:
                self._chown_quietly(lambda: os.chown(name, member.uid, member.gid, dir_fd=parent_fd,
                                                     follow_symlinks=False))
            _chmod_path_fd(fd, member.mode & 0o7777)
            self._xattrs(member, _proc_path(fd), follow=True)  # the kernel's link to this very node
        finally:
            os.close(fd)
        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _own(self, member, fd: int) -> None:
        if self.privileged:  # rootless, ownership stays ours (as umoci --rootless)
            self._chown_quietly(lambda: os.chown(fd, member.uid, member.gid))

    @staticmethod
    def _chown_quietly(chown: Callable[[], None]) -> None:
        try:
            chown()
        except OSError as exc:  # an id the user namespace does not map
            log.debug("chown refused: %s", exc)

    def _xattrs(self, member, target: int | str, follow: bool = False) -> None:
        """Set the entry's xattrs on ``target``: a descriptor, or a /proc path (its last
        component followed only if ``follow``: a /proc/self/fd link to the node itself).
        What cannot be set is reported by name."""
        for name, data in member.xattrs.items():
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, data)
                else:
                    os.setxattr(target, name, data, follow_symlinks=follow)
            except OSError as exc:
                self.report.dropped_xattrs.append((member.name, name))
                log.debug("entry %r: xattr %s not set: %s", member.name, name, exc)

    # -- whiteouts -----------------------------------------------------------------------

    def _whiteout(self, parts: tuple[str, ...], entry: str) -> None:
        name = parts[-1]
        opaque = name == OPAQUE
        victim = name[len(WHITEOUT_PREFIX):]
        if not opaque and victim in ("", ".", ".."):
            raise UnsafeLayer(f"entry {entry!r} is an invalid whiteout")
        if not opaque and victim.startswith(WHITEOUT_PREFIX):
            log.debug("entry %r: whiteout metadata ignored", entry)  # AUFS' .wh..wh.* files
            return
        found = self.tree.walk(parts[:-1], entry, create=False)
        if found is None:
            return  # nothing there to hide
        parent_fd, stack = found
        if opaque:
            self._prune(stack)
            return
        st = _lstat(victim, parent_fd)
        if st is None:
            return
        path = (*stack, victim)
        if "/".join(path) not in self._written:
            self._remove(parent_fd, victim, st)
        elif stat.S_ISDIR(st.st_mode):
            self._prune(path)  # written by this very layer: only what lower layers put there goes

    def _prune(self, path: tuple[str, ...]) -> None:
        """Remove from the directory at ``path``, and from its subdirectories this layer
        wrote, whatever this layer did not write (lower layers' content)."""
        pending = [path]
        while pending:
            where = pending.pop()
            fd = self.tree.open_exact(where)
            if fd is None:
                continue
            try:
                for child in _names(fd):
                    key = "/".join((*where, child))
                    st = _lstat(child, fd)
                    if st is None:
                        continue
                    if key not in self._written:
                        self._remove(fd, child, st)
                    elif stat.S_ISDIR(st.st_mode):
                        pending.append((*where, child))
            finally:
                os.close(fd)


# -- the target ----------------------------------------------------------------------------


def prepare_target(directory: Path) -> None:
    """DIR may be absent or an empty directory; anything else is refused."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UnpackError(f"{directory} exists and is not a directory")
    if any(os.scandir(directory)):
        raise UnpackError(f"{directory} is not empty")


def _remove_staging(staging: Path) -> None:
    try:
        parent_fd = os.open(staging.parent, _DIR_PATH & ~os.O_NOFOLLOW)
    except OSError:
        return
    try:
        if _lstat(staging.name, parent_fd) is not None:
            _rmtree(parent_fd, staging.name)
    except OSError as exc:
        log.warning("could not remove %s: %s", staging, exc)
    finally:
        os.close(parent_fd)


def unpack_layers(layers: Iterable[LayerInput | tuple], directory: Path, rootless: bool | None = None) -> UnpackReport:
    """Apply ``layers`` (:class:`LayerInput`, in order) to ``directory``, absent or empty.

    :param rootless: change no ownership and write device nodes as empty files (default:
        when not root).
    :raises UnpackError: the target cannot be used, or a layer was refused (naming it and
        the entry); :class:`~contentstore.errors.DigestMismatch` when a blob is not what
        its digest or diffID says. Either way the target is left as it was.
    """
    directory = Path(directory).absolute()
    prepare_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.unpacking-", dir=directory.parent))
    report = UnpackReport()
    try:
        applier = LayerApplier(staging, report, rootless)
        try:
            inputs = [layer if isinstance(layer, LayerInput) else LayerInput(*layer) for layer in layers]
            upcoming: LayerStream | None = None
            try:
                for index, layer in enumerate(inputs):
                    stream = upcoming or _layer_stream(layer)
                    # the next layer is read and decompressed while this one is applied
                    upcoming = _layer_stream(inputs[index + 1]) if index + 1 < len(inputs) else None
                    applier.apply_layer(layer, stream)
            finally:
                if upcoming is not None:
                    upcoming.close()
            try:
                applier.finish()
            except OSError as exc:
                raise UnpackError(f"cannot set the modes and times of directories: {exc}") from None
        finally:
            applier.close()
        if directory.exists():
            os.rmdir(directory)  # empty, checked above
        os.rename(staging, directory)
    except BaseException:
        _remove_staging(staging)
        raise
    return report
