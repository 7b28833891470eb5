"""Docker image manifest v2, schema 1 (signed and unsigned), deprecated but still served.

A signed manifest's digest is that of its canonical payload: the bytes with the JWS
signature block cut out, as the ``protected`` header's ``formatLength`` and
``formatTail`` describe (docker/libtrust). Layers are listed newest first in
``fsLayers``; the parsed manifest lists them oldest first, as every other format does.
"""

import base64
import json
from dataclasses import dataclass, field

from contentstore import digest as digests
from contentstore import mediatypes as mt
from contentstore.errors import InvalidManifest
from contentstore.manifest import Descriptor, ImageManifest, load_json, peek_json
from contentstore.plugin import hookimpl

MEDIA_TYPES = (mt.DOCKER_SCHEMA1_SIGNED, mt.DOCKER_SCHEMA1_MANIFEST)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_payload(raw: bytes, body: dict) -> bytes:
    """The signed payload of a schema1 manifest (the raw bytes for an unsigned one)."""
    signatures = body.get("signatures")
    if not signatures:
        return raw
    try:
        protected = json.loads(_b64url(signatures[0]["protected"]))
        length = protected["formatLength"]
        tail = _b64url(protected["formatTail"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidManifest(f"invalid schema1 signature header: {exc}") from None
    if not isinstance(length, int) or not 0 < length <= len(raw):
        raise InvalidManifest("invalid schema1 signature header: bad formatLength")
    return raw[:length] + tail


@dataclass
class Schema1Manifest(ImageManifest):
    payload: bytes = b""
    history: list = field(default_factory=list)

    @property
    def digest(self):
        return digests.of_bytes(self.payload)


def parse(media_type: str, raw: bytes) -> Schema1Manifest:
    body = load_json(raw, "schema1 manifest")
    if body.get("schemaVersion") != 1:
        raise InvalidManifest("invalid schema1 manifest: schemaVersion must be 1")
    fs_layers = body.get("fsLayers")
    history = body.get("history")
    if not isinstance(fs_layers, list) or not isinstance(history, list) or not fs_layers:
        raise InvalidManifest("invalid schema1 manifest: fsLayers and history must be non-empty lists")
    if len(fs_layers) != len(history):
        raise InvalidManifest(
            f"invalid schema1 manifest: {len(fs_layers)} fsLayers but {len(history)} history entries"
        )
    try:
        layers = [
            Descriptor(mt.DOCKER_LAYER_GZIP, digests.Digest(entry["blobSum"]), -1)
            for entry in reversed(fs_layers)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidManifest(f"invalid schema1 manifest: bad fsLayers entry ({exc})") from None
    payload = canonical_payload(raw, body)
    return Schema1Manifest(
        media_type=media_type, raw=raw, body=body, config=None,
        layers=layers, payload=payload, history=list(reversed(history)),
    )


@hookimpl(trylast=True)
def contentstore_manifest_media_types():
    return list(MEDIA_TYPES)


@hookimpl(trylast=True)
def contentstore_detect_media_type(data):
    body = peek_json(data)
    if body and body.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1_SIGNED if body.get("signatures") else mt.DOCKER_SCHEMA1_MANIFEST
    return None


@hookimpl(trylast=True)
def contentstore_parse_manifest(media_type, data):
    if media_type in MEDIA_TYPES:
        return parse(media_type, data)
    return None

