"""OCI 1.1 artifacts and referrers, as data: the empty config, artifact manifests, titles,
the referrers index and its fallback tag (image-spec and distribution-spec 1.1)."""

from __future__ import annotations

import json
import re

from contentstore.errors import InvalidArtifact, InvalidManifest
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.digest import Digest
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import Descriptor, ImageManifest, Manifest, ManifestIndex, load_json

#: What ``oras`` and the spec use when an artifact's type is not given.
DEFAULT_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"
DEFAULT_FILE_TYPE = "application/octet-stream"
TITLE_ANNOTATION = "org.opencontainers.image.title"
CREATED_ANNOTATION = "org.opencontainers.image.created"

#: The empty config blob (``{}``) and its descriptor, with the data inlined as the spec
#: recommends.
EMPTY_CONFIG = b"{}"
EMPTY_DESCRIPTOR = Descriptor(mt.OCI_EMPTY, digests.of_bytes(EMPTY_CONFIG), len(EMPTY_CONFIG))

#: Config media types of runnable images: a manifest with another config is an artifact.
IMAGE_CONFIG_TYPES = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})

_TAG_FORBIDDEN = re.compile(r"[^a-zA-Z0-9_.-]")


def safe_title(title: str) -> str:
    """A file title usable as a plain file name in the target directory, or
    :class:`InvalidArtifact`: no path separator, no ``..``, not empty, no NUL."""
    if not isinstance(title, str) or not title or title in (".", "..") or "/" in title or "\\" in title \
            or "\x00" in title or ".." in title.split("/"):
        raise InvalidArtifact(f"refusing file title {title!r}: it must be a plain file name")
    return title


def artifact_manifest(layers: list[Descriptor], artifact_type: str | None = None,
                      subject: Descriptor | None = None, annotations: dict[str, str] | None = None) -> bytes:
    """An OCI 1.1 image manifest holding files: the empty config, ``artifactType``, one
    layer per file (titled), an optional ``subject``."""
    body: dict = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type or DEFAULT_ARTIFACT_TYPE,
        "config": {**EMPTY_DESCRIPTOR.to_json(), "data": "e30="},
        "layers": [layer.to_json() for layer in layers] or [{**EMPTY_DESCRIPTOR.to_json(), "data": "e30="}],
    }
    if subject is not None:
        body["subject"] = Descriptor(subject.media_type, subject.digest, subject.size).to_json()
    if annotations:
        body["annotations"] = dict(annotations)
    return json.dumps(body, indent=2).encode()


def artifact_type_of(manifest: Manifest) -> str | None:
    """The ``artifactType`` a referrers list gives ``manifest`` (distribution-spec 1.1):
    its own ``artifactType``, else, for an image manifest, its config's media type (the
    empty config's too); an index without one has none."""
    declared = manifest.body.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    if isinstance(manifest, ImageManifest) and manifest.config is not None:
        return manifest.config.media_type or None
    return None


def artifact_kind(manifest: Manifest) -> str | None:
    """What an artifact is, for listings: its ``artifactType``, else its config's media
    type when that is no image config; ``None`` for an image or an index of images."""
    declared = manifest.body.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    if isinstance(manifest, ImageManifest) and manifest.config is not None \
            and manifest.config.media_type not in IMAGE_CONFIG_TYPES:
        return manifest.config.media_type or DEFAULT_ARTIFACT_TYPE
    return None


def subject_of(manifest: Manifest) -> Descriptor | None:
    """The manifest ``manifest`` refers to (its ``subject``), for an image manifest or an
    index; :class:`InvalidManifest` when the field is there but is no descriptor."""
    if isinstance(manifest, ImageManifest):
        return manifest.subject
    subject = manifest.body.get("subject") if isinstance(manifest, ManifestIndex) else None
    if subject is None:
        return None
    if not isinstance(subject, dict):
        raise InvalidManifest("invalid subject: not a descriptor")
    return Descriptor.from_json(subject, "subject")


def referrer_descriptor(descriptor: Descriptor, manifest: Manifest) -> Descriptor:
    """How a referrer is listed in a referrers index: its descriptor with the manifest's
    ``artifactType`` and annotations."""
    annotations = manifest.body.get("annotations")
    return Descriptor(manifest.media_type, descriptor.digest, descriptor.size, None,
                      dict(annotations) if isinstance(annotations, dict) else {}, (),
                      artifact_type_of(manifest))


def referrers_tag(digest: str) -> str:
    """The fallback tag of the referrers tag schema: the algorithm cut to 32 characters,
    ``-``, the encoded part cut to 64, anything a tag may not hold replaced by ``-``."""
    d = Digest(digest)
    return _TAG_FORBIDDEN.sub("-", f"{d.algorithm[:32]}-{d.hex[:64]}")


def referrers_index(referrers: list[Descriptor]) -> bytes:
    """An OCI index listing ``referrers`` (what the referrers API answers, and what the
    fallback tag holds)."""
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                       "manifests": [r.to_json() for r in referrers]}, indent=2).encode()


class Referrers(list):
    """A list of referrer descriptors (a ``list`` of :class:`Descriptor`), with the digest
    of their subject, where the list came from (``referrers API``, ``tag <alg>-<hex>``,
    ``store``) and warnings met while reading it (a fallback tag that is no index)."""

    def __init__(self, descriptors=(), subject: str | None = None, source: str = "",
                 warnings: list[str] | None = None):
        super().__init__(descriptors)
        self.subject = Digest(subject) if subject else None
        self.source = source
        self.warnings = list(warnings or [])


def parse_referrers(raw: bytes, what: str) -> list[Descriptor]:
    """The descriptors of a referrers list (what the referrers API answers, or what a
    fallback tag holds); :class:`InvalidArtifact` naming ``what`` unless it is an OCI
    image index of descriptors."""
    if len(raw) > MAX_MANIFEST_SIZE:
        raise InvalidArtifact(f"{what} is over the {MAX_MANIFEST_SIZE}-byte limit")
    try:
        body = load_json(raw, what)
    except InvalidManifest as exc:
        raise InvalidArtifact(f"{exc}: not a referrers index") from None
    media_type = body.get("mediaType")
    if body.get("schemaVersion") != 2 or media_type not in (None, mt.OCI_INDEX) \
            or not isinstance(body.get("manifests"), list):
        kind = media_type if isinstance(media_type, str) else "a JSON object"
        raise InvalidArtifact(f"{what} is not an OCI image index ({kind}): not a referrers index")
    try:
        return [Descriptor.from_json(entry, f"{what} entry") for entry in body["manifests"]]
    except InvalidManifest as exc:
        raise InvalidArtifact(f"{exc}: not a referrers index") from None


def of_type(referrers: list[Descriptor], artifact_type: str | None) -> list[Descriptor]:
    """The referrers of ``artifact_type`` (all of them for ``None``)."""
    if not artifact_type:
        return list(referrers)
    return [r for r in referrers if r.artifact_type == artifact_type]


def with_referrer(referrers: list[Descriptor], referrer: Descriptor) -> list[Descriptor] | None:
    """``referrers`` with ``referrer`` appended, or ``None`` when it is listed already."""
    if any(r.digest == referrer.digest for r in referrers):
        return None
    return [*referrers, referrer]


_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")


def check_media_type(value: str, what: str = "media type") -> str:
    """``value`` if it has the ``type/subtype`` shape of RFC 6838, else :class:`InvalidArtifact`."""
    if not isinstance(value, str) or not _MEDIA_TYPE.fullmatch(value):
        raise InvalidArtifact(f"invalid {what} {value!r}: expected type/subtype (RFC 6838)")
    return value


def file_spec(text: str) -> tuple[str, str | None]:
    """``FILE[:MEDIATYPE]`` as (path, media type or ``None``): the text after the last
    ``:`` is a media type only when it has the ``type/subtype`` shape, so a path with a
    colon in it still names its file."""
    path, sep, media_type = text.rpartition(":")
    if sep and path and _MEDIA_TYPE.fullmatch(media_type):
        return path, media_type
    return text, None


def file_layer(title: str, digest: str, size: int, media_type: str | None = None) -> Descriptor:
    """The layer of an artifact file: its media type (default ``application/octet-stream``)
    and its title, checked to be a plain file name."""
    return Descriptor(media_type or DEFAULT_FILE_TYPE, Digest(digest), size, None,
                      {TITLE_ANNOTATION: safe_title(title)})
