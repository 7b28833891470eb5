"""OCI 1.1 artifacts and referrers, as data: the empty config, artifact manifests, titles,
the referrers index and its fallback tag (image-spec and distribution-spec 1.1)."""

from __future__ import annotations

import json
import re

from contentstore.errors import InvalidArtifact
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.digest import Digest
from contentstore.model.manifest import Descriptor, ImageManifest, Manifest

#: What ``oras`` and the spec use when an artifact's type is not given.
DEFAULT_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"
DEFAULT_FILE_TYPE = "application/octet-stream"
TITLE_ANNOTATION = "org.opencontainers.image.title"
CREATED_ANNOTATION = "org.opencontainers.image.created"

#: The empty config blob (``{}``) and its descriptor, with the data inlined as the spec
#: recommends.
EMPTY_CONFIG = b"{}"
EMPTY_DESCRIPTOR = Descriptor(mt.OCI_EMPTY, digests.of_bytes(EMPTY_CONFIG), len(EMPTY_CONFIG))

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
    """The type of what a manifest holds: its ``artifactType``, else its config's media
    type unless that is the empty config (image-spec 1.1's rule for referrers)."""
    declared = manifest.body.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    if isinstance(manifest, ImageManifest) and manifest.config is not None \
            and manifest.config.media_type != mt.OCI_EMPTY:
        return manifest.config.media_type
    return None


def referrer_descriptor(descriptor: Descriptor, manifest: Manifest) -> Descriptor:
    """How a referrer is listed in a referrers index: its descriptor with the manifest's
    ``artifactType`` and annotations."""
    annotations = manifest.body.get("annotations")
    return Descriptor(manifest.media_type, descriptor.digest, descriptor.size, None,
                      dict(annotations) if isinstance(annotations, dict) else {}, (),
                      artifact_type_of(manifest))


def referrers_tag(digest: str) -> str:
    """The fallback tag of the referrers tag schema: ``<alg>-<hex>``, cut to 128 characters."""
    d = Digest(digest)
    return _TAG_FORBIDDEN.sub("-", f"{d.algorithm}-{d.hex}")[:128]


def referrers_index(referrers: list[Descriptor]) -> bytes:
    """An OCI index listing ``referrers`` (what the referrers API answers, and what the
    fallback tag holds)."""
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                       "manifests": [r.to_json() for r in referrers]}, indent=2).encode()
