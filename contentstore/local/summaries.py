"""Summaries of local images, for listing them (``images``) without reading them again.

Listing an image reads what its reference points to: the manifest or index, for an index
the platform's manifest, the image config (for its platform), and every blob it reaches
(for its size), and follows the gc labels of each (a converted image's original). With
thousands of references that is seconds. A :class:`Summary` keeps the outcome in the
metadata database (table ``image_summary``), keyed by

- the entry's digest: a manifest or an index, content-addressed, so nothing it says can
  change, and
- a *variant*: a hash of the rest of the ``index.json`` entry (media type, platform,
  annotations: the registry's digest; not the name, so every name of one image shares a
  summary), the host's platform (an index lists the host's platform when it was pulled)
  and the plugins (name and version: they parse the documents);

and it records what *can* change: which blobs it reached and whether each was present,
and the gc labels (``contentstore.gc.ref.*``) on them. A summary is used only while every
one of those is still so (a stat of each distinct blob, one query of the labels), and
made again otherwise, so it is never stale: a platform pulled later, a blob deleted, a
label set or removed all show at once. It is only a cache: a rebuilt database starts
without summaries, and gc drops those of the blobs it deletes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from contentstore.errors import ContentStoreError, InvalidManifest
from contentstore.local.interfaces import BlobReader
from contentstore.local.metadata import Metadata
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor
from contentstore.model.platform import Platform

#: Bump when what a summary holds, or how it is computed, changes.
VERSION = 2  # 2: artifactType recorded

#: What the image manifest of a summary is: none; the entry itself; the original the
#: entry was converted from (the registry's bytes); an index's child.
NONE, ENTRY, ORIGINAL, CHILD = "none", "entry", "original", "child"


def variant(entry: Descriptor, host: Platform, plugins: list[tuple[str, str]]) -> str:
    """What besides the digest a summary of ``entry`` depends on, as a short hash."""
    described = entry.to_json()
    annotations = {k: v for k, v in entry.annotations.items() if k != REF_NAME_ANNOTATION}
    described["annotations"] = annotations
    key = json.dumps([VERSION, described, str(host), sorted(plugins)], sort_keys=True,
                     separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class Summary:
    """What ``images`` shows of an entry, except its name, and what that depends on.

    :ivar kind: which document ``manifest`` is (:data:`NONE`, :data:`ENTRY`,
        :data:`ORIGINAL`, :data:`CHILD`); for :data:`ENTRY` and :data:`ORIGINAL` the
        descriptor carries the naming entry's platform and annotations.
    :ivar reached: every blob the entry reaches (gc labels followed), and whether it was
        stored.
    :ivar labels: the gc labels on the blobs reached that had any.
    """

    media_type: str
    size: int
    kind: str = NONE
    manifest: Descriptor | None = None  # CHILD: the child; ORIGINAL: the original's type, digest, size
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    platform: Platform | None = None
    artifact_type: str | None = None  # what an artifact holds (OCI 1.1); None for an image
    reached: dict[str, bool] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def manifest_for(self, entry: Descriptor) -> Descriptor | None:
        """The image manifest's descriptor as listing ``entry`` gives it."""
        if self.kind == ENTRY:
            return entry
        if self.kind == ORIGINAL and self.manifest is not None:
            return Descriptor(self.manifest.media_type, self.manifest.digest, self.manifest.size,
                              entry.platform, dict(entry.annotations))
        return self.manifest if self.kind == CHILD else None

    def holds(self, stored: Callable[[str], bool], labels: dict[str, dict[str, str]]) -> bool:
        """Whether the summary still says what a listing would: the same blobs stored
        and missing (``stored``: whether a digest is), the same gc labels on them
        (``labels``: every blob's, by digest)."""
        for digest, was in self.reached.items():
            if stored(digest) != was or labels.get(digest) != self.labels.get(digest):
                return False
        return True

    def encode(self) -> str:
        return json.dumps({
            "mediaType": self.media_type, "size": self.size, "kind": self.kind,
            "manifest": self.manifest.to_json() if self.manifest else None,
            "config": self.config.to_json() if self.config else None,
            "layers": [layer.to_json() for layer in self.layers],
            "platform": self.platform.to_json() if self.platform else None,
            "artifactType": self.artifact_type,
            "reached": self.reached, "labels": self.labels,
        }, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> "Summary":
        """The summary ``text`` holds (``ValueError`` and the like if it is not one)."""
        data = json.loads(text)
        return cls(
            media_type=data["mediaType"], size=data["size"], kind=data["kind"],
            manifest=Descriptor.from_json(data["manifest"]) if data["manifest"] else None,
            config=Descriptor.from_json(data["config"]) if data["config"] else None,
            layers=[Descriptor.from_json(layer) for layer in data["layers"]],
            platform=Platform.from_json(data["platform"]) if data["platform"] else None,
            artifact_type=data.get("artifactType"),
            reached={str(k): bool(v) for k, v in data["reached"].items()},
            labels={str(k): dict(v) for k, v in data["labels"].items()},
        )


class Summaries:
    """The summaries of one listing: looked up in the metadata, checked, made where none
    holds (by ``summarize``, given the entry and the gc labels), and kept (:meth:`save`).

    :param digests: the entries' digests, when only a few are wanted (else every
        summary kept is read, in one query).
    :raises MetadataError: when the metadata cannot be read (list without summaries).
    """

    def __init__(self, metadata: Metadata, blobs: BlobReader,
                 summarize: Callable[[Descriptor, dict[str, dict[str, str]]], Summary],
                 host: Platform, plugins: list[tuple[str, str]], digests: list[str] | None = None):
        self.metadata = metadata
        self.blobs = blobs
        self.summarize = summarize
        self.host = host
        self.plugins = plugins
        self.labels = metadata.gc_labels()
        self.kept = metadata.summaries(digests)
        self.fresh: list[tuple[str, str, str]] = []
        self._stored: dict[str, bool] = {}
        self._keys: dict[tuple, tuple[str, str]] = {}
        self._found: dict[tuple[str, str], Summary] = {}

    def is_stored(self, digest: str) -> bool:
        if digest not in self._stored:
            self._stored[digest] = self.blobs.exists(digest)
        return self._stored[digest]

    def of(self, entry: Descriptor) -> Summary:
        """The summary of ``entry``: kept and still holding, else made afresh."""
        same = (entry.digest, entry.media_type, entry.platform, entry.urls, entry.artifact_type,
                tuple(sorted((k, v) for k, v in entry.annotations.items() if k != REF_NAME_ANNOTATION)))
        key = self._keys.get(same)
        if key is None:
            key = self._keys[same] = (str(entry.digest), variant(entry, self.host, self.plugins))
        summary = self._found.get(key)
        if summary is not None:
            return summary
        if key in self.kept:
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError, InvalidManifest):
                summary = Summary.decode(self.kept[key])
        if summary is None or not summary.holds(self.is_stored, self.labels):
            summary = self.summarize(entry, self.labels)
            self.fresh.append((*key, summary.encode()))
        self._found[key] = summary
        return summary

    def save(self) -> None:
        """Keep the summaries made afresh; a cache, so a store that cannot be written
        (read-only, a full disk, a damaged database) lists all the same."""
        with contextlib.suppress(ContentStoreError, OSError):
            self.metadata.save_summaries(self.fresh)
        self.fresh = []
