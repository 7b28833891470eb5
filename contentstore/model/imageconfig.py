"""The image configuration (``application/vnd.oci.image.config.v1+json`` and Docker's
equivalent), parsed once for everything that needs it: the layers' diffIDs and the
platform the image was built for."""

from __future__ import annotations

from dataclasses import dataclass

from contentstore.errors import InvalidManifest
from contentstore.model.digest import Digest
from contentstore.model.manifest import load_json
from contentstore.model.platform import Platform


@dataclass(frozen=True)
class ImageConfig:
    """An image config: its raw bytes and the fields the core uses.

    :ivar diff_ids: ``rootfs.diff_ids``, the digests of the uncompressed layers in order;
        ``None`` for a config that has no ``rootfs`` (not an image config: an artifact's).
    :ivar platform: from ``os``, ``architecture`` and ``variant``, when both are given.
    """

    raw: bytes
    body: dict
    diff_ids: list[Digest] | None
    platform: Platform | None

    @classmethod
    def parse(cls, raw: bytes) -> "ImageConfig":
        body = load_json(raw, "image config")
        platform = None
        if body.get("os") and body.get("architecture"):
            try:
                platform = Platform.from_json(body)
            except (TypeError, AttributeError, ValueError):
                raise InvalidManifest("invalid platform in image configuration: os, architecture, "
                                      "variant and os.features must be strings") from None
        return cls(raw, body, _diff_ids(body), platform)

    def require_diff_ids(self, what: str) -> list[Digest]:
        """The diffIDs, or :class:`InvalidManifest` for a config that is no image's."""
        if self.diff_ids is None:
            raise InvalidManifest(f"{what}: the config has no rootfs.diff_ids; not an image")
        return self.diff_ids


def _diff_ids(body: dict) -> list[Digest] | None:
    rootfs = body.get("rootfs")
    if rootfs is None:
        return None
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or \
            not isinstance(rootfs.get("diff_ids", []), list):
        raise InvalidManifest("invalid rootfs in image configuration")
    try:
        return [Digest(d) for d in rootfs.get("diff_ids") or []]
    except (ValueError, TypeError) as exc:
        raise InvalidManifest(f"invalid rootfs in image configuration: {exc}") from None
