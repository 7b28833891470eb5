"""Reachability, garbage collection and verification over a store.

Marking starts at every ``index.json`` entry and follows what the format plugins say each
manifest or index points to, plus ``contentstore.gc.ref.*`` labels (how a schema1 image's
original signed manifest stays alive beside its converted manifest). gc refuses to sweep
when a reference points to a manifest type no installed plugin can read, since the blobs
below it would otherwise be lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator

from contentstore.local.content import BlobInfo, IngestStatus
from contentstore.model.digest import Digest
from contentstore.errors import ContentStoreError, UnsupportedMediaType
from contentstore.model.manifest import MAX_MANIFEST_SIZE, REF_NAME_ANNOTATION, Descriptor, Manifest

if TYPE_CHECKING:  # pragma: no cover
    from contentstore.store import Store

#: An ingest nobody has written for this long is stale and gc removes it.
STALE_INGEST_SECONDS = 24 * 3600


@dataclass
class GcReport:
    dry_run: bool
    kept: int = 0
    removed: list[BlobInfo] = field(default_factory=list)
    ingests: list[IngestStatus] = field(default_factory=list)

    @property
    def removed_bytes(self) -> int:
        return sum(blob.size for blob in self.removed) + sum(i.offset for i in self.ingests)


@dataclass
class VerifyReport:
    checked: int
    corrupt: list[tuple[Digest, Digest]]
    missing: list[tuple[str, Digest]]

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


def manifest_of(store: "Store", descriptor: Descriptor, root: bool = False) -> Manifest | None:
    """The parsed manifest ``descriptor`` names, or ``None`` if it is not a manifest.

    :raises UnsupportedMediaType: for a root whose media type no plugin reads.
    """
    media_type = descriptor.media_type
    if media_type and store.plugins.is_manifest_type(media_type):
        return store.plugins.parse_manifest(media_type, store.content.read(descriptor.digest, MAX_MANIFEST_SIZE))
    if media_type and not root:
        return None  # a config or a layer
    if store.content.size(descriptor.digest) > MAX_MANIFEST_SIZE:
        detected = None
    else:
        data = store.content.read(descriptor.digest, MAX_MANIFEST_SIZE)
        detected = store.plugins.detect_media_type(data)
    if detected:
        return store.plugins.parse_manifest(detected, data)
    if root:
        raise UnsupportedMediaType(
            media_type or "unknown",
            f"a reference points to {descriptor.digest} of media type "
            f"{media_type or 'unknown'!r}, which no installed plugin reads",
        )
    return None


def reachable(store: "Store", roots: Iterable[Descriptor], strict: bool = True) -> Iterator[Descriptor]:
    """Every descriptor reachable from ``roots`` (present in the store or not), once each.

    With ``strict`` an unreadable root raises; without, it is yielded and not followed.
    """
    gc_refs = store.metadata.gc_refs()
    seen: set[str] = set()
    queue = deque((d, True) for d in roots)
    while queue:
        descriptor, is_root = queue.popleft()
        if descriptor.digest in seen:
            continue
        seen.add(descriptor.digest)
        yield descriptor
        for extra in gc_refs.get(descriptor.digest, ()):
            queue.append((Descriptor("", extra, -1), False))
        if not store.content.exists(descriptor.digest):
            continue
        try:
            manifest = manifest_of(store, descriptor, root=is_root)
        except ContentStoreError:
            if strict:
                raise
            continue
        if manifest is not None:
            queue.extend((child, False) for child in manifest.references())


def collect(store: "Store", dry_run: bool = False, ingest_max_age: float = STALE_INGEST_SECONDS) -> GcReport:
    """Delete every blob no reference reaches, and stale ingests."""
    report = GcReport(dry_run=dry_run)
    with store.exclusive():
        try:
            marked = {d.digest for d in reachable(store, store.layout.entries())}
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(exc.media_type, f"gc refused: {exc}; install the plugin "
                                       "or remove the reference first") from None
        for blob in store.content.walk():
            if blob.digest in marked:
                report.kept += 1
                continue
            report.removed.append(blob)
            if not dry_run:
                store.content.delete(blob.digest)
        if not dry_run:
            store.metadata.forget_blobs([b.digest for b in report.removed])
        report.ingests = store.content.remove_stale_ingests(ingest_max_age, dry_run=dry_run)
    return report


def verify(store: "Store") -> VerifyReport:
    """Rehash every blob, and check that each reference's own blob is present."""
    checked, corrupt = store.content.verify()
    missing = [
        (name or "(unnamed)", entry.digest)
        for entry in store.layout.entries()
        if not store.content.exists(entry.digest)
        for name in [entry.annotations.get(REF_NAME_ANNOTATION)]
    ]
    return VerifyReport(checked, corrupt, missing)
