"""The OCI image layout's ``oci-layout`` and ``index.json``: the store's local references.

Each local reference is an ``index.json`` entry whose ``org.opencontainers.image.ref.name``
annotation is the full normalized reference. ``index.json`` is rewritten atomically
(temp file, fsync, rename) under an exclusive lock, so concurrent taggers never lose each
other's entries and a reader always sees a whole file.

An ``index.json`` that cannot be read (not JSON, nested beyond reason, not an index, an
entry that is not a descriptor) is an :class:`IndexDamaged` naming the file, and is never
written over (a tag fails instead). An entry
whose name annotation is not a string keeps its content (gc marks from every entry) but
names nothing; :meth:`Layout.problems` reports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from contentstore.errors import IndexDamaged, InvalidManifest, ReferenceNotFound
from contentstore.local.fsutil import FileLock, StrayFile, atomic_write, remove_files
from contentstore.model import mediatypes
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor


def _empty_index() -> dict:
    return {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}


class Layout:
    def __init__(self, root: Path, state_dir: Path):
        self.root = Path(root)
        self.index_path = self.root / "index.json"
        self.layout_path = self.root / "oci-layout"
        self._lock_path = Path(state_dir) / "index.lock"
        self._ensure()

    def _ensure(self) -> None:
        if self.layout_path.exists() and self.index_path.exists():
            return
        with FileLock(self._lock_path):
            if not self.layout_path.exists():
                atomic_write(self.layout_path, json.dumps(
                    {"imageLayoutVersion": mediatypes.OCI_LAYOUT_VERSION}).encode())
            if not self.index_path.exists():
                atomic_write(self.index_path, _dump(_empty_index()), what="index.json")

    def read(self) -> dict:
        try:
            index = json.loads(self.index_path.read_bytes())
        except RecursionError:
            raise IndexDamaged(f"{self.index_path} is not an OCI image index: nested too deeply",
                               str(self.index_path)) from None
        except ValueError as exc:
            raise IndexDamaged(f"{self.index_path} is not valid JSON: {exc}", str(self.index_path)) from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise IndexDamaged(f"{self.index_path} is not an OCI image index", str(self.index_path))
        index.setdefault("manifests", [])
        return index

    def entries(self) -> list[Descriptor]:
        """Every entry of ``index.json``, named or not."""
        try:
            return [Descriptor.from_json(entry, "index.json entry") for entry in self.read()["manifests"]]
        except IndexDamaged:
            raise
        except InvalidManifest as exc:
            raise IndexDamaged(f"{exc} (in {self.index_path})", str(self.index_path)) from None

    def update(self, change: Callable[[list[dict]], None]) -> None:
        """Apply ``change`` to the list of entries under the lock, and write it back."""
        with FileLock(self._lock_path):
            index = self.read()
            change(index["manifests"])
            atomic_write(self.index_path, _dump(index), what="index.json")

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
        """Named entries by name (an entry whose name is not a string names nothing)."""
        return {
            entry.annotations[REF_NAME_ANNOTATION]: entry
            for entry in self.entries()
            if isinstance(entry.annotations.get(REF_NAME_ANNOTATION), str)
            and entry.annotations[REF_NAME_ANNOTATION]
        }

    def resolve(self, name: str) -> Descriptor:
        try:
            return self.names()[name]
        except KeyError:
            raise ReferenceNotFound(name) from None

    def tag(self, name: str, target: Descriptor) -> None:
        """Point ``name`` at ``target``, replacing any entry that had that name."""
        entry = target.with_annotations(**{REF_NAME_ANNOTATION: name}).to_json()

        def change(manifests: list[dict]) -> None:
            manifests[:] = [m for m in manifests if _name_of(m) != name]
            manifests.append(entry)

        self.update(change)

    def untag(self, name: str) -> Descriptor:
        removed: list[dict] = []

        def change(manifests: list[dict]) -> None:
            removed.extend(m for m in manifests if _name_of(m) == name)
            if not removed:
                raise ReferenceNotFound(name)
            manifests[:] = [m for m in manifests if _name_of(m) != name]

        self.update(change)
        return Descriptor.from_json(removed[0])


def _name_of(entry: dict) -> str | None:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def _dump(index: dict) -> bytes:
    return json.dumps(index, indent=2, sort_keys=False).encode() + b"\n"
