"""The shapes that format plugins hand to the core: descriptors, image manifests, indexes.

A format plugin parses raw bytes into one of these classes (through the
``contentstore_parse_manifest`` hook). The core only ever works with these types, so it
never needs to know a media type. Raw bytes are always kept: digests are computed over
what the registry served, never over re-serialized JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

from contentstore.errors import InvalidManifest, PlatformNotFound
from contentstore.model import digest as digests
from contentstore.model.digest import Digest
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.platform import Platform

#: Annotation that names a local reference in ``index.json`` (OCI image layout).
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None

    @classmethod
    def from_json(cls, data: dict, what: str = "descriptor") -> "Descriptor":
        try:
            media_type = data.get("mediaType") or ""
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidManifest(f"invalid {what}: size must be a non-negative integer")
            platform = Platform.from_json(data["platform"]) if data.get("platform") else None
            urls = data.get("urls") or []
            if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
                raise InvalidManifest(f"invalid {what}: urls must be a list of strings")
            return cls(
                media_type=media_type,
                digest=Digest(data["digest"]),
                size=size,
                platform=platform,
                annotations=dict(data.get("annotations") or {}),
                urls=tuple(urls),
                artifact_type=data.get("artifactType"),
            )
        except InvalidManifest:
            raise
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidManifest(f"invalid {what}: missing or malformed field {exc}") from None
        except ValueError as exc:
            raise InvalidManifest(f"invalid {what}: {exc}") from None

    def to_json(self) -> dict:
        data: dict = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            data["urls"] = list(self.urls)
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.platform:
            data["platform"] = self.platform.to_json()
        if self.artifact_type:
            data["artifactType"] = self.artifact_type
        return data

    def with_annotations(self, **annotations: str) -> "Descriptor":
        merged = {**self.annotations, **annotations}
        return Descriptor(self.media_type, self.digest, self.size, self.platform, merged,
                          self.urls, self.artifact_type)


@dataclass
class Manifest:
    """Any manifest-like document, parsed by a format plugin. Keeps the raw bytes."""

    media_type: str
    raw: bytes
    body: dict

    @property
    def digest(self) -> Digest:
        return digests.of_bytes(self.raw)

    def references(self) -> list[Descriptor]:
        """Every blob this document points to, for gc, push and export (none here)."""
        return []


@dataclass
class ImageManifest(Manifest):
    """A manifest for one image: a config blob and an ordered list of layers.

    ``config`` is ``None`` for formats that carry no config blob (Docker schema1); such a
    format's plugin builds one when pulled (``contentstore_convert_manifest``).
    """

    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None

    def references(self) -> list[Descriptor]:
        refs = [self.config] if self.config else []
        return refs + list(self.layers)


@dataclass
class ManifestIndex(Manifest):
    """A list of manifests, one per platform (Docker manifest list, OCI image index)."""

    manifests: list[Descriptor] = field(default_factory=list)

    def references(self) -> list[Descriptor]:
        return list(self.manifests)

    def platforms(self) -> list[Platform]:
        return [m.platform for m in self.manifests if m.platform]

    def select(self, wanted: Platform) -> Descriptor:
        """The best manifest for ``wanted``; :class:`PlatformNotFound` lists what is offered."""
        ranked = sorted(
            (rank, i, m)
            for i, m in enumerate(self.manifests)
            if m.platform is not None and (rank := self.match_rank(m.platform, wanted)) is not None
        )
        if not ranked:
            offered = ", ".join(sorted({str(p) for p in self.platforms()})) or "none"
            raise PlatformNotFound(
                f"no matching manifest for {wanted} in the manifest list entries "
                f"(offered: {offered})"
            )
        return ranked[0][2]

    def match_rank(self, offered: Platform, wanted: Platform) -> int | None:
        """How well ``offered`` serves ``wanted``: 0 best, ``None`` not at all.

        Exact matches only here; the format plugin refines this (compatible variants).
        """
        return 0 if offered == wanted else None


def load_json(raw: bytes, what: str) -> dict:
    """Parse ``raw`` as a JSON object, with a one-line :class:`InvalidManifest` on failure."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidManifest(f"invalid {what}: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidManifest(f"invalid {what}: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidManifest(f"invalid {what}: not a JSON object")
    return body


def descriptors(items: Iterable, what: str) -> list[Descriptor]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise InvalidManifest(f"invalid {what}: expected a list")
    return [Descriptor.from_json(item, what) for item in items]


def peek_json(data: bytes) -> dict | None:
    """``data`` as a JSON object, or ``None`` if it is not one (for media type detection)."""
    if len(data) > MAX_MANIFEST_SIZE:
        return None
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _check_body_media_type(media_type: str, body: dict, what: str) -> None:
    declared = body.get("mediaType")
    if declared is not None and declared != media_type:
        raise InvalidManifest(f"invalid {what}: body says mediaType {declared!r}, expected {media_type!r}")


def parse_image_manifest(media_type: str, raw: bytes, what: str, cls=None) -> "ImageManifest":
    """Parse the shape shared by OCI image manifests and Docker schema2 manifests."""
    body = load_json(raw, what)
    _check_body_media_type(media_type, body, what)
    if body.get("schemaVersion") != 2:
        raise InvalidManifest(f"invalid {what}: schemaVersion must be 2")
    if not isinstance(body.get("config"), dict):
        raise InvalidManifest(f"invalid {what}: no config descriptor")
    subject = body.get("subject")
    return (cls or ImageManifest)(
        media_type=media_type,
        raw=raw,
        body=body,
        config=Descriptor.from_json(body["config"], f"{what} config"),
        layers=descriptors(body.get("layers"), f"{what} layer"),
        subject=Descriptor.from_json(subject, f"{what} subject") if subject else None,
    )


def parse_index(media_type: str, raw: bytes, what: str, cls=None) -> "ManifestIndex":
    """Parse the shape shared by OCI image indexes and Docker manifest lists."""
    body = load_json(raw, what)
    _check_body_media_type(media_type, body, what)
    if body.get("schemaVersion") != 2:
        raise InvalidManifest(f"invalid {what}: schemaVersion must be 2")
    return (cls or ManifestIndex)(
        media_type=media_type, raw=raw, body=body,
        manifests=descriptors(body.get("manifests"), f"{what} entry"),
    )
