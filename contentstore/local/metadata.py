"""Metadata that is not part of the OCI layout, in SQLite beside it.

- diffID -> blob digest, with the registry and repository the blob came from (Docker's
  V2MetadataService);
- blob digest -> the registries and repositories known to hold it (configs too, which
  have no diffID), so a push can cross-repository-mount instead of uploading;
- labels on blobs, such as ``contentstore.gc.ref.<name>`` (another blob that gc must keep
  while this one is kept, as containerd's gc labels do).

SQLite, not loose files: several processes update this at once, and SQLite gives
transactions, locking and crash safety for free, plus look-ups both ways (diffID to
digests, digest to diffID) without scanning. Ingest state is *not* kept here: it lives
beside each ingest's bytes (``content.py``), so the two can never disagree after a crash.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from contentstore.model.digest import Digest

GC_REF_LABEL_PREFIX = "contentstore.gc.ref."
#: Label on a converted manifest naming the original it was made from (gc keeps both).
ORIGINAL_LABEL = GC_REF_LABEL_PREFIX + "content.original"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS diffid (
    diff_id    TEXT NOT NULL,
    digest     TEXT NOT NULL,
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (diff_id, digest, registry, repository)
);
CREATE INDEX IF NOT EXISTS diffid_by_digest ON diffid (digest);
CREATE TABLE IF NOT EXISTS blob_source (
    digest     TEXT NOT NULL,
    registry   TEXT NOT NULL,
    repository TEXT NOT NULL,
    PRIMARY KEY (digest, registry, repository)
);
CREATE TABLE IF NOT EXISTS label (
    digest TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (digest, key)
);
"""


@dataclass(frozen=True)
class BlobSource:
    """Where a compressed layer blob was seen: its digest, registry and repository."""

    digest: Digest
    registry: str
    repository: str


class Metadata:
    def __init__(self, path: Path):
        self.path = Path(path)
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection; with ``write``, inside one immediate (write-locked) transaction."""
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            if not write:
                yield db
                return
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # -- diffIDs -------------------------------------------------------------------------

    def add_diff_id(self, diff_id: str, digest: str, registry: str, repository: str) -> None:
        with self._connect(write=True) as db:
            db.execute(
                # REPLACE, not IGNORE: a record made again becomes the most recent one
                "INSERT OR REPLACE INTO diffid VALUES (?, ?, ?, ?)",
                (Digest(diff_id), Digest(digest), registry, repository),
            )

    def sources(self, diff_id: str) -> list[BlobSource]:
        """Every blob digest known for ``diff_id``, with where it came from."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT digest, registry, repository FROM diffid WHERE diff_id = ? ORDER BY rowid DESC",
                (Digest(diff_id),),
            ).fetchall()
        return [BlobSource(Digest(d), r, p) for d, r, p in rows]

    def diff_id(self, digest: str) -> Digest | None:
        """The diffID of a compressed layer blob, when a pull recorded it."""
        with self._connect() as db:
            row = db.execute("SELECT diff_id FROM diffid WHERE digest = ? LIMIT 1", (Digest(digest),)).fetchone()
        return Digest(row[0]) if row else None

    # -- where blobs are ---------------------------------------------------------------

    def add_sources(self, digests: list[str], registry: str, repository: str) -> None:
        """Record that ``registry/repository`` holds each blob of ``digests``."""
        with self._connect(write=True) as db:
            db.executemany("INSERT OR REPLACE INTO blob_source VALUES (?, ?, ?)",
                           [(Digest(d), registry, repository) for d in digests])

    def blob_sources(self, digest: str) -> list[BlobSource]:
        """The repositories known to hold ``digest``, most recently recorded first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT registry, repository FROM blob_source WHERE digest = ? ORDER BY rowid DESC",
                (Digest(digest),),
            ).fetchall()
        return [BlobSource(Digest(digest), r, p) for r, p in rows]

    # -- labels --------------------------------------------------------------------------

    def set_label(self, digest: str, key: str, value: str | None) -> None:
        with self._connect(write=True) as db:
            if value is None:
                db.execute("DELETE FROM label WHERE digest = ? AND key = ?", (Digest(digest), key))
            else:
                db.execute("INSERT OR REPLACE INTO label VALUES (?, ?, ?)", (Digest(digest), key, value))

    def labels(self, digest: str) -> dict[str, str]:
        with self._connect() as db:
            rows = db.execute("SELECT key, value FROM label WHERE digest = ?", (Digest(digest),)).fetchall()
        return dict(rows)

    def gc_refs(self) -> dict[str, list[Digest]]:
        """digest -> the digests its ``contentstore.gc.ref.*`` labels keep alive."""
        with self._connect() as db:
            # Not LIKE: it ignores case, and label keys are case-sensitive.
            rows = db.execute(
                "SELECT digest, value FROM label WHERE substr(key, 1, ?) = ?",
                (len(GC_REF_LABEL_PREFIX), GC_REF_LABEL_PREFIX),
            ).fetchall()
        refs: dict[str, list[Digest]] = {}
        for digest, value in rows:
            with contextlib.suppress(ValueError):
                target = Digest(value)
                refs.setdefault(digest, []).append(target)
        return refs

    def forget_blobs(self, digests: list[str]) -> None:
        """Drop the labels of deleted blobs. diffID records stay: a registry may still
        hold the blob, and push can mount it from there."""
        with self._connect(write=True) as db:
            db.executemany("DELETE FROM label WHERE digest = ?", [(d,) for d in digests])
