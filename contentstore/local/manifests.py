"""Stored manifests and indexes, read through the format plugins, and what they reach.

Marking for gc, sizes for ``images``, and the blobs an export or a push carries all walk
the same graph: from some roots, through what the format plugins say each manifest or
index points to, plus ``contentstore.gc.ref.*`` labels (a converted manifest keeps its
original alive this way, as containerd's gc labels do). gc also follows referrers (OCI
1.1): the stored manifests whose ``subject`` is a manifest it keeps, from the subject
index in the metadata; sizes and exports do not (a signature is not part of its image).
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

from contentstore.errors import ContentStoreError, MetadataError, UnsupportedMediaType
from contentstore.local.interfaces import BlobReader
from contentstore.local.metadata import Metadata
from contentstore.model.artifact import referrer_descriptor, subject_of
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

    def reachable(self, roots: Iterable[Descriptor], strict: bool = True,
                  referrers: bool = False) -> Iterator[Descriptor]:
        """Every descriptor reachable from ``roots`` (present in the store or not), once each.

        With ``strict`` an unreadable root (or manifest, or label table) raises; without,
        it is yielded and not followed. With ``referrers``, the stored referrers of every
        manifest reached are reached too (gc: a referrer lives while its subject does).
        """
        for descriptor, _ in self.walk(roots, strict, referrers=referrers):
            yield descriptor

    def walk(self, roots: Iterable[Descriptor], strict: bool = True,
             labels: bool = True, referrers: bool = False) -> Iterator[tuple[Descriptor, Manifest | None]]:
        """:meth:`reachable`, each descriptor with the manifest or index that names it
        (``None`` for a root and for what a ``contentstore.gc.ref.*`` label keeps or a
        referrer).

        :param labels: follow the gc labels; without ``strict``, a metadata database that
            cannot be read is passed over as if it held none.
        :param referrers: follow the subject index to the referrers of what is reached.
        """
        gc_refs: dict[str, list[Digest]] = {}
        if labels:
            try:
                gc_refs = self.metadata.gc_refs()
            except MetadataError:
                if strict:
                    raise
        if referrers:
            try:
                for subject, digests in self.metadata.referrer_digests().items():
                    gc_refs.setdefault(subject, []).extend(digests)
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

    def referrer_of(self, descriptor: Descriptor, manifest: Manifest) -> tuple[Digest, Descriptor] | None:
        """(subject digest, referrers-list descriptor) when ``manifest`` has a ``subject``."""
        subject = subject_of(manifest)
        if subject is None:
            return None
        return subject.digest, referrer_descriptor(descriptor, manifest)

    def index_referrer(self, descriptor: Descriptor, manifest: Manifest) -> Digest | None:
        """Record ``manifest`` (stored as ``descriptor``) in the subject index when it has a
        ``subject``; return the subject's digest. Every way a manifest enters the store
        (pull, put_artifact, import) calls this."""
        found = self.referrer_of(descriptor, manifest)
        if found is None:
            return None
        self.metadata.add_referrer(*found)
        return found[0]

    def index_stored(self, digest: str) -> Digest | None:
        """:meth:`index_referrer` for a stored blob that may or may not be a manifest (an
        import stores blobs before it knows what they are); the subject's digest, if any."""
        found = self.stored_referrer(digest)
        if found is None:
            return None
        self.metadata.add_referrer(*found)
        return found[0]

    def stored_referrer(self, digest: str) -> tuple[Digest, Descriptor] | None:
        """(subject digest, referrers-list descriptor) when the stored blob ``digest`` is a
        manifest with a ``subject``; ``None`` for anything else (a layer, a config, a blob
        that cannot be read)."""
        try:
            size = self.blobs.size(digest)
            if size > MAX_MANIFEST_SIZE:
                return None
            with self.blobs.open(digest) as f:
                if not f.read(64).lstrip().startswith(b"{"):
                    return None  # not a JSON object: a layer (cheap to tell, no need to hash it)
            manifest = self.parse_if_manifest(Descriptor("", Digest(digest), size))
        except (ContentStoreError, OSError):
            return None
        if manifest is None:
            return None
        try:
            return self.referrer_of(Descriptor(manifest.media_type, Digest(digest), size), manifest)
        except ContentStoreError:
            return None
