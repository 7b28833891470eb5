"""Metadata that is not part of the OCI layout, in SQLite beside it.

- diffID -> blob digest, with the registry and repository the blob came from (Docker's
  V2MetadataService);
- blob digest -> the registries and repositories known to hold it (configs too, which
  have no diffID), so a push can cross-repository-mount instead of uploading;
- labels on blobs, such as ``contentstore.gc.ref.<name>`` (another blob that gc must keep
  while this one is kept, as containerd's gc labels do);
- the subject index: subject digest -> each stored manifest whose ``subject`` names it
  (OCI 1.1 referrers), as a referrers list gives it (media type, size, ``artifactType``,
  annotations), for ``referrers --local``, ``inspect``, ``push --referrers`` and gc.
- image summaries: what ``images`` lists of each image, with what that depends on
  (:mod:`contentstore.local.summaries`).

SQLite, not loose files: several processes update this at once, and SQLite gives
transactions, locking and crash safety for free, plus look-ups both ways (diffID to
digests, digest to diffID) without scanning. Ingest state is *not* kept here: it lives
beside each ingest's bytes (``content.py``), so the two can never disagree after a crash.

What is only a cache and what is not: diffIDs and blob sources are relearned by pulls
(a download computes a diffID it does not find), image summaries by the next listing,
and the subject index is read again from the stored manifests (``verify --repair``; gc
also looks at what it would sweep for manifests whose subject it keeps), so a damaged
database loses nothing that matters when it is rebuilt empty. Labels are not a cache: a
``contentstore.gc.ref.*`` label is the only thing that keeps a schema1 image's signed
original from gc. So every change of the labels also rewrites ``labels.json`` beside the
database (atomically, inside the same write transaction, so writers are serialized),
and a rebuild restores the labels from it (and from whatever of the damaged file still
reads). The damaged file itself is kept, renamed, never deleted.

A damaged database (garbage, truncated, a folder, another schema) is a
:class:`MetadataDamaged` naming the file, never a traceback; :meth:`Metadata.rebuild`
(``contentstore verify --repair``) replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from contentstore.errors import ContentStoreError, MetadataDamaged, MetadataError, WriteError
from contentstore.local.fsutil import StrayFile, atomic_write, remove_files
from contentstore.model.digest import Digest, is_valid
from contentstore.model.manifest import Descriptor

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
CREATE TABLE IF NOT EXISTS referrer (
    subject       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT,
    size          INTEGER NOT NULL,
    annotations   TEXT NOT NULL,
    PRIMARY KEY (subject, digest)
);
CREATE INDEX IF NOT EXISTS referrer_by_digest ON referrer (digest);
CREATE TABLE IF NOT EXISTS image_summary (
    digest  TEXT NOT NULL,
    variant TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (digest, variant)
);
"""


#: Each table's columns, as the schema above makes them (a check of a database's shape).
_COLUMNS = {
    "diffid": ["diff_id", "digest", "registry", "repository"],
    "blob_source": ["digest", "registry", "repository"],
    "label": ["digest", "key", "value"],
    "referrer": ["subject", "digest", "media_type", "artifact_type", "size", "annotations"],
    "image_summary": ["digest", "variant", "summary"],
}

# SQLite's primary result codes that say the file is not a usable database of ours.
_SQLITE_ERROR, _SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_NOTADB = 1, 11, 14, 13, 26
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


@dataclass(frozen=True)
class Rebuilt:
    """What :meth:`Metadata.rebuild` did."""

    kept_as: Path | None       # where the damaged file now is
    labels: int                # labels in the new database
    from_copy: bool            # labels.json could be read
    from_damaged: int          # labels read from the damaged file


@dataclass(frozen=True)
class BlobSource:
    """Where a compressed layer blob was seen: its digest, registry and repository."""

    digest: Digest
    registry: str
    repository: str


class Metadata:
    def __init__(self, path: Path, labels_copy: Path | None = None):
        self.path = Path(path)
        #: The copy of every label, restored from on a rebuild.
        self.labels_path = Path(labels_copy) if labels_copy else self.path.with_name("labels.json")
        self._ready = False
        self._ready_lock = threading.Lock()

    # -- connections and errors ----------------------------------------------------------

    def _ensure(self) -> None:
        """Create the schema on first use (not in ``__init__``: a damaged file must not
        stop commands that never use the metadata); a missing database is created (by a
        write) with the labels of ``labels.json``."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            created = not self.path.exists()
            with self._guard():
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                try:
                    db.executescript(_SCHEMA)
                    if created:
                        labels, _ = self._read_copy()
                        if labels:
                            db.execute("BEGIN IMMEDIATE")
                            db.executemany("INSERT OR IGNORE INTO label VALUES (?, ?, ?)", labels)
                            db.execute("COMMIT")
                finally:
                    db.close()
            self._ready = True

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors as the store's: one line naming the file. A plain SQL error
        from a database whose tables are ours is a bug, and stays as it is."""
        try:
            yield
        except sqlite3.Error as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from exc

    def _damaged(self, detail: str) -> MetadataDamaged:
        return MetadataDamaged(f"metadata database {self.path} is damaged ({detail}): "
                               f"`contentstore verify --repair` rebuilds it", str(self.path))

    def _error(self, exc: sqlite3.Error) -> ContentStoreError | None:
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code == _SQLITE_FULL:
            return WriteError("metadata", str(self.path), str(exc))
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or (code == _SQLITE_CANTOPEN and self.path.is_dir()):
            return self._damaged(str(exc))
        if code == _SQLITE_ERROR:  # our fixed statements failed: are the tables ours?
            shape = self._shape_problem()
            return self._damaged(f"{exc}; {shape}") if shape else None
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return MetadataError(f"metadata database {self.path} stayed locked by another process: {exc}",
                                 str(self.path))
        return MetadataError(f"metadata database {self.path}: {exc}", str(self.path))

    def _shape_problem(self) -> str | None:
        """What is not as the schema makes it (a table missing, other columns), if anything."""
        try:
            db = sqlite3.connect(self.path, timeout=60)
            try:
                for table, columns in _COLUMNS.items():
                    found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                    if found != columns:
                        return f"table {table} has columns {found}, not {columns}"
            finally:
                db.close()
        except sqlite3.Error as exc:
            return str(exc)
        return None

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection; with ``write``, inside one immediate (write-locked) transaction.

        Reading writes nothing: a database that does not exist yet (or was lost) reads as
        an empty one holding the labels of ``labels.json``, so gc and verify work on a
        full disk; the file is created by the first write.
        """
        if not write and not self._ready and not os.path.lexists(self.path):
            with self._guard():
                db = sqlite3.connect(":memory:", isolation_level=None)
                try:
                    db.executescript(_SCHEMA)
                    db.executemany("INSERT OR IGNORE INTO label VALUES (?, ?, ?)", self._read_copy()[0])
                    yield db
                finally:
                    db.close()
            return
        self._ensure()  # creates the tables only where they are missing: no write otherwise
        with self._guard():
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            try:
                if not write:
                    yield db
                    return
                db.execute("PRAGMA synchronous=FULL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    if not self.labels_path.exists():  # a store from before labels.json
                        self._write_copy(db)
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.close()

    def prepare(self) -> None:
        """Make the database ready for writes (its tables, and ``labels.json``), which a
        new store's first write otherwise does: a download calls this while its blobs
        arrive, so that its records afterwards cost only their own transaction."""
        with self._connect(write=True):
            pass

    # -- the labels' copy ----------------------------------------------------------------

    def _write_copy(self, db: sqlite3.Connection) -> None:
        """Rewrite ``labels.json`` from the label table (inside a write transaction, so
        the copy is written by one process at a time, before the change commits)."""
        labels: dict[str, dict[str, str]] = {}
        for digest, key, value in db.execute("SELECT digest, key, value FROM label ORDER BY digest, key"):
            labels.setdefault(digest, {})[key] = value
        data = json.dumps({"labels": labels}, indent=1, sort_keys=True).encode() + b"\n"
        atomic_write(self.labels_path, data, what="the copy of the metadata labels")

    def _read_copy(self) -> tuple[list[tuple[str, str, str]], bool]:
        """The labels of ``labels.json`` and whether it could be read."""
        try:
            with open(self.labels_path, "rb") as f:
                data = json.load(f)
            labels = data["labels"]
            rows = [(digest, key, value) for digest, pairs in labels.items() for key, value in pairs.items()]
        except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
            return [], False
        return [row for row in rows if _valid_label(row)], True

    # -- health --------------------------------------------------------------------------

    def check(self) -> None:
        """Read the whole database (SQLite's ``quick_check``) and its tables' shape.

        :raises MetadataDamaged: naming the file and what is wrong.
        """
        with self._connect() as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise self._damaged(problems[0])
        if os.path.lexists(self.path):
            shape = self._shape_problem()
            if shape:
                raise self._damaged(shape)

    def rebuild(self) -> Rebuilt:
        """Replace a damaged database with a new one: the damaged file (and its journal) is
        renamed ``metadata.db.damaged-<time>`` and kept; the labels come back from
        ``labels.json`` plus whatever the damaged file still yields; diffIDs and blob
        sources start empty (pulls relearn them).

        Call it while no other process writes (under gc's exclusive lock).
        """
        with self._ready_lock:
            self._ready = False
            copied, readable = self._read_copy()
            salvaged = self._salvage()
            kept_as = None
            if self.path.exists() or self.path.is_symlink():
                stamp = time.strftime("%Y%m%dT%H%M%S")
                kept_as = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
                n = 1
                while kept_as.exists():
                    n += 1
                    kept_as = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
                os.replace(self.path, kept_as)
                for suffix in ("-journal", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(f"{self.path}{suffix}", f"{kept_as}{suffix}")
            with self._guard():
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                try:
                    db.executescript(_SCHEMA)
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany("INSERT OR IGNORE INTO label VALUES (?, ?, ?)", copied + salvaged)
                    count = db.execute("SELECT COUNT(*) FROM label").fetchone()[0]
                    self._write_copy(db)
                    db.execute("COMMIT")
                finally:
                    db.close()
            self._ready = True
        return Rebuilt(kept_as, count, readable, len(salvaged))

    def _salvage(self) -> list[tuple[str, str, str]]:
        """The labels a damaged database still yields (often none)."""
        if not self.path.is_file():
            return []
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            try:
                rows = db.execute("SELECT digest, key, value FROM label").fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            return []
        return [row for row in rows if _valid_label(row)]

    def remove_temporary(self, dry_run: bool = False) -> list[StrayFile]:
        """Half-written copies of ``labels.json`` a killed process left (looked for while
        holding the write lock, so none is being written)."""
        pattern = f".{self.labels_path.name}.*.tmp"
        if not any(self.labels_path.parent.glob(pattern)):
            return []  # the usual case: no write lock (nor a database) needed
        with self._connect(write=True):
            return remove_files(sorted(self.labels_path.parent.glob(pattern)), dry_run)

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
        """Set (or with ``None`` remove) a label; ``labels.json`` is rewritten with it."""
        with self._connect(write=True) as db:
            if value is None:
                db.execute("DELETE FROM label WHERE digest = ? AND key = ?", (Digest(digest), key))
            else:
                db.execute("INSERT OR REPLACE INTO label VALUES (?, ?, ?)", (Digest(digest), key, value))
            self._write_copy(db)

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

    def gc_labels(self) -> dict[str, dict[str, str]]:
        """digest -> its ``contentstore.gc.ref.*`` labels (key -> value), as they are."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT digest, key, value FROM label WHERE substr(key, 1, ?) = ?",
                (len(GC_REF_LABEL_PREFIX), GC_REF_LABEL_PREFIX),
            ).fetchall()
        labels: dict[str, dict[str, str]] = {}
        for digest, key, value in rows:
            labels.setdefault(digest, {})[key] = value
        return labels

    def forget_blobs(self, digests: list[str]) -> None:
        """Drop the labels and image summaries of deleted blobs, and deleted referrers from
        the subject index. diffID records stay: a registry may still hold the blob, and push
        can mount it from there."""
        if not digests:
            return
        with self._connect(write=True) as db:
            before = db.total_changes
            db.executemany("DELETE FROM label WHERE digest = ?", [(d,) for d in digests])
            labels_changed = db.total_changes != before
            db.executemany("DELETE FROM image_summary WHERE digest = ?", [(d,) for d in digests])
            if labels_changed:
                self._write_copy(db)
            db.executemany("DELETE FROM referrer WHERE digest = ?", [(d,) for d in digests])

    # -- the subject index (OCI 1.1 referrers) -------------------------------------------

    def add_referrer(self, subject: str, referrer: Descriptor) -> None:
        """Record that the stored manifest ``referrer`` names ``subject`` as its subject."""
        with self._connect(write=True) as db:
            # an upsert, not REPLACE: a referrer recorded again keeps its place in the list
            db.execute("INSERT INTO referrer VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subject, digest) DO UPDATE "
                       "SET media_type = excluded.media_type, artifact_type = excluded.artifact_type, "
                       "size = excluded.size, annotations = excluded.annotations",
                       _referrer_row(subject, referrer))

    def replace_referrers(self, rows: list[tuple[str, Descriptor]]) -> None:
        """Make the subject index exactly ``rows`` (subject, referrer): what a scan of the
        stored manifests found (``verify --repair``)."""
        with self._connect(write=True) as db:
            db.execute("DELETE FROM referrer")
            db.executemany("INSERT OR REPLACE INTO referrer VALUES (?, ?, ?, ?, ?, ?)",
                           [_referrer_row(subject, referrer) for subject, referrer in rows])

    def referrers(self, subject: str) -> list[Descriptor]:
        """The stored manifests whose subject is ``subject``, as a referrers list gives
        them, in the order they were recorded."""
        with self._connect() as db:
            rows = db.execute("SELECT digest, media_type, artifact_type, size, annotations FROM referrer "
                              "WHERE subject = ? ORDER BY rowid", (Digest(subject),)).fetchall()
        return [_referrer(*row) for row in rows]

    def referrer_digests(self) -> dict[str, list[Digest]]:
        """subject digest -> the digests of the stored manifests that refer to it (gc)."""
        with self._connect() as db:
            rows = db.execute("SELECT subject, digest FROM referrer ORDER BY rowid").fetchall()
        found: dict[str, list[Digest]] = {}
        for subject, digest in rows:
            if is_valid(digest):
                found.setdefault(subject, []).append(Digest(digest))
        return found

    # -- image summaries -------------------------------------------------------------------

    def summaries(self, digests: list[str] | None = None) -> dict[tuple[str, str], str]:
        """(digest, variant) -> the summary kept for it, as stored: every one, or those of
        ``digests``."""
        with self._connect() as db:
            if digests is None:
                rows = db.execute("SELECT digest, variant, summary FROM image_summary").fetchall()
            else:
                rows = [row for digest in dict.fromkeys(digests) for row in db.execute(
                    "SELECT digest, variant, summary FROM image_summary WHERE digest = ?", (digest,))]
        return {(digest, variant): summary for digest, variant, summary in rows}

    def save_summaries(self, rows: list[tuple[str, str, str]]) -> None:
        """Keep each ``(digest, variant, summary)``, in one transaction."""
        if not rows:
            return
        with self._connect(write=True) as db:
            db.executemany("INSERT OR REPLACE INTO image_summary VALUES (?, ?, ?)", rows)


def _referrer_row(subject: str, referrer: Descriptor) -> tuple:
    return (Digest(subject), Digest(referrer.digest), referrer.media_type, referrer.artifact_type,
            referrer.size, json.dumps(referrer.annotations, sort_keys=True))


def _referrer(digest: str, media_type: str, artifact_type: str | None, size: int, annotations: str) -> Descriptor:
    try:
        parsed = json.loads(annotations)
    except ValueError:
        parsed = {}
    return Descriptor(media_type, Digest(digest), size, None, parsed if isinstance(parsed, dict) else {}, (),
                      artifact_type or None)

    # -- image summaries (a cache: see contentstore.local.summaries) ------------------------

def _valid_label(row) -> bool:
    try:
        digest, key, value = row
    except (TypeError, ValueError):
        return False
    return isinstance(digest, str) and is_valid(digest) and isinstance(key, str) and isinstance(value, str)
