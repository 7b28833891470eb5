"""Looking at a registry without pulling, and deleting from it: what ``ls``, ``catalog``,
``manifest``, ``digest`` and ``delete`` do (crane's ``ls``/``catalog``/``manifest``/
``digest``/``delete``, skopeo's ``list-tags``/``inspect``/``delete``).

Nothing is stored. Every request goes through the endpoints, credentials, deadlines and
retries a pull uses. What a tag points to is asked of the registry itself first (a
mirror may hold a stale tag; a ``HEAD``, which Docker Hub does not count as a pull), its
mirrors only when it cannot be reached; a document named by digest is fetched as a pull
fetches it, mirrors first, and checked against that digest. A catalog is the registry's
own, and a delete goes to the registry itself only, as a push does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import requests

from contentstore.errors import (
    ContentStoreError,
    DigestMismatch,
    InvalidReference,
    ManifestTooLarge,
    PlatformNotFound,
)
from contentstore.model import digest as digests
from contentstore.model.digest import Digest, is_valid
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import Descriptor, ImageManifest, Manifest, ManifestIndex
from contentstore.model.platform import Platform
from contentstore.model.reference import DEFAULT_REGISTRY, Reference
from contentstore.remote import fallback
from contentstore.remote.access import RegistryAccess
from contentstore.remote.client import RegistryClient
from contentstore.remote.login import registry_name
from contentstore.remote.transport import read_body, unreachable

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteDigest:
    """What a tag or digest names on a registry, from a ``HEAD``."""

    reference: Reference
    digest: Digest
    media_type: str | None


@dataclass
class RemoteManifest:
    """A manifest or index as a registry serves it (``raw``), parsed; with ``platform``
    asked of an index, the chosen child too, and the config of the image shown."""

    reference: Reference
    digest: Digest
    raw: bytes
    manifest: Manifest
    child: Descriptor | None = None          # the index entry chosen for the platform
    child_raw: bytes | None = None
    child_manifest: Manifest | None = None
    config: ImageConfig | None = None        # of the image described (the child's, for an index)

    def to_json(self) -> dict:
        """As ``inspect`` prints a stored image: digest, media type, size, the index's
        entries; for an image (or the platform's child) its platform, config, layers."""
        result: dict = {"reference": str(self.reference), "digest": str(self.digest),
                        "mediaType": self.manifest.media_type, "size": len(self.raw)}
        if isinstance(self.manifest, ManifestIndex):
            result["manifests"] = [m.to_json() for m in self.manifest.manifests]
        image = self.child_manifest if self.child is not None else self.manifest
        if isinstance(image, ImageManifest):
            if self.child is not None:
                result["manifest"] = self.child.to_json()
            platform = self.child.platform if self.child is not None and self.child.platform else None
            if platform is None and self.config is not None:
                platform = self.config.platform
            result["platform"] = str(platform) if platform else None
            result["config"] = image.config.to_json() if image.config else None
            result["layers"] = [layer.to_json() for layer in image.layers]
        return result


class RemoteInspector:
    """The remote commands, over the parts every remote operation shares."""

    def __init__(self, access: RegistryAccess):
        self.access = access
        self.plugins = access.plugins

    # -- listing ------------------------------------------------------------------------------

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (``Link`` pages followed), as the registry lists them."""
        reference = Reference.parse(repository, default_tag=None)
        if reference.tag or reference.digest:
            raise InvalidReference(f"{repository}: give a repository, without a tag or digest")
        return self._authoritative(reference, lambda client: client.tags(reference.repository))

    def catalog(self, registry: str, n: int | None = None, last: str | None = None) -> list[str]:
        """The repositories of ``registry`` (``host[:port]``): every one, or at most ``n``,
        starting after ``last``; from the registry itself (a mirror's catalog is its own)."""
        if n is not None and n < 1:
            raise ValueError("n must be at least 1")
        name = registry_name(registry)
        probe = Reference(name, "library/catalog" if name == DEFAULT_REGISTRY else "catalog")
        result, _ = fallback.on_each_endpoint(self.access.endpoints(probe, mirrors=False), self.access.connect,
                                              lambda client: client.catalog(n, last), notify=self.access.say)
        return result

    # -- digests and manifests ---------------------------------------------------------------

    def digest(self, ref: str) -> RemoteDigest:
        """The digest ``ref`` names on its registry, from a ``HEAD`` (a ``GET`` only when
        the registry sends no ``Docker-Content-Digest``)."""
        reference = Reference.parse(ref)
        return self._authoritative(reference, lambda client: self._head(client, reference))

    def manifest(self, ref: str, platform: Platform | None = None, config: bool = True) -> RemoteManifest:
        """The manifest or index ``ref`` names, verified against its digest; with
        ``platform``, an index's entry for it too (an image must be of that platform).

        :param config: fetch the image config (a small blob) to tell the platform.
        """
        reference = Reference.parse(ref)
        candidates = self.access.endpoints(reference)
        pinned = reference.digest
        if pinned is None and any(c.mirror for c in candidates):
            pinned = self.digest(ref).digest  # the registry itself says what the tag is now
        return self._content(reference, lambda client: self._manifest(client, reference, pinned, platform,
                                                                       config))

    # -- deleting -----------------------------------------------------------------------------

    def delete(self, ref: str) -> RemoteDigest:
        """Delete the manifest ``ref`` names (a tag is resolved to its digest first; the
        registry drops every tag pointing to that digest)."""
        reference = Reference.parse(ref)

        def work(client: RegistryClient) -> RemoteDigest:
            target = self._head(client, reference)
            client.delete_manifest(reference.repository, target.digest)
            return target

        result, _ = fallback.on_each_endpoint(self.access.endpoints(reference, mirrors=False),
                                              self.access.connect, work, notify=self.access.say)
        return result

    # -- parts ---------------------------------------------------------------------------------

    def _authoritative(self, reference: Reference, work: Callable[[RegistryClient], T]) -> T:
        """``work`` on the registry itself, its mirrors only if it cannot be reached."""
        candidates = self.access.endpoints(reference)
        ordered = [c for c in candidates if not c.mirror] + [c for c in candidates if c.mirror]
        result, _ = fallback.on_each_endpoint(ordered, self.access.connect, work, notify=self.access.say)
        return result

    def _content(self, reference: Reference, work: Callable[[RegistryClient], T]) -> T:
        """``work`` on the endpoints in a pull's order, moving on as a pull does."""
        result, _ = fallback.on_each_endpoint(self.access.endpoints(reference), self.access.connect, work,
                                              continue_on_error=self.plugins.continue_on_error,
                                              notify=self.access.say)
        return result

    def _head(self, client: RegistryClient, reference: Reference) -> RemoteDigest:
        name = reference.digest or reference.tag
        digest, media_type = client.head_manifest(reference.repository, name)
        if reference.digest:
            if digest and digest != reference.digest:
                raise DigestMismatch(reference.digest, digest, f"manifest {reference} (Docker-Content-Digest)")
            return RemoteDigest(reference, Digest(reference.digest), media_type)
        if digest and is_valid(digest):
            return RemoteDigest(reference, Digest(digest), media_type)
        # No digest in the answer: the bytes say it (this one costs a GET).
        fetched = client.get_manifest(reference.repository, name)
        return RemoteDigest(reference, digests.of_bytes(fetched.data), fetched.media_type or media_type)

    def _get(self, client: RegistryClient, reference: Reference, name: str, expected: str | None
             ) -> tuple[bytes, Manifest]:
        """GET a manifest by tag or digest, parsed, checked against ``expected`` (or the
        tag's ``Docker-Content-Digest``)."""
        fetched = client.get_manifest(reference.repository, name)
        manifest = self.plugins.parse_manifest(fetched.media_type, fetched.data)
        if expected and manifest.digest != expected:
            raise DigestMismatch(expected, manifest.digest, f"manifest {reference.name}@{expected}")
        if not expected and fetched.header_digest and is_valid(fetched.header_digest) \
                and fetched.header_digest != manifest.digest:
            raise DigestMismatch(fetched.header_digest, manifest.digest,
                                 f"manifest {reference} (Docker-Content-Digest)")
        return fetched.data, manifest

    def _manifest(self, client: RegistryClient, reference: Reference, pinned: str | None,
                  platform: Platform | None, with_config: bool) -> RemoteManifest:
        raw, manifest = self._get(client, reference, pinned or reference.tag, pinned)
        result = RemoteManifest(reference, manifest.digest, raw, manifest)
        image = manifest
        if platform is not None and isinstance(manifest, ManifestIndex):
            result.child = manifest.select(platform)
            result.child_raw, result.child_manifest = self._get(client, reference, result.child.digest,
                                                                result.child.digest)
            image = result.child_manifest
        if isinstance(image, ImageManifest) and (with_config or (platform is not None and result.child is None)):
            result.config = self._config(client, reference, image)
        if platform is not None and result.child is None:
            actual = result.config.platform if result.config is not None else None
            if isinstance(manifest, ImageManifest) and actual is not None and actual != platform:
                raise PlatformNotFound(f"image with reference {reference} was found but does not match the "
                                       f"specified platform: wanted {platform}, actual: {actual}")
        return result

    def _config(self, client: RegistryClient, reference: Reference, image: ImageManifest) -> ImageConfig | None:
        """The image's config, fetched and verified; ``None`` for a config that is no
        image config (an artifact's) or too big to be one."""
        descriptor = image.config
        if descriptor is None or not (0 <= descriptor.size <= MAX_MANIFEST_SIZE):
            return None
        try:
            self.plugins.check_config(descriptor.media_type)
        except ContentStoreError:
            return None
        what = f"{reference.name}@{descriptor.digest}"
        response = client.open_blob(reference.repository, descriptor.digest)
        with response:
            try:
                data = read_body(response, descriptor.size, lambda received: ManifestTooLarge(
                    f"{what}: the config is bigger than its descriptor's {descriptor.size} bytes"))
            except requests.RequestException as exc:  # a broken body
                raise unreachable(exc, what) from None
        actual = digests.of_bytes(data)
        if actual != descriptor.digest:
            raise DigestMismatch(descriptor.digest, actual, f"config {what}")
        return ImageConfig.parse(data)
