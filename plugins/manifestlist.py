"""Docker manifest lists and OCI image indexes, with containerd's platform matching.

A wanted platform matches, best first (containerd ``platforms.Only``): itself; for
``amd64/vN`` the lower amd64 levels, then ``386``; for ``arm/vN`` the lower arm variants
down to v5; for ``arm64/vX.Y`` the lower minor versions of its major version, for v9.x
then the arm64 v8.x it includes (v9.0 includes v8.5, v9.n v8.(5+n), at most v8.9), and
then the 32-bit arm variants from v8 down to v5.
"""

from dataclasses import dataclass

from contentstore.model import mediatypes as mt
from contentstore.model.manifest import ManifestIndex, parse_index, peek_json
from contentstore.model.platform import Platform
from contentstore.plugin import hookimpl

MEDIA_TYPES = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST)


#: arm64 variant -> the (major, highest minor) versions it runs, best first: what
#: containerd's ``arm64variantToVersion`` says (Armv9.n is a superset of Armv8.(n+5)).
ARM64_VERSIONS = {
    **{"v8" if minor == 0 else f"v8.{minor}": ((8, minor),) for minor in range(10)},
    **{"v9" if minor == 0 else f"v9.{minor}": ((9, minor), (8, min(minor + 5, 9))) for minor in range(8)},
}


def compatible_platforms(wanted: Platform) -> list[Platform]:
    """Platforms that can run on ``wanted``, best first."""
    vector = [wanted]
    arch, variant = wanted.architecture, wanted.variant
    level = int(variant[1:]) if variant and variant[1:].isdigit() else None
    if arch == "amd64":
        if level:
            vector += [Platform(wanted.os, "amd64", f"v{n}" if n > 1 else None) for n in range(level - 1, 0, -1)]
        vector.append(Platform(wanted.os, "386"))
    elif arch == "arm" and level:
        vector += [Platform(wanted.os, "arm", f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64" and variant in ARM64_VERSIONS:
        # containerd matches nothing for an arm64 variant it does not know; the exact
        # platform is still taken here.
        vector = [Platform(wanted.os, "arm64", f"v{major}" if minor == 0 else f"v{major}.{minor}")
                  for major, highest in ARM64_VERSIONS[variant] for minor in range(highest, -1, -1)]
        vector += compatible_platforms(Platform(wanted.os, "arm", "v8"))
    return vector


@dataclass
class PlatformIndex(ManifestIndex):
    def match_rank(self, offered: Platform, wanted: Platform):
        for rank, candidate in enumerate(compatible_platforms(wanted)):
            if offered == candidate:
                return rank
        return None


@hookimpl(trylast=True)
def contentstore_manifest_media_types():
    return list(MEDIA_TYPES)


@hookimpl(trylast=True)
def contentstore_detect_media_type(data):
    body = peek_json(data)
    if body is None or body.get("schemaVersion") != 2:
        return None
    declared = body.get("mediaType")
    if declared in MEDIA_TYPES:
        return declared
    if declared is None and "manifests" in body:
        return mt.OCI_INDEX
    return None


@hookimpl(trylast=True)
def contentstore_parse_manifest(media_type, data):
    if media_type == mt.OCI_INDEX:
        return parse_index(media_type, data, "OCI image index", PlatformIndex)
    if media_type == mt.DOCKER_MANIFEST_LIST:
        return parse_index(media_type, data, "Docker manifest list", PlatformIndex)
    return None


@hookimpl(trylast=True)
def contentstore_oci_media_type(media_type):
    if media_type in MEDIA_TYPES:
        return mt.OCI_INDEX
    return None
