"""Pull: Docker's distribution/pull_v2.go as orchestration over small parts.

Endpoints and the loop over them come from :mod:`.fallback`, requests from
:class:`~contentstore.remote.client.RegistryClient`, blobs from :mod:`.download`, and
everything about formats from the plugins, reached only through the types they return
(:class:`ImageManifest`, :class:`ManifestIndex`). The puller works on the local store's
parts it is handed, and returns what it learned (the manifests it parsed and the chosen
image's config), so nothing is read and parsed twice.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from contentstore.errors import (
    ContentStoreError,
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    PlatformNotFound,
    RegistryError,
    RemoteNotFound,
    UnsupportedMediaType,
    VerificationError,
)
from contentstore.local.interfaces import BlobStore, ReferenceIndex
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import ORIGINAL_LABEL, Metadata
from contentstore.local.ociview import ORIGINAL_DIGEST_ANNOTATION, OciView
from contentstore.model.artifact import artifact_kind, subject_of
from contentstore.model.digest import Digest, is_valid
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import Descriptor, ImageManifest, Manifest, ManifestIndex
from contentstore.model.platform import Platform
from contentstore.model.reference import Reference
from contentstore.progress import ProgressEvent
from contentstore.remote import fallback
from contentstore.remote.access import RegistryAccess
from contentstore.remote.client import RegistryClient
from contentstore.remote.download import download, short_id

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PulledImage:
    """One image manifest the pull parsed, with its parsed config (``None`` for schema1's
    original or a config that is not an image's)."""

    descriptor: Descriptor
    manifest: ImageManifest
    config: ImageConfig | None


@dataclass
class PullResult:
    """What a pull did and learned.

    :ivar descriptor: what the local reference now points to (always OCI-typed).
    :ivar manifest: the manifest or index the registry digest names, parsed (for a
        Docker-typed image, the original the reference's OCI form was made from).
    :ivar image: the image of the wanted platform (for an index: the platform asked for,
        else the host's when it was pulled, else the first pulled), or ``None``.
    """

    reference: Reference
    descriptor: Descriptor
    registry_digest: Digest         # the digest the registry knows it by (Docker's "Digest:")
    updated: bool                   # the reference was created or moved
    downloaded: bool = False        # any blob was fetched
    manifest: Manifest | None = None
    image: PulledImage | None = None
    document: Descriptor | None = None  # ``manifest`` as stored (what the plugins are shown)


@dataclass
class _Job:
    """State of one pull: the reference, where from, and what was fetched and parsed."""

    client: RegistryClient
    reference: Reference
    pinned: str | None = None  # the tag's digest, when the registry itself told it
    artifacts: bool = False    # any config: what is not an image is pulled as blobs
    fetched_any: bool = False
    images: dict[str, PulledImage] = field(default_factory=dict)  # by manifest digest


#: ``verify(reference, descriptor)``: raise to refuse an image before it is named.
Verify = Callable[[Reference, Descriptor], None]


class Puller:
    """Pulls into the local store's parts: blobs, references, metadata, manifests.

    :param verify: called for each image, after its blobs are verified and before its
        reference is written; what it raises ends the pull on every endpoint.
    """

    def __init__(self, blobs: BlobStore, references: ReferenceIndex, metadata: Metadata,
                 manifests: Manifests, view: OciView, leases: Leases, access: RegistryAccess,
                 verify: Verify | None = None):
        self.view = view
        self.blobs = blobs
        self.references = references
        self.metadata = metadata
        self.manifests = manifests
        self.leases = leases
        self.access = access
        self.plugins = access.plugins
        self.emit = access.emit
        self.verify = verify
        self._refused: list[BaseException] = []

    # -- entry point ---------------------------------------------------------------------

    def pull(self, text: str, platform: Platform | None = None, all_platforms: bool = False,
             all_tags: bool = False, verify_diffids: bool = False, artifacts: bool = False,
             referrers: bool = False) -> list[PullResult]:
        """Pull ``text``; with ``verify_diffids``, inflate each layer as it downloads and
        check its diffID against the image config (else that is left to the first
        decompression: unpack, export to a docker-archive).

        :param artifacts: pull any artifact, whatever its config (the ORAS path; without
            it, a config that is not an image's is refused unless a plugin accepts it).
        :param referrers: also pull the referrers of what was pulled (OCI 1.1), theirs in
            turn, each by digest and unnamed: gc keeps them while it keeps their subject.
        """
        reference = Reference.parse(text, default_tag=None if all_tags else "latest")
        if all_tags and (reference.tag or reference.digest):
            raise InvalidReference("tag can't be used with --all-tags/-a")
        self.platform = platform
        self.all_platforms = all_platforms
        self.verify_diffids = verify_diffids
        self.artifacts = artifacts
        self.referrers = referrers
        with self.leases.lease():
            return self._with_fallback(reference, all_tags)

    def _with_fallback(self, reference: Reference, all_tags: bool) -> list[PullResult]:
        candidates = self.access.endpoints(reference)
        pinned = None
        if reference.tag and not all_tags and any(c.mirror for c in candidates):
            # A mirror may hold a stale tag: ask the registry itself what the tag is now
            # (a HEAD, which Docker Hub does not count as a pull), then fetch that digest.
            pinned = self._resolve_tag(reference, [c for c in candidates if not c.mirror])
        policy = self.access.continue_on_error(reference)

        def continue_on_error(endpoint, error, confirmed_v2) -> bool:
            # A refused image is the same digest everywhere: no other endpoint is asked.
            refused = any(error is seen for seen in self._refused)
            return not refused and policy(endpoint, error, confirmed_v2)

        results, endpoint = fallback.on_each_endpoint(
            candidates, self.access.connect,
            lambda client: self._pull_repository(client, reference, all_tags, pinned),
            continue_on_error=continue_on_error,
            notify=self.access.say)
        if endpoint.mirror:
            self.emit(ProgressEvent(None, f"Pulled from mirror {endpoint.url}"))
        return results

    def _resolve_tag(self, reference: Reference, upstreams) -> str | None:
        def head(client: RegistryClient) -> str | None:
            digest, _ = client.head_manifest(reference.repository, reference.tag)
            if not (digest and is_valid(digest)):
                raise RegistryError(f"{client.endpoint}: no usable Docker-Content-Digest for {reference}")
            return digest

        try:
            digest, _ = fallback.on_each_endpoint(upstreams, self.access.connect, head,
                                                  continue_on_error=lambda *args: True)
        except ContentStoreError as error:
            log.debug("cannot resolve %s on the registry itself: %s", reference, error)
            return None
        return digest

    def _pull_repository(self, client: RegistryClient, reference: Reference, all_tags: bool,
                         pinned: str | None = None) -> list[PullResult]:
        if not all_tags:
            job = _Job(client, reference, pinned=pinned, artifacts=self.artifacts)
            result = self._pull_one(job)
            self._status(reference, result.updated)
            self._with_referrers(job, result)
            return [result]
        tags = client.tags(reference.repository)
        if not tags:
            raise RemoteNotFound(f"{reference.name}: the repository has no tags")
        results = []
        for tag in sorted(tags):
            job = _Job(client, reference.with_tag(tag), artifacts=self.artifacts)
            results.append(self._pull_one(job))
            self._with_referrers(job, results[-1])
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
            local = self._complete_local(job, canonical.with_digest(registry_digest))
            if local is not None:  # nothing to fetch, not even the manifest
                self.emit(ProgressEvent(None, f"{tag_or_digest}: Pulling from {reference.repository}"))
                self.emit(ProgressEvent(None, f"Digest: {registry_digest}"))
                return self._record(job, *local, Digest(registry_digest))

        raw, manifest = self._fetch_manifest(job, reference.digest or registry_digest or reference.tag,
                                             expected=registry_digest, by_tag=not by_digest)
        self.emit(ProgressEvent(None, f"{tag_or_digest}: Pulling from {reference.repository}"))
        target, stored = self._pull_manifest(job, raw, manifest)
        self.emit(ProgressEvent(None, f"Digest: {manifest.digest}"))
        entry = self.view.entry(target, stored, manifest.digest)
        return self._record(job, entry, target, stored, manifest.digest)

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

    def _complete_local(self, job: _Job, digest_reference: Reference
                        ) -> tuple[Descriptor, Descriptor, Manifest] | None:
        """If every blob the pull wants is already stored: the named entry of
        ``name@digest``, and the document the registry digest names (the original a
        converted entry was made from, else the entry itself), parsed."""
        try:
            entry = self.references.resolve(str(digest_reference))
            if not self.blobs.exists(entry.digest):
                return None
            original = self.view.original(entry)
            described = original if original.digest == digest_reference.digest else entry
            manifest = self.manifests.read(described)
            if not self._is_complete(job, described, manifest):
                return None
            return self.view.entry(entry, registry_digest=digest_reference.digest), described, manifest
        except ContentStoreError:
            return None

    def _is_complete(self, job: _Job, descriptor: Descriptor, manifest: Manifest) -> bool:
        if isinstance(manifest, ManifestIndex):
            for child in self._select(manifest):
                if not self.blobs.exists(child.digest):
                    return False
                if not self._is_complete(job, child, self.manifests.read(child)):
                    return False
            return True
        if isinstance(manifest, ImageManifest):
            if not all(self.blobs.exists(d.digest) for d in manifest.references()):
                return False
            job.images[descriptor.digest] = PulledImage(descriptor, manifest, None)  # config read if chosen
            return True
        return False

    # -- manifests ---------------------------------------------------------------------------

    def _fetch_manifest(self, job: _Job, reference: str, expected: str | None, by_tag: bool
                        ) -> tuple[bytes, Manifest]:
        """Fetch (or read locally, when the digest is known and present) and verify."""
        if expected and self.blobs.exists(expected):
            data = self.blobs.read(expected, MAX_MANIFEST_SIZE)
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

    def _pull_manifest(self, job: _Job, raw: bytes, manifest: Manifest) -> tuple[Descriptor, Manifest]:
        """Pull what ``manifest`` needs; return what the reference will point to, parsed."""
        if isinstance(manifest, ManifestIndex):
            for child in self._select(manifest):
                child_raw, child_manifest = self._fetch_manifest(job, child.digest, child.digest, False)
                if not isinstance(child_manifest, ImageManifest):
                    raise InvalidManifest(f"{job.reference}: index entry {child.digest} is not an image manifest")
                self._pull_image(job, child_raw, child_manifest, child.platform)
            return self._put_manifest(raw, manifest), manifest
        if isinstance(manifest, ImageManifest):
            target = self._pull_image(job, raw, manifest, None)
            return target, job.images[target.digest].manifest
        raise InvalidManifest(f"{job.reference}: {manifest.media_type} is neither an image nor an index")

    def _put_manifest(self, raw: bytes, manifest: Manifest) -> Descriptor:
        info = self.blobs.put(raw)
        descriptor = Descriptor(manifest.media_type, info.digest, info.size)
        self.manifests.index_referrer(descriptor, manifest)
        return descriptor

    # -- images ------------------------------------------------------------------------------

    def _pull_image(self, job: _Job, raw: bytes, manifest: ImageManifest,
                    platform: Platform | None) -> Descriptor:
        if manifest.config is None:
            return self._pull_converted(job, raw, manifest)
        if job.artifacts and self._is_artifact(manifest):
            return self._pull_artifact(job, raw, manifest)
        self.plugins.check_config(manifest.config.media_type, manifest)
        layers = manifest.layers
        compressions = [self._compression(layer) for layer in layers]
        cancel = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as config_pool:
            # The config comes alongside the layers, as in Docker; a bad config stops them.
            config_future = config_pool.submit(download, job.client, job.reference.repository,
                                               self.blobs, self.metadata, manifest.config, cancel=cancel)
            inflate = compressions if self.verify_diffids else [None] * len(layers)
            layer_futures = self._start_layers(job, layers, inflate, cancel)
            self._prepare_metadata()
            try:
                config = ImageConfig.parse(self.blobs.read(config_future.result().blob.digest, MAX_MANIFEST_SIZE))
                diff_ids = config.diff_ids
                self._check_platform(job, config, platform)
                if diff_ids is not None:
                    self._check_layer_types(job, layers, compressions, diff_ids)
                results = [future.result() for future in layer_futures]
            except BaseException:
                cancel.set()
                raise
        job.fetched_any = job.fetched_any or any(r.fetched for r in results)
        if diff_ids is not None and self.verify_diffids:
            for layer, result, expected in zip(layers, results, diff_ids):
                if result.diff_id != expected:
                    raise VerificationError(
                        f"{job.reference}: layers from manifest don't match image configuration "
                        f"(layer {layer.digest} has diffID {result.diff_id}, the config says {expected})")
                self.metadata.add_diff_id(expected, layer.digest, job.reference.registry,
                                          job.reference.repository)
        self._complete(layers, results)
        self.metadata.add_sources([manifest.config.digest, *(l.digest for l in layers)],
                                  job.reference.registry, job.reference.repository)
        target = self._put_manifest(raw, manifest)
        job.images[target.digest] = PulledImage(target, manifest, config)
        return target

    def _prepare_metadata(self) -> None:
        """While the blobs arrive: ready the metadata for what the pull records at its end
        (a new store's tables). A database that cannot be used says so then, as before."""
        try:
            self.metadata.prepare()
        except ContentStoreError as error:
            log.debug("metadata not prepared: %s", error)

    def _is_artifact(self, manifest: ImageManifest) -> bool:
        """Not an image the plugins read whole: an ``artifactType``, a config no plugin
        accepts, or a layer type no plugin knows (an in-toto attestation)."""
        if artifact_kind(manifest):
            return True
        try:
            self.plugins.check_config(manifest.config.media_type, manifest)
        except UnsupportedMediaType:
            return True
        return any(self._compression(layer) is None for layer in manifest.layers)

    def _pull_artifact(self, job: _Job, raw: bytes, manifest: ImageManifest) -> Descriptor:
        """An artifact: its config and layers are blobs like any other, each verified as it
        downloads; nothing in them is parsed (no plugin needed)."""
        blobs = list({d.digest: d for d in [manifest.config, *manifest.layers]}.values())
        results = self._download_all(job, blobs, [None] * len(blobs))
        self._complete(blobs, results)
        self.metadata.add_sources([blob.digest for blob in blobs], job.reference.registry,
                                  job.reference.repository)
        target = self._put_manifest(raw, manifest)
        job.images[target.digest] = PulledImage(target, manifest, None)
        return target

    # -- referrers (OCI 1.1) --------------------------------------------------------------------

    def _with_referrers(self, job: _Job, result: PullResult) -> None:
        """With ``referrers``: pull the referrers of what ``job`` pulled (the manifest or
        index the reference names and each image manifest of it), recursively."""
        if not self.referrers:
            return
        from contentstore.remote import referrers as remote_referrers

        subjects = [result.registry_digest, *job.images]
        repository = job.reference.repository

        def visit(subject: Digest, referrer: Descriptor) -> bool:
            return self._pull_referrer(job, subject, referrer)

        count = remote_referrers.walk(job.client, repository, subjects, visit,
                                      lambda warning: self.emit(ProgressEvent(None, f"warning: {warning}")))
        self.emit(ProgressEvent(None, f"Referrers: {count} of {result.registry_digest}"))

    def _pull_referrer(self, job: _Job, subject: Digest, listed: Descriptor) -> bool:
        """Pull the referrer ``listed`` as an artifact (by digest, every blob verified, no
        name given: a referrer is never run, so nothing in it is parsed but its manifest);
        one of a kind no plugin reads, or whose manifest does not name ``subject``, is
        passed over with a warning and not stored."""
        def skip(why: str) -> bool:
            self.emit(ProgressEvent(None, f"warning: referrer {listed.digest} of {subject} {why}: skipped"))
            return False

        if listed.media_type and not self.plugins.is_manifest_type(listed.media_type):
            return skip(f"is a {listed.media_type}, which no installed plugin reads")
        referrer_job = _Job(job.client, job.reference.with_digest(listed.digest), artifacts=True)
        raw, manifest = self._fetch_manifest(referrer_job, listed.digest, listed.digest, by_tag=False)
        declared = subject_of(manifest)
        if declared is None or declared.digest != subject:
            return skip(f"names {'the subject ' + declared.digest if declared else 'no subject'}")
        if isinstance(manifest, ManifestIndex):
            for child in manifest.manifests:
                child_raw, child_manifest = self._fetch_manifest(referrer_job, child.digest, child.digest, False)
                if isinstance(child_manifest, ImageManifest) and child_manifest.config is not None:
                    self._pull_artifact(referrer_job, child_raw, child_manifest)
                else:
                    raise InvalidManifest(f"{referrer_job.reference}: index entry {child.digest} is not an "
                                          f"image manifest")
            self._put_manifest(raw, manifest)
        elif isinstance(manifest, ImageManifest) and manifest.config is not None:
            self._pull_artifact(referrer_job, raw, manifest)
        else:
            return skip(f"is a {manifest.media_type}, neither an OCI manifest nor an index")
        job.fetched_any = job.fetched_any or referrer_job.fetched_any
        kind = listed.artifact_type or artifact_kind(manifest) or manifest.media_type
        self.emit(ProgressEvent(None, f"Referrer {listed.digest} ({kind}) of {subject}: "
                                      f"{'Pull complete' if referrer_job.fetched_any else 'Already exists'}"))
        return True

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

    def _download_all(self, job: _Job, blobs: list[Descriptor], compressions: list) -> list:
        """Download ``blobs`` (inflating those with a compression, for their diffIDs) and
        wait for all; the first failure cancels the others."""
        cancel = threading.Event()
        futures = self._start_layers(job, blobs, compressions, cancel)
        try:
            results = [future.result() for future in futures]
        except BaseException:
            cancel.set()
            raise
        job.fetched_any = job.fetched_any or any(r.fetched for r in results)
        return results

    def _start_layers(self, job: _Job, layers, compressions, cancel: threading.Event):
        """Download ``layers``, ``max_concurrent_downloads`` at a time; futures in order."""
        workers = max(1, self.access.config.max_concurrent_downloads)
        waiting = 0
        for layer in layers:
            present = self.blobs.exists(layer.digest)
            self.emit(ProgressEvent(short_id(layer.digest), "Already exists" if present else "Pulling fs layer"))
            if not present:
                waiting += 1
                if waiting > workers:
                    self.emit(ProgressEvent(short_id(layer.digest), "Waiting"))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
        futures = [pool.submit(download, job.client, job.reference.repository, self.blobs, self.metadata,
                               layer, compression, self.emit, cancel=cancel)
                   for layer, compression in zip(layers, compressions)]
        pool.shutdown(wait=False)  # its threads end with their downloads
        return futures

    def _complete(self, layers, results) -> None:
        for layer, result in zip(layers, results):
            if result.fetched:
                self.emit(ProgressEvent(short_id(layer.digest), "Pull complete"))

    def _check_platform(self, job: _Job, config: ImageConfig, platform: Platform | None) -> None:
        """An explicitly wanted platform must be what a single-platform image is."""
        if platform is not None or self.platform is None or not config.body.get("architecture"):
            return
        actual = Platform.from_json(config.body)
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
        results = self._download_all(job, layers, compressions)
        sized = [Descriptor(layer.media_type, r.blob.digest, r.blob.size) for layer, r in zip(layers, results)]
        diff_ids = [r.diff_id for r in results]
        converted = self.plugins.convert_manifest(manifest=manifest, layers=sized, diff_ids=diff_ids,
                                                  reference=job.reference)
        if converted is None:
            raise InvalidManifest(f"{job.reference}: no installed plugin converts {manifest.media_type}")
        config_bytes, manifest_bytes = converted
        self.blobs.put(config_bytes)
        original = self.blobs.put(raw)
        converted_manifest = self.plugins.parse_manifest(None, manifest_bytes)
        target = self._put_manifest(manifest_bytes, converted_manifest)
        self.metadata.set_label(target.digest, ORIGINAL_LABEL, original.digest)
        for layer, diff_id in zip(sized, diff_ids):
            self.metadata.add_diff_id(diff_id, layer.digest, job.reference.registry,
                                      job.reference.repository)
        self.metadata.add_sources([layer.digest for layer in sized], job.reference.registry,
                                  job.reference.repository)
        self._complete(layers, results)
        job.images[target.digest] = PulledImage(target, converted_manifest, ImageConfig.parse(config_bytes))
        return target

    # -- references --------------------------------------------------------------------------

    def _record(self, job: _Job, entry: Descriptor, target: Descriptor, manifest: Manifest,
                registry_digest: Digest) -> PullResult:
        """Point the tag (if any) and the digest reference at ``entry`` (addDigestReference),
        the OCI form of ``target``, which the registry serves as ``registry_digest``; first
        ``verify`` may refuse it."""
        reference = job.reference
        if self.verify is not None:
            try:
                self.verify(reference, target)
            except BaseException as error:
                self._refused.append(error)
                raise
        digest_name = str(Reference(reference.registry, reference.repository, None, Digest(registry_digest)))
        primary = str(reference) if reference.tag and not reference.digest else digest_name
        changed = set()
        for name in dict.fromkeys([digest_name, primary]):
            current = self.references.get(name)
            if current is None or current.digest != entry.digest or \
                    current.annotations.get(ORIGINAL_DIGEST_ANNOTATION) != entry.annotations.get(
                        ORIGINAL_DIGEST_ANNOTATION):
                self.references.tag(name, entry)
                changed.add(name)
        return PullResult(reference, entry, Digest(registry_digest), primary in changed, job.fetched_any,
                          manifest, self._chosen_image(job, target, manifest), target)

    def _chosen_image(self, job: _Job, target: Descriptor, manifest: Manifest) -> PulledImage | None:
        """The image a caller asked about: the wanted platform's, else the host's if it
        was pulled, else the first pulled (what ``images`` lists for an index)."""
        if isinstance(manifest, ManifestIndex):
            pulled = [m for m in manifest.manifests if m.digest in job.images]
            if self.platform is not None:
                chosen = manifest.select(self.platform)
            else:
                try:
                    chosen = manifest.select(Platform.host())
                except PlatformNotFound:
                    chosen = None
                if chosen not in pulled:
                    chosen = pulled[0] if pulled else None
            if chosen is None or chosen.digest not in job.images:
                return None
            image = job.images[chosen.digest]
            image = PulledImage(chosen, image.manifest, image.config)
        else:
            image = job.images.get(target.digest)
        if image is not None and image.config is None and image.manifest.config is not None:
            try:  # an image found complete in the store: its config was not read yet
                config = ImageConfig.parse(self.blobs.read(image.manifest.config.digest, MAX_MANIFEST_SIZE))
            except ContentStoreError:
                config = None
            image = PulledImage(image.descriptor, image.manifest, config)
        return image
