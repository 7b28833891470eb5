"""The OCI image layout's ``oci-layout`` and ``index.json``: the store's local references.

Each local reference is an ``index.json`` entry whose ``org.opencontainers.image.ref.name``
annotation is the full normalized reference. ``index.json`` is rewritten atomically
(temp file, fsync, rename) under an exclusive lock, so concurrent taggers never lose each
other's entries and a reader always sees a whole file.

The line form. contentstore writes ``index.json`` as plain JSON that any OCI tool reads,
laid out one entry per line in a compact canonical form::

    {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
    {"mediaType":…,"digest":…,"size":…,"annotations":{…"org.opencontainers.image.ref.name":"…"}},
    {…}
    ]}

so that a tag or an untag never parses and re-serializes the whole file: it finds the
lines that hold the name (a byte search for the name's canonical encoding, each hit
parsed and checked), and writes the file again from the old bytes with those lines
removed and the new line appended (still atomically, under the lock). A look-up of one
name reads the file and parses only the lines that hold it. This holds only for a file
contentstore itself wrote: after each write the writer records the file's identity
(device, inode, size, mtime, ctime) in the lock file, with whether every entry is a valid
descriptor; a file whose identity differs (another tool wrote it: skopeo, umoci) or that
is not laid out so is parsed whole, as before, and the next write lays it out again,
keeping every entry and every other field as they were.

Durability: the temporary file is fsynced before it is renamed over ``index.json``, so
a power cut never leaves a partial file; the directory is not fsynced after the rename
(about a tenth of a tag's cost with 10,000 entries), so a power cut may undo the last
rename, leaving the previous whole file: the last tag is lost, nothing is corrupted (on
ext4 and XFS the next writer's fsync commits every earlier rename). A killed process
loses nothing: the rename is atomic and the kernel has the bytes.

An ``index.json`` that cannot be read (not JSON, nested beyond reason, not an index, an
entry that is not a descriptor) is an :class:`IndexDamaged` naming the file, and is never
written over (a tag fails instead). An entry
whose name annotation is not a string keeps its content (gc marks from every entry) but
names nothing; :meth:`Layout.problems` reports it.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from contentstore.errors import IndexDamaged, InvalidManifest, ReferenceNotFound
from contentstore.local.fsutil import FileLock, StrayFile, atomic_file, atomic_write, remove_files
from contentstore.model import mediatypes
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor

#: What the lock file holds after a write: the written file's identity, whether all its
#: entries are descriptors, and a checksum of the record (a torn read is no match).
_SIGNATURE = "contentstore index.json lines v1"
_SIGNATURE_SIZE = 160
_FOOTER = b"]}\n"


def _empty_index() -> dict:
    return {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}


def _compact(value) -> bytes:
    """The canonical one-line encoding (ASCII, no spaces): the same value, the same bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass(frozen=True)
class _Snapshot:
    """The bytes of ``index.json`` as read, and whether they are contentstore's line form."""

    data: bytes
    identity: tuple | None
    lines: bool         # laid out one entry per line by contentstore (the signature matches)
    valid: bool         # ... and every entry is a descriptor


class Layout:
    def __init__(self, root: Path, state_dir: Path):
        self.root = Path(root)
        self.index_path = self.root / "index.json"
        self.layout_path = self.root / "oci-layout"
        self._lock_path = Path(state_dir) / "index.lock"
        self._names: tuple[tuple, dict[str, Descriptor]] | None = None  # by the file's identity
        self._ensure()

    def _ensure(self) -> None:
        if self.layout_path.exists() and self.index_path.exists():
            return
        with FileLock(self._lock_path):
            if not self.layout_path.exists():
                atomic_write(self.layout_path, json.dumps(
                    {"imageLayoutVersion": mediatypes.OCI_LAYOUT_VERSION}).encode())
            if not self.index_path.exists():
                self._write_index(_empty_index())

    # -- reading -------------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        """Read ``index.json`` once; it is contentstore's line form when the lock file's
        signature names this very file (and it did not change while it was read)."""
        with open(self.index_path, "rb") as f:
            before = _identity(os.fstat(f.fileno()))
            data = f.read()
            identity = _identity(os.fstat(f.fileno()))
        if identity != before:
            return _Snapshot(data, None, False, False)
        signed = self._signature()
        if signed is None or signed[0] != identity or not _is_line_form(data):
            return _Snapshot(data, identity, False, False)
        return _Snapshot(data, identity, True, signed[1])

    def _signature(self) -> tuple[tuple, bool] | None:
        """The identity and validity the last writer recorded, if the record is whole."""
        try:
            with open(self._lock_path, "rb") as f:
                record = f.read(_SIGNATURE_SIZE)
        except OSError:
            return None
        try:
            text, checksum = record.decode("ascii").rstrip().rsplit(" ", 1)
            if int(checksum, 16) != zlib.crc32(text.encode()):
                return None
            label, *numbers = text.rsplit(" ", 6)
            if label != _SIGNATURE:
                return None
            values = [int(n) for n in numbers]
        except ValueError:
            return None
        return tuple(values[:5]), bool(values[5])

    def _parse(self, data: bytes) -> dict:
        try:
            index = json.loads(data)
        except RecursionError:
            raise IndexDamaged(f"{self.index_path} is not an OCI image index: nested too deeply",
                               str(self.index_path)) from None
        except ValueError as exc:
            raise IndexDamaged(f"{self.index_path} is not valid JSON: {exc}", str(self.index_path)) from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise IndexDamaged(f"{self.index_path} is not an OCI image index", str(self.index_path))
        index.setdefault("manifests", [])
        return index

    def read(self) -> dict:
        return self._parse(self.index_path.read_bytes())

    def _descriptors(self, manifests: list) -> list[Descriptor]:
        try:
            return [Descriptor.from_json(entry, "index.json entry") for entry in manifests]
        except InvalidManifest as exc:
            raise IndexDamaged(f"{exc} (in {self.index_path})", str(self.index_path)) from None

    def entries(self) -> list[Descriptor]:
        """Every entry of ``index.json``, named or not."""
        return self._descriptors(self.read()["manifests"])

    # -- writing -------------------------------------------------------------------------

    def update(self, change: Callable[[list[dict]], None]) -> None:
        """Apply ``change`` to the list of entries under the lock, and write it back."""
        with FileLock(self._lock_path):
            index = self.read()
            change(index["manifests"])
            self._write_index(index)

    def _write_index(self, index: dict) -> None:
        """Write ``index`` whole, in the line form (holding the lock)."""
        manifests = index["manifests"]
        header = {key: value for key, value in index.items() if key != "manifests"}
        head = _compact(header)[:-1] + (b"," if header else b"") + b'"manifests":[\n'
        body = b",\n".join(_compact(entry) for entry in manifests)
        try:
            self._descriptors(manifests)
            valid = True
        except IndexDamaged:
            valid = False
        self._write([head, body, b"\n" if manifests else b"", _FOOTER], valid)

    def _write(self, pieces: list, valid: bool) -> None:
        """Replace ``index.json`` with ``pieces`` atomically and durably, then sign it
        (holding the lock). A process killed before signing leaves a whole file that is
        merely parsed whole by the next reader."""
        with atomic_file(self.index_path, what="index.json", sync_dir=False) as f:
            for piece in pieces:
                f.write(piece)
            inode = os.fstat(f.fileno()).st_ino
        identity = _identity(os.stat(self.index_path))
        if identity[1] != inode:
            return  # another tool replaced it meanwhile: leave it unsigned
        text = f"{_SIGNATURE} {' '.join(str(n) for n in identity)} {int(valid)}"
        record = f"{text} {zlib.crc32(text.encode()):08x}".ljust(_SIGNATURE_SIZE - 1) + "\n"
        fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, record.encode("ascii"), 0)
        finally:
            os.close(fd)

    def _splice(self, snapshot: _Snapshot, remove: list[tuple[int, int]], append: bytes | None) -> None:
        """Write the line-form ``snapshot`` again without the lines ``remove`` (start and
        end of each, its newline included), with ``append`` as the last entry."""
        data = memoryview(snapshot.data)
        start = snapshot.data.index(b"\n") + 1
        end = len(data) - len(_FOOTER)
        runs, at = [], start
        for line_start, line_end in sorted(remove):
            if line_start > at:
                runs.append([at, line_start])
            at = line_end
        if end > at:
            runs.append([at, end])
        pieces = [data[:start]]
        for run_start, run_end in runs[:-1]:
            pieces.append(data[run_start:run_end])
        if runs:
            run_start, run_end = runs[-1]
            has_comma = data[run_end - 2] == ord(",")
            if has_comma and append is None:
                pieces += [data[run_start:run_end - 2], b"\n"]
            elif not has_comma and append is not None:
                pieces += [data[run_start:run_end - 1], b",\n"]
            else:
                pieces.append(data[run_start:run_end])
        if append is not None:
            pieces += [append, b"\n"]
        pieces.append(_FOOTER)
        self._write(pieces, snapshot.valid)

    def problems(self) -> list[str]:
        """What is wrong in ``index.json`` without stopping its use: entries whose name
        annotation is not a string (they keep their content from gc but name nothing)."""
        return [
            f"{self.index_path}: entry {position} ({entry.digest}) has a "
            f"{REF_NAME_ANNOTATION} annotation that is not a string: {name!r}"
            for position, entry in enumerate(self.entries())
            for name in [entry.annotations.get(REF_NAME_ANNOTATION)]
            if name is not None and not isinstance(name, str)
        ]

    def correct_sizes(self, sizes: dict[str, int]) -> list[str]:
        """Set the ``size`` of the entries whose digest is in ``sizes`` (the stored blob's,
        verified); return the digests of the entries changed."""
        changed: list[str] = []

        def change(manifests: list[dict]) -> None:
            for entry in manifests:
                digest = entry.get("digest") if isinstance(entry, dict) else None
                if isinstance(digest, str) and digest in sizes and entry.get("size") != sizes[digest]:
                    entry["size"] = sizes[digest]
                    changed.append(digest)

        self.update(change)
        return changed

    def remove_temporary(self, dry_run: bool = False) -> list[StrayFile]:
        """Half-written ``index.json`` and ``oci-layout`` files a killed writer left (looked
        for under the lock every writer holds while its temporary file exists)."""
        with FileLock(self._lock_path):
            stray = sorted([*self.root.glob(f".{self.index_path.name}.*.tmp"),
                            *self.root.glob(f".{self.layout_path.name}.*.tmp")])
            return remove_files(stray, dry_run)

    # -- references ----------------------------------------------------------------------

    def names(self) -> dict[str, Descriptor]:
        """Named entries by name (an entry whose name is not a string names nothing).

        The parse is kept for as long as the file stays the same (its identity)."""
        snapshot = self._snapshot()
        cached = self._names
        if cached is not None and snapshot.identity is not None and cached[0] == snapshot.identity:
            return dict(cached[1])
        names = {
            entry.annotations[REF_NAME_ANNOTATION]: entry
            for entry in self._descriptors(self._parse(snapshot.data)["manifests"])
            if isinstance(entry.annotations.get(REF_NAME_ANNOTATION), str)
            and entry.annotations[REF_NAME_ANNOTATION]
        }
        if snapshot.identity is not None:
            self._names = (snapshot.identity, names)
        return dict(names)

    def get(self, name: str) -> Descriptor | None:
        """The entry ``name`` names, or ``None``; in the line form, only the lines that
        hold the name are parsed."""
        snapshot = self._snapshot()
        if not (snapshot.lines and snapshot.valid):
            return self.names().get(name)  # a whole parse, with its errors
        found = _lines_naming(snapshot.data, name)
        if not found:
            return None
        return self._descriptors([found[-1][2]])[0]

    def named(self, digest: str) -> dict[str, Descriptor]:
        """The names of the entries that point to ``digest``; in the line form, only the
        lines that hold the digest are parsed."""
        snapshot = self._snapshot()
        if not (snapshot.lines and snapshot.valid):
            return {name: d for name, d in self.names().items() if d.digest == digest}
        needle = b'"digest":' + _compact(str(digest))
        found = {}
        for _, _, entry in _lines_holding(snapshot.data, needle):
            name = _name_of(entry)
            if name and entry.get("digest") == digest:
                found[name] = self._descriptors([entry])[0]
        return found

    def resolve(self, name: str) -> Descriptor:
        descriptor = self.get(name)
        if descriptor is None:
            raise ReferenceNotFound(name)
        return descriptor

    def tag(self, name: str, target: Descriptor) -> None:
        """Point ``name`` at ``target``, replacing any entry that had that name (the new
        entry is the last one)."""
        entry = target.with_annotations(**{REF_NAME_ANNOTATION: name}).to_json()
        with FileLock(self._lock_path):
            snapshot = self._snapshot()
            if snapshot.lines:
                found = _lines_naming(snapshot.data, name)
                self._splice(snapshot, [(start, end) for start, end, _ in found], _compact(entry))
                return
            index = self._parse(snapshot.data)
            manifests = index["manifests"]
            manifests[:] = [m for m in manifests if _name_of(m) != name]
            manifests.append(entry)
            self._write_index(index)

    def untag(self, name: str) -> Descriptor:
        with FileLock(self._lock_path):
            snapshot = self._snapshot()
            if snapshot.lines:
                found = _lines_naming(snapshot.data, name)
                if not found:
                    raise ReferenceNotFound(name)
                self._splice(snapshot, [(start, end) for start, end, _ in found], None)
                removed = [entry for _, _, entry in found]
            else:
                index = self._parse(snapshot.data)
                manifests = index["manifests"]
                removed = [m for m in manifests if _name_of(m) == name]
                if not removed:
                    raise ReferenceNotFound(name)
                manifests[:] = [m for m in manifests if _name_of(m) != name]
                self._write_index(index)
        return Descriptor.from_json(removed[0])


def _name_of(entry) -> str | None:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def _is_line_form(data: bytes) -> bool:
    """Laid out as :meth:`Layout._write_index` lays it out (header line, entries, footer)."""
    newline = data.find(b"\n")
    if not data.startswith(b"{") or newline < 0 or not data.endswith(b'"manifests":[', 0, newline):
        return False
    body_end = len(data) - len(_FOOTER)
    if body_end <= newline or not data.endswith(_FOOTER):
        return False
    return body_end == newline + 1 or (data[body_end - 1] == 10 and data[body_end - 2] != 44)  # "\n", ","


def _lines_naming(data: bytes, name: str) -> list[tuple[int, int, dict]]:
    """The entries of line-form ``data`` named ``name``: each line's start and end (its
    newline included) and the entry parsed, in file order."""
    needle = _compact(REF_NAME_ANNOTATION) + b":" + _compact(name)
    return [found for found in _lines_holding(data, needle) if _name_of(found[2]) == name]


def _lines_holding(data: bytes, needle: bytes) -> list[tuple[int, int, dict]]:
    """The entries of line-form ``data`` whose line holds ``needle`` (a key and value in
    their canonical encoding), parsed, in file order: the caller checks the field it
    means, so a hit elsewhere in a line (another field) is no match."""
    found: list[tuple[int, int, dict]] = []
    at = data.find(needle)
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.index(b"\n", at) + 1
        line = data[start:end - 1]
        found.append((start, end, json.loads(line[:-1] if line.endswith(b",") else line)))
        at = data.find(needle, end)
    return found
