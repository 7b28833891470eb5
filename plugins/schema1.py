"""Docker image manifest v2, schema 1 (signed and unsigned), deprecated but still served.

A signed manifest's digest is that of its canonical payload: the bytes with the JWS
signature block cut out, as the ``protected`` header's ``formatLength`` and
``formatTail`` describe (docker/libtrust). Layers are listed newest first in
``fsLayers``; the parsed manifest lists them oldest first, as every other format does.
"""

import base64
import json
import re
from dataclasses import dataclass, field

from contentstore.errors import InvalidManifest
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import Descriptor, ImageManifest, load_json, peek_json
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
    """A verified schema1 manifest. ``layers`` and ``v1_configs`` are oldest first;
    ``layers`` leaves out throwaway (empty) layers, ``v1_configs`` keeps every entry."""

    payload: bytes = b""
    v1_configs: list = field(default_factory=list)
    architecture: str = ""

    @property
    def digest(self):
        return digests.of_bytes(self.payload)


_ID = re.compile(r"[a-f0-9]{64}")


def _v1_configs(history: list) -> list[dict]:
    configs = []
    for entry in history:
        try:
            config = json.loads(entry["v1Compatibility"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidManifest(f"invalid schema1 manifest: bad v1Compatibility ({exc})") from None
        if not isinstance(config, dict):
            raise InvalidManifest("invalid schema1 manifest: v1Compatibility is not an object")
        if not isinstance(config.get("id"), str) or not _ID.fullmatch(config["id"]):
            raise InvalidManifest(f"invalid schema1 manifest: image ID {config.get('id')!r} is not 64 hex digits")
        configs.append(config)
    return configs


def fix_manifest_layers(fs_layers: list, configs: list[dict]) -> tuple[list, list[dict]]:
    """Docker's fixManifestLayers: drop repeated layers, check the parent chain.

    Both lists are newest first, as in the manifest.
    """
    if configs[-1].get("parent"):
        raise InvalidManifest("invalid parent ID in the base layer of the image")
    seen: set[str] = set()
    last = None
    for config in configs:
        if config["id"] != last and config["id"] in seen:
            raise InvalidManifest(f"ID {config['id']} appears multiple times in manifest")
        last = config["id"]
        seen.add(last)
    fs_layers, configs = list(fs_layers), list(configs)
    for i in range(len(configs) - 2, -1, -1):
        if configs[i]["id"] == configs[i + 1]["id"]:
            del fs_layers[i], configs[i]
        elif configs[i].get("parent", "") != configs[i + 1]["id"]:
            raise InvalidManifest(
                f"invalid parent ID. Expected {configs[i + 1]['id']}, got {configs[i].get('parent', '')}")
    return fs_layers, configs


def parse(media_type: str, raw: bytes) -> Schema1Manifest:
    body = load_json(raw, "schema1 manifest")
    if body.get("schemaVersion") != 1:
        raise InvalidManifest("invalid schema1 manifest: schemaVersion must be 1")
    fs_layers = body.get("fsLayers")
    history = body.get("history")
    if not isinstance(fs_layers, list) or not isinstance(history, list) or not fs_layers:
        raise InvalidManifest("invalid schema1 manifest: no FSLayers in manifest")
    if len(fs_layers) != len(history):
        raise InvalidManifest("invalid schema1 manifest: length of history not equal to number of layers")
    payload = canonical_payload(raw, body)
    fs_layers, configs = fix_manifest_layers(fs_layers, _v1_configs(history))
    layers = []
    for entry, config in zip(reversed(fs_layers), reversed(configs)):
        if config.get("throwaway"):
            continue
        try:
            layers.append(Descriptor(mt.DOCKER_LAYER_GZIP, digests.Digest(entry["blobSum"]), -1))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidManifest(f"invalid schema1 manifest: bad fsLayers entry ({exc})") from None
    return Schema1Manifest(
        media_type=media_type, raw=raw, body=body, config=None, layers=layers,
        payload=payload, v1_configs=list(reversed(configs)),
        architecture=str(body.get("architecture") or ""),
    )


# -- conversion (Docker's v1.MakeConfigFromV1Config and HistoryFromConfig) --------------------

_V1_IMAGE_FIELDS = ("id", "parent", "comment", "created", "container", "container_config",
                    "docker_version", "author", "config", "architecture", "variant", "os", "Size")
_DROPPED = ("id", "parent", "Size", "parent_id", "layer_id", "throwaway")


def _version_less(version: str, than: str) -> bool:
    def parts(text):
        return [int(p) if p.isdigit() else 0 for p in re.split(r"[.-]", text or "0")[:3]]
    return parts(version) < parts(than)


def history_entry(config: dict) -> dict:
    cmd = (config.get("container_config") or {}).get("Cmd") or []
    entry = {
        "created": config.get("created"),
        "author": config.get("author"),
        "created_by": " ".join(cmd) if isinstance(cmd, list) else str(cmd),
        "comment": config.get("comment"),
        "empty_layer": bool(config.get("throwaway")),
    }
    return {key: value for key, value in entry.items() if value}


def make_config(manifest: Schema1Manifest, diff_ids: list) -> bytes:
    top = dict(manifest.v1_configs[-1])  # the newest entry describes the image
    if _version_less(top.get("docker_version", ""), "1.8.3"):
        top = {key: value for key, value in top.items() if key in _V1_IMAGE_FIELDS}
    for key in _DROPPED:
        top.pop(key, None)
    top.setdefault("os", "linux")
    if not top.get("architecture") and manifest.architecture:
        top["architecture"] = manifest.architecture
    top["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    top["history"] = [history_entry(config) for config in manifest.v1_configs]
    return json.dumps(top, sort_keys=True, separators=(",", ":")).encode()


def make_manifest(config_bytes: bytes, layers: list) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": digests.of_bytes(config_bytes),
                   "size": len(config_bytes)},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
                   for layer in layers],
    }
    return json.dumps(manifest, indent=2).encode()


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



@hookimpl(trylast=True)
def contentstore_convert_manifest(manifest, layers, diff_ids):
    if not isinstance(manifest, Schema1Manifest):
        return None
    config = make_config(manifest, diff_ids)
    return config, make_manifest(config, layers)
