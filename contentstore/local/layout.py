"""The OCI image layout's ``oci-layout`` and ``index.json``: the store's local references.

Each local reference is an ``index.json`` entry whose ``org.opencontainers.image.ref.name``
annotation is the full normalized reference. ``index.json`` is rewritten atomically
(temp file, fsync, rename) under an exclusive lock, so concurrent taggers never lose each
other's entries and a reader always sees a whole file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from contentstore.errors import InvalidManifest, ReferenceNotFound
from contentstore.local.fsutil import FileLock, atomic_write
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
                atomic_write(self.index_path, _dump(_empty_index()))

    def read(self) -> dict:
        try:
            index = json.loads(self.index_path.read_bytes())
        except ValueError as exc:
            raise InvalidManifest(f"{self.index_path} is not valid JSON: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise InvalidManifest(f"{self.index_path} is not an OCI image index")
        index.setdefault("manifests", [])
        return index

    def entries(self) -> list[Descriptor]:
        """Every entry of ``index.json``, named or not."""
        return [Descriptor.from_json(entry, "index.json entry") for entry in self.read()["manifests"]]

    def update(self, change: Callable[[list[dict]], None]) -> None:
        """Apply ``change`` to the list of entries under the lock, and write it back."""
        with FileLock(self._lock_path):
            index = self.read()
            change(index["manifests"])
            atomic_write(self.index_path, _dump(index))

    # -- references ----------------------------------------------------------------------

    def names(self) -> dict[str, Descriptor]:
        return {
            entry.annotations[REF_NAME_ANNOTATION]: entry
            for entry in self.entries()
            if entry.annotations.get(REF_NAME_ANNOTATION)
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
    return (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)


def _dump(index: dict) -> bytes:
    return json.dumps(index, indent=2, sort_keys=False).encode() + b"\n"
