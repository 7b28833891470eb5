"""Stored manifests and indexes, read through the format plugins, and what they reach.

Marking for gc, sizes for ``images``, and the blobs an export or a push carries all walk
the same graph: from some roots, through what the format plugins say each manifest or
index points to, plus ``contentstore.gc.ref.*`` labels (a converted manifest keeps its
original alive this way, as containerd's gc labels do).
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

from contentstore.errors import ContentStoreError, MetadataError, UnsupportedMediaType
from contentstore.local.interfaces import BlobReader
from contentstore.local.metadata import Metadata
from contentstore.model.digest import Digest
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import Descriptor, Manifest
from contentstore.plugin.manager import Plugins


class Manifests:
    """Parses stored manifests; follows what they point to."""

    def __init__(self, blobs: BlobReader, plugins: Plugins, metadata: Metadata):
        self.blobs = blobs
        self.plugins = plugins
        self.metadata = metadata

    def read(self, descriptor: Descriptor) -> Manifest:
        """Read and parse a stored manifest or index (its type detected when unknown)."""
        data = self.blobs.read(descriptor.digest, MAX_MANIFEST_SIZE)
        return self.plugins.parse_manifest(descriptor.media_type or None, data)

    def descriptor(self, digest: str) -> Descriptor:
        """A descriptor for a stored blob, its media type detected from its bytes."""
        digest = Digest(digest)
        size = self.blobs.size(digest)
        media_type = ""
        if size <= MAX_MANIFEST_SIZE:
            media_type = self.plugins.detect_media_type(self.blobs.read(digest)) or ""
        return Descriptor(media_type or "application/octet-stream", digest, size)

    def parse_if_manifest(self, descriptor: Descriptor, root: bool = False) -> Manifest | None:
        """The parsed manifest ``descriptor`` names, or ``None`` if it is not a manifest.

        :raises UnsupportedMediaType: for a root whose media type no plugin reads.
        """
        media_type = descriptor.media_type
        if media_type and self.plugins.is_manifest_type(media_type):
            return self.read(descriptor)
        if media_type and not root:
            return None  # a config or a layer
        data = None
        if self.blobs.size(descriptor.digest) <= MAX_MANIFEST_SIZE:
            data = self.blobs.read(descriptor.digest, MAX_MANIFEST_SIZE)
        detected = self.plugins.detect_media_type(data) if data is not None else None
        if detected:
            return self.plugins.parse_manifest(detected, data)
        if root:
            raise UnsupportedMediaType(
                media_type or "unknown",
                f"a reference points to {descriptor.digest} of media type "
                f"{media_type or 'unknown'!r}, which no installed plugin reads",
            )
        return None

    def reachable(self, roots: Iterable[Descriptor], strict: bool = True) -> Iterator[Descriptor]:
        """Every descriptor reachable from ``roots`` (present in the store or not), once each.

        With ``strict`` an unreadable root (or manifest, or label table) raises; without,
        it is yielded and not followed.
        """
        for descriptor, _ in self.walk(roots, strict):
            yield descriptor

    def walk(self, roots: Iterable[Descriptor], strict: bool = True,
             labels: bool = True) -> Iterator[tuple[Descriptor, Manifest | None]]:
        """:meth:`reachable`, each descriptor with the manifest or index that names it
        (``None`` for a root and for what a ``contentstore.gc.ref.*`` label keeps).

        :param labels: follow the gc labels; without ``strict``, a metadata database that
            cannot be read is passed over as if it held none.
        """
        gc_refs: dict[str, list[Digest]] = {}
        if labels:
            try:
                gc_refs = self.metadata.gc_refs()
            except MetadataError:
                if strict:
                    raise
        seen: set[str] = set()
        queue: deque[tuple[Descriptor, bool, Manifest | None]] = deque((d, True, None) for d in roots)
        while queue:
            descriptor, is_root, parent = queue.popleft()
            if descriptor.digest in seen:
                continue
            seen.add(descriptor.digest)
            yield descriptor, parent
            for extra in gc_refs.get(descriptor.digest, ()):
                queue.append((Descriptor("", extra, -1), False, None))
            if not self.blobs.exists(descriptor.digest):
                continue
            try:
                manifest = self.parse_if_manifest(descriptor, root=is_root)
            except ContentStoreError:
                if strict:
                    raise
                continue
            if manifest is not None:
                queue.extend((child, False, manifest) for child in manifest.references())
