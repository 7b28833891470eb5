"""Garbage collection and verification of a store.

Marking starts at every ``index.json`` entry and follows :meth:`Manifests.reachable`,
referrers included: a manifest whose ``subject`` is a kept manifest is kept (from the
subject index; what the sweep would delete is also looked at, so a referrer the index
does not know of, such as one put as a raw blob, is kept all the same).
gc refuses to sweep when a reference points to a manifest type no installed plugin can
read, or to a manifest whose stored bytes changed, or when the metadata's labels cannot
be read, since the blobs below them would otherwise be lost. Besides blobs it removes
what killed processes left: ingests idle for a day (every ingest no running process
holds, with ``ingests=True``) and stray temporary files.

verify rehashes every blob and checks what the references reach: each present
descriptor's size, and the blobs a present image manifest needs. With ``repair`` it
deletes corrupt blobs (a pull fetches them again), rebuilds a damaged metadata database
(only the labels matter in it, and they are restored from their copy) and corrects
``index.json`` sizes that disagree with the verified blob.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contentstore.errors import MetadataDamaged, StoreDamaged, UnsupportedMediaType
from contentstore.local.content import BlobInfo, IngestStatus
from contentstore.local.fsutil import StrayFile
from contentstore.local.interfaces import BlobManager, ReferenceIndex
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import Metadata
from contentstore.model.digest import Digest
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor, ImageManifest

#: An ingest nobody has written for this long is stale and gc removes it.
STALE_INGEST_SECONDS = 24 * 3600


@dataclass
class GcReport:
    dry_run: bool
    kept: int = 0
    removed: list[BlobInfo] = field(default_factory=list)
    ingests: list[IngestStatus] = field(default_factory=list)
    temporary: list[StrayFile] = field(default_factory=list)

    @property
    def removed_bytes(self) -> int:
        return (sum(blob.size for blob in self.removed) + sum(i.offset for i in self.ingests)
                + sum(f.size for f in self.temporary))


@dataclass(frozen=True)
class SizeProblem:
    """A descriptor that states another size than its stored blob has."""

    reference: str
    digest: Digest
    stated: int
    actual: int
    in_index: bool  # an ``index.json`` entry (the one kind --repair corrects)


@dataclass
class VerifyReport:
    checked: int
    corrupt: list[tuple[Digest, Digest]]
    missing: list[tuple[str, Digest]]
    sizes: list[SizeProblem] = field(default_factory=list)
    #: Damaged files and malformed entries, one line each (metadata.db, index.json).
    damaged: list[str] = field(default_factory=list)
    #: With ``repair``: what was done, one line each.
    repaired: list[str] = field(default_factory=list)
    #: With ``repair``: the corrupt blobs deleted.
    removed: list[Digest] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing was found wrong (also false after ``repair`` fixed what it found)."""
        return not self.corrupt and not self.missing and not self.sizes and not self.damaged


def collect(blobs: BlobManager, references: ReferenceIndex, manifests: Manifests, metadata: Metadata,
            leases: Leases, dry_run: bool = False, ingests: bool = False,
            ingest_max_age: float = STALE_INGEST_SECONDS) -> GcReport:
    """Delete every blob no reference reaches, stale ingests (with ``ingests``: every
    ingest no running process holds) and stray temporary files.

    Ingests and stray files go first: they hold no content a reference needs, so they are
    freed (a full disk) even when the sweep of blobs is then refused.
    """
    report = GcReport(dry_run=dry_run)
    with leases.exclusive():
        report.ingests = blobs.remove_stale_ingests(0 if ingests else ingest_max_age, dry_run=dry_run)
        report.temporary = references.remove_temporary(dry_run) + blobs.remove_temporary(dry_run)
        try:
            marked = {d.digest for d in manifests.reachable(references.entries(), referrers=True)}
            marked |= _unindexed_referrers(blobs, manifests, marked)
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(exc.media_type, f"gc refused: {exc}; install the plugin "
                                       "or remove the reference first") from None
        except StoreDamaged as exc:  # a damaged index.json, manifest or metadata.db
            exc.args = (f"gc refused: {exc}",)
            raise
        for blob in blobs.walk():
            if blob.digest in marked:
                report.kept += 1
                continue
            report.removed.append(blob)
            if not dry_run:
                blobs.delete(blob.digest)
        if not dry_run:
            metadata.forget_blobs([b.digest for b in report.removed])
        report.temporary += metadata.remove_temporary(dry_run)
    return report


def _unindexed_referrers(blobs: BlobManager, manifests: Manifests, marked: set[str]) -> set[str]:
    """What gc keeps besides ``marked`` for referrers the subject index does not list: any
    unmarked stored manifest whose subject is kept, and what it reaches (repeated, for the
    signature of an SBOM). Reads only the blobs about to be swept (JSON ones, up to the
    manifest size limit), and writes nothing (gc must work on a full disk)."""
    pending: dict[str, str] = {}
    for blob in blobs.walk():
        if blob.digest not in marked:
            found = manifests.stored_referrer(blob.digest)
            if found is not None:
                pending[blob.digest] = found[0]
    kept: set[str] = set()
    while True:
        ready = [digest for digest, subject in pending.items() if subject in marked or subject in kept]
        if not ready:
            return kept
        for digest in ready:
            del pending[digest]
        roots = [Descriptor("", Digest(digest), -1) for digest in ready]
        kept |= {d.digest for d in manifests.reachable(roots, strict=False, referrers=True)}


def _reindex(blobs: BlobManager, manifests: Manifests, metadata: Metadata, report: VerifyReport) -> None:
    """Rebuild the subject index (a cache) from the stored manifests when it differs."""
    rows = [found for blob in blobs.walk() if (found := manifests.stored_referrer(blob.digest)) is not None]
    before = {(subject, digest) for subject, digests in metadata.referrer_digests().items() for digest in digests}
    if before == {(subject, referrer.digest) for subject, referrer in rows}:
        return
    metadata.replace_referrers(rows)
    report.repaired.append(f"rebuilt the subject index from the stored manifests: {len(rows)} referrers")


def verify(blobs: BlobManager, references: ReferenceIndex, manifests: Manifests, metadata: Metadata,
           leases: Leases, repair: bool = False) -> VerifyReport:
    """Rehash every blob; check the metadata database, ``index.json``, and what each
    reference reaches (sizes, the blobs of present image manifests). With ``repair``,
    delete corrupt blobs, rebuild a damaged metadata database and correct ``index.json``
    sizes."""
    report = VerifyReport(0, [], [])
    labels = _check_metadata(metadata, leases, repair, report)

    report.checked, report.corrupt = blobs.verify()
    if repair and report.corrupt:
        with leases.exclusive():  # no writer installs good bytes between check and unlink
            for digest, _ in report.corrupt:
                if blobs.remove_corrupt(digest):
                    report.removed.append(digest)
                    report.repaired.append(f"removed corrupt blob {digest} (a pull fetches it again)")
    if repair and labels:
        _reindex(blobs, manifests, metadata, report)

    try:
        entries = references.entries()
        report.damaged.extend(references.problems())
    except StoreDamaged as exc:
        report.damaged.append(str(exc))
        return report
    corrupt = {digest for digest, _ in report.corrupt}
    for entry in entries:
        name = entry.annotations.get(REF_NAME_ANNOTATION)
        name = name if isinstance(name, str) and name else f"(unnamed {entry.digest})"
        for descriptor, parent in manifests.walk([entry], strict=False, labels=labels):
            if not blobs.exists(descriptor.digest):
                if parent is None or isinstance(parent, ImageManifest):
                    report.missing.append((name, descriptor.digest))  # an index may omit platforms
                continue
            if descriptor.size >= 0 and descriptor.digest not in corrupt:
                actual = blobs.size(descriptor.digest)
                if actual != descriptor.size:
                    report.sizes.append(SizeProblem(name, descriptor.digest, descriptor.size, actual,
                                                    descriptor is entry))
    if repair:
        fix = {p.digest: p.actual for p in report.sizes if p.in_index}
        if fix:
            for digest in references.correct_sizes(fix):
                report.repaired.append(f"corrected the size of {digest} in index.json to {fix[digest]}")
    return report


def _check_metadata(metadata: Metadata, leases: Leases, repair: bool, report: VerifyReport) -> bool:
    """Check (and with ``repair`` rebuild) the metadata database; whether its labels can
    be followed."""
    try:
        metadata.check()
        return True
    except MetadataDamaged as exc:
        report.damaged.append(str(exc))
        if not repair:
            return False
    with leases.exclusive():
        rebuilt = metadata.rebuild()
    kept = f"the damaged file is kept as {rebuilt.kept_as}; " if rebuilt.kept_as else ""
    source = (f"{rebuilt.labels} labels restored from {metadata.labels_path.name}"
              + (" and the damaged file" if rebuilt.from_damaged else ""))
    if not rebuilt.from_copy and not rebuilt.from_damaged:
        source = (f"no labels could be restored ({metadata.labels_path.name} is missing or unreadable): "
                  f"gc may now sweep a schema1 image's original manifest")
    report.repaired.append(f"rebuilt {metadata.path}: {kept}{source}; diffIDs and blob sources are "
                           f"relearned by pulls")
    return True
