"""An artifact's files, written out of the store (``artifact get``), as ``oras pull`` does.

Each layer titled with ``org.opencontainers.image.title`` is a file of that name in the
target directory. A title must be a plain file name: one that is absolute, is or holds
``..``, or has a ``/`` is refused (:class:`InvalidArtifact`) before anything is written.
Every blob is read through the verifying reader, into a temporary file beside its
target; the files are renamed into place only once every one of them was read whole and
verified, so a refused or corrupt artifact leaves the directory as it was.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from contentstore.errors import BlobNotFound, InvalidArtifact
from contentstore.local.fsutil import atomic_file, writing
from contentstore.local.interfaces import BlobReader
from contentstore.model.artifact import TITLE_ANNOTATION, safe_title
from contentstore.model.limits import CHUNK_SIZE
from contentstore.model.manifest import Descriptor


@dataclass
class WrittenFiles:
    """What :func:`write_files` did: the files written, and the layers without a title
    (not files: left out, as ``oras pull`` leaves them)."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    untitled: list[Descriptor] = field(default_factory=list)


def titled(layers: list[Descriptor]) -> tuple[list[tuple[str, Descriptor]], list[Descriptor]]:
    """The layers that are files, with their checked titles, and those without a title.

    :raises InvalidArtifact: a title that is not a plain file name, or two files of one name.
    """
    files: list[tuple[str, Descriptor]] = []
    untitled: list[Descriptor] = []
    seen: set[str] = set()
    for layer in layers:
        title = layer.annotations.get(TITLE_ANNOTATION)
        if title is None:
            untitled.append(layer)
            continue
        title = safe_title(title)
        if title in seen:
            raise InvalidArtifact(f"two files of the artifact are titled {title!r}")
        seen.add(title)
        files.append((title, layer))
    return files, untitled


def write_files(layers: list[Descriptor], directory: Path, blobs: BlobReader) -> WrittenFiles:
    """Write each titled layer of an artifact into ``directory`` (created if absent) under
    its title, replacing a file of that name; all of them or none.

    :raises InvalidArtifact: an unsafe or repeated title (nothing written).
    :raises BlobNotFound: a file's blob is not in the store (nothing written).
    :raises CorruptBlob: a blob changed on disk (nothing written).
    """
    files, untitled = titled(layers)
    for _, layer in files:
        if not blobs.exists(layer.digest):
            raise BlobNotFound(layer.digest)
    directory = Path(directory)
    with writing(f"directory {directory}", directory):
        directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():
        raise InvalidArtifact(f"{directory} is not a directory")
    mode = 0o666 & ~_umask()
    result = WrittenFiles(directory, untitled=untitled)
    with contextlib.ExitStack() as stack:
        # Each file is a temporary file until the stack closes without an error: then
        # they are renamed into place one after the other; on an error all are removed.
        for title, layer in files:
            target = directory / title
            out = stack.enter_context(atomic_file(target, mode, what=f"file {title} of the artifact"))
            with blobs.open_verified(layer.digest, layer.size if layer.size >= 0 else None) as data, \
                    writing(f"file {title} of the artifact", target):
                while chunk := data.read(CHUNK_SIZE):
                    out.write(chunk)
            result.files.append(target)
    return result


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would, for a moment,
    for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return 0o022
