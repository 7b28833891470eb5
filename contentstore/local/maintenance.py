"""Garbage collection and verification of a store.

Marking starts at every ``index.json`` entry and follows :meth:`Manifests.reachable`.
gc refuses to sweep when a reference points to a manifest type no installed plugin can
read, since the blobs below it would otherwise be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contentstore.errors import UnsupportedMediaType
from contentstore.local.content import BlobInfo, IngestStatus
from contentstore.local.interfaces import BlobManager, ReferenceIndex
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import Metadata
from contentstore.model.digest import Digest
from contentstore.model.manifest import REF_NAME_ANNOTATION

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


def collect(blobs: BlobManager, references: ReferenceIndex, manifests: Manifests, metadata: Metadata,
            leases: Leases, dry_run: bool = False,
            ingest_max_age: float = STALE_INGEST_SECONDS) -> GcReport:
    """Delete every blob no reference reaches, and stale ingests."""
    report = GcReport(dry_run=dry_run)
    with leases.exclusive():
        try:
            marked = {d.digest for d in manifests.reachable(references.entries())}
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(exc.media_type, f"gc refused: {exc}; install the plugin "
                                       "or remove the reference first") from None
        for blob in blobs.walk():
            if blob.digest in marked:
                report.kept += 1
                continue
            report.removed.append(blob)
            if not dry_run:
                blobs.delete(blob.digest)
        if not dry_run:
            metadata.forget_blobs([b.digest for b in report.removed])
        report.ingests = blobs.remove_stale_ingests(ingest_max_age, dry_run=dry_run)
    return report


def verify(blobs: BlobManager, references: ReferenceIndex) -> VerifyReport:
    """Rehash every blob, and check that each reference's own blob is present."""
    checked, corrupt = blobs.verify()
    missing = [
        (name or "(unnamed)", entry.digest)
        for entry in references.entries()
        if not blobs.exists(entry.digest)
        for name in [entry.annotations.get(REF_NAME_ANNOTATION)]
    ]
    return VerifyReport(checked, corrupt, missing)
