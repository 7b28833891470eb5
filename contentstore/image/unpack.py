"""Unpack an image into a plain directory: layers in order, whiteouts applied, no FUSE.

Safety: nothing is ever written outside the target directory. Paths are resolved the
way the container will see them (an absolute symlink points into the image's root, as
in Docker, containerd and umoci), and an entry is refused, naming it, when:

- its name is absolute or has a ``..`` component;
- reaching it would climb out of the root through a relative symlink (``evil ->
  ../../..``), or a hard link's target would;
- it is a hard link to something that is not a file already in the image.

tarfile's ``data_filter`` does not fit image layers: it refuses absolute symlinks,
which images legitimately hold (``/etc/alternatives/*``), and checks paths against the
host's view of symlinks rather than the image's. So the checks are our own, and every
path is opened with ``O_NOFOLLOW`` on its last component after its parents were
resolved inside the root.

The layers are applied in a private directory beside the target and renamed into place
only when all of them applied, so a refused or broken image leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import zstandard

from contentstore.errors import UnpackError, UnsafeLayer
from contentstore.model.limits import CHUNK_SIZE

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40


@dataclass
class UnpackReport:
    layers: int = 0
    entries: int = 0
    skipped_devices: list[str] = field(default_factory=list)
    xattrs_dropped: int = 0


class _Root:
    """Path resolution inside an unpack root, with the image's view of symlinks."""

    def __init__(self, root: Path):
        self.root = root
        self._root_str = str(root)

    def resolve_parent(self, rel: PurePosixPath, entry: str) -> Path:
        """The host directory that holds ``rel``'s last component, symlinks in its
        parents followed inside the root."""
        return self._resolve(list(rel.parts[:-1]), entry)

    def resolve(self, rel: PurePosixPath, entry: str) -> Path:
        """The host path of ``rel`` itself, following every symlink inside the root."""
        return self._resolve(list(rel.parts), entry)

    def _resolve(self, parts: list[str], entry: str) -> Path:
        resolved: list[str] = []
        hops = 0
        pending = list(parts)
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    raise UnsafeLayer(f"entry {entry!r} climbs out of the root directory")
                resolved.pop()
                continue
            candidate = os.path.join(self._root_str, *resolved, part)
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                resolved.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise UnsafeLayer(f"entry {entry!r}: too many levels of symbolic links")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []  # absolute: from the image's root
                pending = [p for p in target.split("/") if p] + pending
                continue
            resolved.append(part)
        return Path(self._root_str, *resolved)


def clean_name(name: str) -> PurePosixPath:
    """A tar entry name as a relative path; refuses absolute names and ``..``."""
    if name.startswith("/"):
        raise UnsafeLayer(f"entry {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"entry {name!r} has a '..' component")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _make_writable_tree(path)
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _make_writable_tree(path: Path) -> None:
    for directory, dirs, _ in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, os.lstat(directory).st_mode & 0o7777 | 0o700)


class LayerApplier:
    """Applies layer tar streams, in order, to one root directory."""

    def __init__(self, root: Path, report: UnpackReport, rootless: bool | None = None):
        self.root = root
        self.fs = _Root(root)
        self.report = report
        self.privileged = (os.geteuid() == 0) if rootless is None else not rootless
        self._dir_meta: dict[str, tuple[int, float]] = {}  # applied once all layers are in

    def apply(self, stream, compression: str, layer_name: str) -> None:
        if compression == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True,
                                                                read_size=CHUNK_SIZE)
            mode = "r|"
        else:
            reader = stream
            mode = {"gzip": "r|gz", "none": "r|"}[compression]
        written: set[str] = set()
        try:
            with tarfile.open(fileobj=reader, mode=mode, bufsize=CHUNK_SIZE) as tar:
                for member in tar:
                    self._entry(tar, member, written)
                    self.report.entries += 1
        except (tarfile.TarError, EOFError, zstandard.ZstdError) as exc:
            raise UnpackError(f"layer {layer_name} is not a valid tar stream: {exc}") from None
        self.report.layers += 1

    def finish(self) -> None:
        """Set directory modes and times last: children change a directory's mtime, and a
        read-only directory would have blocked them."""
        for path in sorted(self._dir_meta, key=lambda p: p.count("/"), reverse=True):
            mode, mtime = self._dir_meta[path]
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, mode)
                os.utime(path, (mtime, mtime), follow_symlinks=False)

    # -- one entry -----------------------------------------------------------------------

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo, written: set[str]) -> None:
        rel = clean_name(member.name)
        if rel == PurePosixPath("."):
            return  # the root itself
        name = rel.name
        if name.startswith(WHITEOUT_PREFIX):
            self._whiteout(rel, member.name, written)
            return
        parent = self.fs.resolve_parent(rel, member.name)
        self._ensure_dirs(parent, member.name)
        path = parent / name
        key = str(path)
        if member.isdir():
            self._directory(path, member)
        else:
            self._replace(path)
            if member.isreg():
                self._file(tar, member, path)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                self._hardlink(member, path)
            elif member.ischr() or member.isblk() or member.isfifo():
                if not self._device(member, path):
                    return
            else:
                log.warning("entry %r: unsupported tar type %r, skipped", member.name, member.type)
                return
            self._metadata(member, path)
        written.add(key)

    def _ensure_dirs(self, parent: Path, entry: str) -> None:
        if parent == self.root:
            return
        try:
            st = os.lstat(parent)
        except FileNotFoundError:
            self._ensure_dirs(parent.parent, entry)
            os.mkdir(parent, 0o755)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"entry {entry!r}: {parent.relative_to(self.root)} is not a directory")

    def _replace(self, path: Path) -> None:
        _remove(path)

    def _directory(self, path: Path, member: tarfile.TarInfo) -> None:
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                _remove(path)
                os.mkdir(path, 0o700)
        except FileNotFoundError:
            os.mkdir(path, 0o700)
        os.chmod(path, member.mode & 0o7777 | 0o700)  # writable by us until the end
        self._own(member, path)
        self._xattrs(member, path)
        self._dir_meta[str(path)] = (member.mode & 0o7777, float(member.mtime))

    def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        source = tar.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK_SIZE)

    def _hardlink(self, member: tarfile.TarInfo, path: Path) -> None:
        target_rel = clean_name(member.linkname)
        target = self.fs.resolve(target_rel, member.name)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise UnsafeLayer(f"entry {member.name!r} is a hard link to {member.linkname!r}, "
                              f"which is not in the image") from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeLayer(f"entry {member.name!r} is a hard link to a directory")
        os.link(target, path, follow_symlinks=False)

    def _device(self, member: tarfile.TarInfo, path: Path) -> bool:
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        if kind != stat.S_IFIFO and not self.privileged:
            self.report.skipped_devices.append(member.name)
            log.warning("entry %r: device node skipped (not running as root)", member.name)
            return False
        os.mknod(path, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
        return True

    def _metadata(self, member: tarfile.TarInfo, path: Path) -> None:
        self._own(member, path)
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)
        self._xattrs(member, path)
        if not member.islnk():
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def _own(self, member: tarfile.TarInfo, path: Path) -> None:
        if self.privileged:  # rootless, ownership stays ours (as umoci --rootless)
            with contextlib.suppress(OSError):
                os.chown(path, member.uid, member.gid, follow_symlinks=False)

    def _xattrs(self, member: tarfile.TarInfo, path: Path) -> None:
        for key, value in (member.pax_headers or {}).items():
            if not key.startswith("SCHILY.xattr."):
                continue
            try:
                os.setxattr(path, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
            except OSError:
                self.report.xattrs_dropped += 1

    def _whiteout(self, rel: PurePosixPath, entry: str, written: set[str]) -> None:
        parent = self.fs.resolve_parent(rel, entry)
        if not parent.is_dir() or parent.is_symlink():
            return
        if rel.name == OPAQUE:
            # Empty the directory of what lower layers put there; keep this layer's entries.
            for child in os.listdir(parent):
                child_path = parent / child
                if str(child_path) not in written:
                    _remove(child_path)
            return
        victim = parent / rel.name[len(WHITEOUT_PREFIX):]
        if victim.name in ("", ".", ".."):
            raise UnsafeLayer(f"entry {entry!r} is an invalid whiteout")
        _remove(victim)


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


def unpack_layers(layers, directory: Path, rootless: bool | None = None) -> UnpackReport:
    """Apply ``layers`` (``(name, opener, compression)`` triples, in order) to ``directory``.

    :param rootless: change no ownership and skip device nodes (default: when not root).
    """
    directory = Path(directory).absolute()
    prepare_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.unpacking-", dir=directory.parent))
    report = UnpackReport()
    try:
        applier = LayerApplier(staging, report, rootless)
        for name, opener, compression in layers:
            with opener() as stream:
                applier.apply(stream, compression, name)
        applier.finish()
        os.chmod(staging, 0o755)
        if directory.exists():
            os.rmdir(directory)  # empty, checked above
        os.rename(staging, directory)
    except BaseException:
        if staging.exists():
            _make_writable_tree(staging)
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return report
