"""Pull: Docker's distribution/pull_v2.go as orchestration over small parts.

Endpoints come from :mod:`.fallback`, requests from :class:`.registry.RegistryClient`,
blobs from :mod:`.download`, and everything about formats from the plugins, reached only
through the types they return (:class:`ImageManifest`, :class:`ManifestIndex`).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from contentstore.remote import fallback
from contentstore.config import Config
from contentstore.remote.credentials import CredentialStore
from contentstore.model.digest import Digest, is_valid
from contentstore.remote.download import download, short_id
from contentstore.errors import (ContentStoreError, DigestMismatch, InvalidManifest, InvalidReference,
                     PlatformNotFound, RegistryError, RemoteNotFound, UnsupportedMediaType,
                     VerificationError)
from contentstore.model.manifest import (MAX_MANIFEST_SIZE, Descriptor, ImageManifest, Manifest, ManifestIndex,
                       load_json)
from contentstore.local.metadata import GC_REF_LABEL_PREFIX
from contentstore.model.platform import Platform
from contentstore.progress import ProgressCallback, ProgressEvent, quiet
from contentstore.model.reference import Reference
from contentstore.remote.client import RegistryClient

log = logging.getLogger(__name__)

#: Label on a converted manifest naming the original it was made from (gc keeps both).
ORIGINAL_LABEL = GC_REF_LABEL_PREFIX + "content.original"


@dataclass
class PullResult:
    reference: Reference
    descriptor: Descriptor          # what the local reference now points to
    registry_digest: Digest         # the digest the registry knows it by (Docker's "Digest:")
    updated: bool                   # the reference was created or moved
    downloaded: bool = False        # any blob was fetched


@dataclass
class _Job:
    """State of one pull: the reference, where from, and what was fetched."""

    client: RegistryClient
    reference: Reference
    pinned: str | None = None  # the tag's digest, when the registry itself told it
    fetched_any: bool = False


class Puller:
    def __init__(self, store, config: Config, progress: ProgressCallback | None = None,
                 credentials: CredentialStore | None = None):
        self.store = store
        self.plugins = store.plugins
        self.config = config
        self.emit = progress if progress is not None else quiet
        self.credentials = credentials or CredentialStore()

    # -- entry point ---------------------------------------------------------------------

    def pull(self, text: str, platform: Platform | None = None, all_platforms: bool = False,
             all_tags: bool = False) -> list[PullResult]:
        reference = Reference.parse(text, default_tag=None if all_tags else "latest")
        if all_tags and (reference.tag or reference.digest):
            raise InvalidReference("tag can't be used with --all-tags/-a")
        self.platform = platform
        self.all_platforms = all_platforms
        with self.store.lease():
            return self._with_fallback(reference, all_tags)

    def _with_fallback(self, reference: Reference, all_tags: bool) -> list[PullResult]:
        candidates = fallback.endpoints(reference, self.config, self.plugins)
        pinned = None
        if reference.tag and not all_tags and any(c.mirror for c in candidates):
            # A mirror may hold a stale tag: ask the registry itself what the tag is now
            # (a HEAD, which Docker Hub does not count as a pull), then fetch that digest.
            pinned = self._resolve_tag(reference, [c for c in candidates if not c.mirror])
        for position, endpoint in enumerate(candidates):
            last = position == len(candidates) - 1
            client = self._client(endpoint)
            try:
                try:
                    client.ping()
                    results = self._pull_repository(client, reference, all_tags, pinned)
                except ContentStoreError as error:
                    pinging = not client.pinged
                    moves_on = fallback.ping_failure_moves_on(error) if pinging else \
                        fallback.moves_on(self.plugins, endpoint, error, client.confirmed_v2)
                    if last or not moves_on:
                        raise
                    if endpoint.mirror or not pinging:
                        self.emit(ProgressEvent(None, f"{endpoint.url}: {error}; trying "
                                                      f"{candidates[position + 1].url}"))
                    continue
                if endpoint.mirror:
                    self.emit(ProgressEvent(None, f"Pulled from mirror {endpoint.url}"))
                return results
            finally:
                client.close()
        raise AssertionError("unreachable")  # the last endpoint always returns or raises

    def _client(self, endpoint) -> RegistryClient:
        return RegistryClient(endpoint, self.credentials.get(endpoint.host), self.plugins)

    def _resolve_tag(self, reference: Reference, upstreams) -> str | None:
        for endpoint in upstreams:
            client = self._client(endpoint)
            try:
                client.ping()
                digest, _ = client.head_manifest(reference.repository, reference.tag)
                if digest and is_valid(digest):
                    return digest
            except ContentStoreError as error:
                log.debug("%s: cannot resolve %s there: %s", endpoint, reference, error)
            finally:
                client.close()
        return None

    def _pull_repository(self, client: RegistryClient, reference: Reference, all_tags: bool,
                         pinned: str | None = None) -> list[PullResult]:
        if not all_tags:
            result = self._pull_one(_Job(client, reference, pinned=pinned))
            self._status(reference, result.updated)
            return [result]
        tags = client.tags(reference.repository)
        if not tags:
            raise RemoteNotFound(f"{reference.name}: the repository has no tags")
        results = [self._pull_one(_Job(client, reference.with_tag(tag))) for tag in sorted(tags)]
        self._status(reference, any(r.updated for r in results))
        return results

    def _status(self, reference: Reference, updated: bool) -> None:
        name = reference.familiar() if reference.tag or reference.digest else reference.familiar_name
        if updated:
            self.emit(ProgressEvent(None, f"Status: Downloaded newer image for {name}"))
        else:
            self.emit(ProgressEvent(None, f"Status: Image is up to date for {name}"))

    # -- one tag or digest -------------------------------------------------------------------

    def _pull_one(self, job: _Job) -> PullResult:
        reference = job.reference
        by_digest = reference.digest is not None
        tag_or_digest = reference.digest or reference.tag
        canonical = Reference(reference.registry, reference.repository, None, None)

        registry_digest = reference.digest
        if not by_digest:
            registry_digest = job.pinned or self._head(job)
        if registry_digest:
            local = self._complete_local(canonical.with_digest(registry_digest))
            if local is not None:  # nothing to fetch, not even the manifest
                self.emit(ProgressEvent(None, f"{tag_or_digest}: Pulling from {reference.repository}"))
                self.emit(ProgressEvent(None, f"Digest: {registry_digest}"))
                return self._record(job, local, Digest(registry_digest))

        raw, manifest = self._fetch_manifest(job, reference.digest or registry_digest or reference.tag,
                                             expected=registry_digest, by_tag=not by_digest)
        self.emit(ProgressEvent(None, f"{tag_or_digest}: Pulling from {reference.repository}"))
        target = self._pull_manifest(job, raw, manifest)
        self.emit(ProgressEvent(None, f"Digest: {manifest.digest}"))
        return self._record(job, target, manifest.digest)

    def _head(self, job: _Job) -> str | None:
        """The tag's digest from a HEAD, which Docker Hub does not count as a pull."""
        try:
            digest, _ = job.client.head_manifest(job.reference.repository, job.reference.tag)
        except RemoteNotFound:
            raise
        except RegistryError as error:
            if error.status is None or error.status in (401, 403, 429):
                raise
            log.debug("HEAD of %s failed (%s); using GET", job.reference, error)
            return None
        return digest if digest and is_valid(digest) else None

    def _complete_local(self, digest_reference: Reference) -> Descriptor | None:
        """What ``name@digest`` points to locally, if every blob the pull wants is there."""
        try:
            descriptor = self.store.layout.resolve(str(digest_reference))
        except ContentStoreError:
            return None
        try:
            return descriptor if self._is_complete(descriptor) else None
        except ContentStoreError:
            return None

    def _is_complete(self, descriptor: Descriptor) -> bool:
        if not self.store.exists(descriptor.digest):
            return False
        manifest = self.store.manifest(descriptor)
        if isinstance(manifest, ManifestIndex):
            return all(self._is_complete(child) for child in self._select(manifest))
        if isinstance(manifest, ImageManifest):
            return all(self.store.exists(d.digest) for d in manifest.references())
        return False

    # -- manifests ---------------------------------------------------------------------------

    def _fetch_manifest(self, job: _Job, reference: str, expected: str | None, by_tag: bool
                        ) -> tuple[bytes, Manifest]:
        """Fetch (or read locally, when the digest is known and present) and verify."""
        if expected and self.store.exists(expected):
            data = self.store.content.read(expected, MAX_MANIFEST_SIZE)
            return data, self.plugins.parse_manifest(None, data)
        fetched = job.client.get_manifest(job.reference.repository, reference)
        manifest = self.plugins.parse_manifest(fetched.media_type, fetched.data)
        if expected and manifest.digest != expected:
            raise DigestMismatch(expected, manifest.digest,
                                 f"manifest {job.reference.name}@{expected}")
        if by_tag and fetched.header_digest and is_valid(fetched.header_digest) \
                and fetched.header_digest != manifest.digest:
            raise DigestMismatch(fetched.header_digest, manifest.digest,
                                 f"manifest {job.reference} (Docker-Content-Digest)")
        return fetched.data, manifest

    def _select(self, index: ManifestIndex) -> list[Descriptor]:
        if self.all_platforms:
            return list(index.manifests)
        return [index.select(self.platform or Platform.host())]

    def _pull_manifest(self, job: _Job, raw: bytes, manifest: Manifest) -> Descriptor:
        if isinstance(manifest, ManifestIndex):
            for child in self._select(manifest):
                child_raw, child_manifest = self._fetch_manifest(job, child.digest, child.digest, False)
                if not isinstance(child_manifest, ImageManifest):
                    raise InvalidManifest(f"{job.reference}: index entry {child.digest} is not an image manifest")
                self._pull_image(job, child_raw, child_manifest, child.platform)
            return self._put_manifest(raw, manifest)
        if isinstance(manifest, ImageManifest):
            return self._pull_image(job, raw, manifest, None)
        raise InvalidManifest(f"{job.reference}: {manifest.media_type} is neither an image nor an index")

    def _put_manifest(self, raw: bytes, manifest: Manifest) -> Descriptor:
        info = self.store.put(raw)
        return Descriptor(manifest.media_type, info.digest, info.size)

    # -- images ------------------------------------------------------------------------------

    def _pull_image(self, job: _Job, raw: bytes, manifest: ImageManifest,
                    platform: Platform | None) -> Descriptor:
        if manifest.config is None:
            return self._pull_converted(job, raw, manifest)
        self.plugins.check_config(manifest.config.media_type)
        layers = manifest.layers
        compressions = [self._compression(layer) for layer in layers]
        cancel = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as config_pool:
            # The config comes alongside the layers, as in Docker; a bad config stops them.
            config_future = config_pool.submit(download, job.client, job.reference.repository,
                                               self.store, manifest.config, cancel=cancel)
            layer_futures = self._start_layers(job, layers, compressions, cancel)
            try:
                config_bytes = self._read_config(config_future.result().blob.digest)
                diff_ids = self._diff_ids(config_bytes)
                self._check_platform(job, config_bytes, platform)
                if diff_ids is not None:
                    self._check_layer_types(job, layers, compressions, diff_ids)
                results = [future.result() for future in layer_futures]
            except BaseException:
                cancel.set()
                raise
        job.fetched_any = job.fetched_any or any(r.fetched for r in results)
        if diff_ids is not None:
            for layer, result, expected in zip(layers, results, diff_ids):
                if result.diff_id != expected:
                    raise VerificationError(
                        f"{job.reference}: layers from manifest don't match image configuration "
                        f"(layer {layer.digest} has diffID {result.diff_id}, the config says {expected})")
                self.store.metadata.add_diff_id(expected, layer.digest, job.reference.registry,
                                                job.reference.repository)
        self._complete(layers, results)
        self.store.metadata.add_sources([manifest.config.digest, *(l.digest for l in layers)],
                                        job.reference.registry, job.reference.repository)
        return self._put_manifest(raw, manifest)

    def _compression(self, layer: Descriptor) -> str | None:
        try:
            return self.plugins.layer_compression(layer.media_type)
        except UnsupportedMediaType:
            return None  # fine for an artifact; an image's layers are checked against its config

    @staticmethod
    def _check_layer_types(job: _Job, layers, compressions, diff_ids) -> None:
        for layer, compression in zip(layers, compressions):
            if compression is None:
                raise UnsupportedMediaType(layer.media_type, f"{job.reference}: unsupported layer media "
                                           f"type {layer.media_type!r}: no installed plugin handles it")
        if len(diff_ids) != len(layers):
            raise VerificationError(f"{job.reference}: layers from manifest don't match image "
                                    f"configuration ({len(layers)} layers, {len(diff_ids)} diff_ids)")

    def _start_layers(self, job: _Job, layers, compressions, cancel: threading.Event):
        """Download ``layers``, ``max_concurrent_downloads`` at a time; futures in order."""
        workers = max(1, self.config.max_concurrent_downloads)
        waiting = 0
        for layer in layers:
            present = self.store.exists(layer.digest)
            self.emit(ProgressEvent(short_id(layer.digest), "Already exists" if present else "Pulling fs layer"))
            if not present:
                waiting += 1
                if waiting > workers:
                    self.emit(ProgressEvent(short_id(layer.digest), "Waiting"))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
        futures = [pool.submit(download, job.client, job.reference.repository, self.store, layer,
                               compression, self.emit, cancel=cancel)
                   for layer, compression in zip(layers, compressions)]
        pool.shutdown(wait=False)  # its threads end with their downloads
        return futures

    def _complete(self, layers, results) -> None:
        for layer, result in zip(layers, results):
            if result.fetched:
                self.emit(ProgressEvent(short_id(layer.digest), "Pull complete"))

    def _read_config(self, digest: Digest) -> bytes:
        return self.store.content.read(digest, MAX_MANIFEST_SIZE)

    @staticmethod
    def _diff_ids(config_bytes: bytes) -> list[Digest] | None:
        """The config's rootfs.diff_ids; ``None`` for a config that is no image config."""
        config = load_json(config_bytes, "image config")
        rootfs = config.get("rootfs")
        if rootfs is None:
            return None
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" or \
                not isinstance(rootfs.get("diff_ids", []), list):
            raise InvalidManifest("invalid rootfs in image configuration")
        try:
            return [Digest(d) for d in rootfs.get("diff_ids") or []]
        except ValueError as exc:
            raise InvalidManifest(f"invalid rootfs in image configuration: {exc}") from None

    def _check_platform(self, job: _Job, config_bytes: bytes, platform: Platform | None) -> None:
        """An explicitly wanted platform must be what a single-platform image is."""
        if platform is not None or self.platform is None:
            return
        config = load_json(config_bytes, "image config")
        if not config.get("architecture"):
            return
        actual = Platform.from_json(config)
        if actual != self.platform:
            raise PlatformNotFound(
                f"image with reference {job.reference} was found but does not match the "
                f"specified platform: wanted {self.platform}, actual: {actual}")

    def _pull_converted(self, job: _Job, raw: bytes, manifest: ImageManifest) -> Descriptor:
        """A manifest without a config blob (Docker schema1): download, then convert."""
        self.emit(ProgressEvent(None, (
            f"[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, "
            f"schema 1 support is disabled by default and will be removed in an upcoming release. "
            f"Suggest the author of {job.reference} to upgrade the image to the OCI Format or "
            f"Docker Image manifest v2, schema 2.")))
        layers = manifest.layers
        compressions = [self.plugins.layer_compression(layer.media_type) for layer in layers]
        cancel = threading.Event()
        futures = self._start_layers(job, layers, compressions, cancel)
        try:
            results = [future.result() for future in futures]
        except BaseException:
            cancel.set()
            raise
        job.fetched_any = job.fetched_any or any(r.fetched for r in results)
        sized = [Descriptor(layer.media_type, r.blob.digest, r.blob.size) for layer, r in zip(layers, results)]
        diff_ids = [r.diff_id for r in results]
        converted = self.plugins.convert_manifest(manifest=manifest, layers=sized, diff_ids=diff_ids,
                                                  reference=job.reference)
        if converted is None:
            raise InvalidManifest(f"{job.reference}: no installed plugin converts {manifest.media_type}")
        config_bytes, manifest_bytes = converted
        self.store.put(config_bytes)
        original = self.store.put(raw)
        converted_manifest = self.plugins.parse_manifest(None, manifest_bytes)
        target = self._put_manifest(manifest_bytes, converted_manifest)
        self.store.metadata.set_label(target.digest, ORIGINAL_LABEL, original.digest)
        for layer, diff_id in zip(sized, diff_ids):
            self.store.metadata.add_diff_id(diff_id, layer.digest, job.reference.registry,
                                            job.reference.repository)
        self.store.metadata.add_sources([layer.digest for layer in sized], job.reference.registry,
                                        job.reference.repository)
        self._complete(layers, results)
        return target

    # -- references --------------------------------------------------------------------------

    def _record(self, job: _Job, target: Descriptor, registry_digest: Digest) -> PullResult:
        """Point the tag (if any) and the digest reference at ``target`` (addDigestReference)."""
        reference = job.reference
        names = self.store.layout.names()
        digest_name = str(Reference(reference.registry, reference.repository, None, Digest(registry_digest)))
        primary = str(reference) if reference.tag and not reference.digest else digest_name
        changed = set()
        for name in dict.fromkeys([digest_name, primary]):
            current = names.get(name)
            if current is None or current.digest != target.digest:
                self.store.layout.tag(name, target)
                changed.add(name)
        return PullResult(reference, target, Digest(registry_digest), primary in changed, job.fetched_any)
