"""Push: what ``docker push`` (and ``skopeo copy oci:… docker://…``) does.

For every blob: a ``HEAD`` (``Layer already exists``), else a cross-repository mount from
the repositories the metadata says hold it on that registry (Docker's
V2MetadataService), else an upload: one ``PUT`` for a small blob, ``PATCH`` chunks for a
large one, resumed from the offset the registry reports after an interruption. Then the
manifests, children before the index, each checked against the registry's
``Docker-Content-Digest``. A manifest with a ``subject`` (OCI 1.1) that the registry does
not acknowledge with ``OCI-Subject`` is added to the referrers tag of its subject; with
``referrers``, the store's referrers of what was pushed follow it, recursively.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, ContextManager

from contentstore.errors import BlobNotFound, DigestMismatch, InvalidReference, RegistryError, RegistryUnreachable
from contentstore.local.interfaces import BlobReader
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import ORIGINAL_LABEL, Metadata
from contentstore.model.artifact import referrer_descriptor, referrers_tag, subject_of
from contentstore.model.digest import Digest
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor, ImageManifest, Manifest, ManifestIndex
from contentstore.model.reference import Reference
from contentstore.progress import ProgressEvent, quiet
from contentstore.remote import fallback
from contentstore.remote import referrers as remote_referrers
from contentstore.remote.access import RegistryAccess
from contentstore.remote.auth import scope_for
from contentstore.remote.client import RegistryClient
from contentstore.remote.download import short_id
from contentstore.remote.transport import ATTEMPTS, Backoff

log = logging.getLogger(__name__)

#: Tries for one blob upload (each resumes where the registry says it stopped).
UPLOAD_ATTEMPTS = ATTEMPTS


@dataclass
class PushResult:
    reference: Reference
    digest: Digest
    size: int
    pushed: int = 0
    mounted: int = 0
    existed: int = 0
    referrers: int = 0  # referrers pushed along (``referrers=True``)


class Pusher:
    """Pushes from the local store's parts it is handed (blobs, metadata, manifests)."""

    def __init__(self, blobs: BlobReader, metadata: Metadata, manifests: Manifests, leases: Leases,
                 access: RegistryAccess, blob_gate: Callable[[str], ContextManager] | None = None):
        """:param blob_gate: ``blob_gate(digest)`` is held while that blob is pushed (sync
            passes one that lets one image at a time push a blob, so the others then find
            it there, or mount it, rather than upload it again)."""
        self.blob_gate = blob_gate or (lambda digest: contextlib.nullcontext())
        self.blobs = blobs
        self.metadata = metadata
        self.manifests = manifests
        self.leases = leases
        self.access = access
        self.config = access.config
        self.emit = access.emit
        self.referrers = False

    def push(self, src: str, descriptor: Descriptor, dest: str | None = None,
             referrers: bool = False) -> PushResult:
        """Push the local image ``descriptor`` (which ``src`` named) to ``dest``, by default
        the reference it is stored under; with ``referrers``, then the store's referrers
        of it (and of its image manifests), theirs in turn, each by digest."""
        source_name = descriptor.annotations.get(REF_NAME_ANNOTATION)
        target = self._destination(src, source_name, dest)
        manifest = self.manifests.read(descriptor)
        self.emit(ProgressEvent(None, f"The push refers to repository [{target.name}]"))
        self.referrers = referrers
        with self.leases.lease():
            return self._with_endpoints(target, descriptor, manifest)

    @staticmethod
    def _destination(src: str, source_name: str | None, dest: str | None) -> Reference:
        if dest is None:
            if source_name is None:
                raise InvalidReference(f"{src} is not a named reference: give a destination")
            return Reference.parse(source_name)
        target = Reference.parse(dest, default_tag=None)
        if target.tag is None and target.digest is None:
            source_tag = Reference.parse(source_name).tag if source_name else None
            target = Reference(target.registry, target.repository, source_tag or "latest", None)
        return target

    def _with_endpoints(self, target: Reference, descriptor: Descriptor, manifest: Manifest) -> PushResult:
        result, _ = fallback.on_each_endpoint(
            self.access.endpoints(target, mirrors=False), self.access.connect,
            lambda client: _PushJob(self, client, target).run(descriptor, manifest))
        return result


class _PushJob:
    def __init__(self, pusher: Pusher, client: RegistryClient, target: Reference):
        self.pusher = pusher
        self.blobs = pusher.blobs
        self.metadata = pusher.metadata
        self.manifests = pusher.manifests
        self.emit = pusher.emit
        self.client = client
        self.target = target
        self.repository = target.repository
        self.scope = scope_for(self.repository, "pull,push")
        self.counts = {"pushed": 0, "mounted": 0, "existed": 0}
        self.lock = threading.Lock()

    def run(self, descriptor: Descriptor, manifest: Manifest) -> PushResult:
        pushed = [descriptor.digest]
        if isinstance(manifest, ManifestIndex):
            for child in manifest.manifests:
                if self._push_child(child):
                    pushed.append(child.digest)
        elif isinstance(manifest, ImageManifest):
            self._push_blobs(manifest)
        original = self.metadata.labels(descriptor.digest).get(ORIGINAL_LABEL)
        if original:
            self.emit(ProgressEvent(None, f"{self.target.familiar()}: a schema1 image; pushing its "
                                          f"converted OCI manifest"))
        reference = self.target.digest or self.target.tag
        data = self.blobs.read(descriptor.digest, MAX_MANIFEST_SIZE)
        self._put_manifest(reference, descriptor.digest, data, manifest)
        self.emit(ProgressEvent(None, f"{self.target.tag or self.target.digest}: digest: "
                                      f"{descriptor.digest} size: {len(data)}"))
        referrers = self._push_referrers(pushed) if self.pusher.referrers else 0
        return PushResult(self.target, descriptor.digest, len(data), referrers=referrers, **self.counts)

    def _push_child(self, child: Descriptor) -> bool:
        """Push a manifest an index lists (with its blobs); whether it was in the store."""
        if not self.blobs.exists(child.digest):
            if self.client.blob_exists(self.repository, child.digest, self.scope) or \
                    self._manifest_exists(child):
                return False
            raise BlobNotFound(child.digest)  # pull with --all-platforms to push every platform
        manifest = self.manifests.read(child)
        if isinstance(manifest, ImageManifest):
            self._push_blobs(manifest)
        data = self.blobs.read(child.digest, MAX_MANIFEST_SIZE)
        self._put_manifest(child.digest, child.digest, data, manifest)
        return True

    def _put_manifest(self, reference: str, digest: Digest, data: bytes, manifest: Manifest) -> None:
        """PUT a manifest, checked against the registry's digest; one with a ``subject`` is
        added to its subject's referrers tag unless the registry answered ``OCI-Subject``."""
        subject = subject_of(manifest)
        acknowledged = None
        if subject is None:
            answered = self.client.put_manifest(self.repository, reference, data, manifest.media_type, self.scope)
        else:
            answered, acknowledged = remote_referrers.put_manifest(self.client, self.repository, reference, data,
                                                                   manifest.media_type, self.scope)
        if answered and answered != digest:
            raise DigestMismatch(digest, answered, f"manifest pushed to {self.target.name}")
        if subject is None or acknowledged:
            return
        listed = referrer_descriptor(Descriptor(manifest.media_type, digest, len(data)), manifest)
        if remote_referrers.add_to_fallback(self.client, self.repository, subject.digest, listed, self.scope):
            self.emit(ProgressEvent(None, f"{referrers_tag(subject.digest)}: referrers tag now lists {digest}"))

    def _push_referrers(self, subjects: list[Digest]) -> int:
        """Push the store's referrers of ``subjects`` (and theirs, recursively) by digest;
        return how many."""
        seen = set(subjects)
        queue = list(subjects)
        count = 0
        while queue:
            subject = queue.pop(0)
            for listed in self.metadata.referrers(subject):
                if listed.digest in seen or not self.blobs.exists(listed.digest):
                    continue  # a referrer the index still names but gc (or a delete) took
                seen.add(listed.digest)
                manifest = self.manifests.read(Descriptor(listed.media_type, listed.digest, listed.size))
                if isinstance(manifest, ManifestIndex):
                    for child in manifest.manifests:
                        self._push_child(child)
                elif isinstance(manifest, ImageManifest):
                    self._push_blobs(manifest)
                data = self.blobs.read(listed.digest, MAX_MANIFEST_SIZE)
                self._put_manifest(listed.digest, listed.digest, data, manifest)
                kind = listed.artifact_type or manifest.media_type
                self.emit(ProgressEvent(None, f"Referrer {listed.digest} ({kind}) of {subject}: Pushed"))
                count += 1
                queue.append(listed.digest)
        return count

    def _manifest_exists(self, child: Descriptor) -> bool:
        try:
            digest, _ = self.client.head_manifest(self.repository, child.digest)
        except RegistryError:
            return False
        return digest == child.digest

    def _push_blobs(self, manifest: ImageManifest) -> None:
        layers = list(manifest.layers)
        for layer in layers:
            self.emit(ProgressEvent(short_id(layer.digest), "Preparing"))
        workers = max(1, self.pusher.config.max_concurrent_uploads)
        for position, layer in enumerate(layers):
            if position >= workers:
                self.emit(ProgressEvent(short_id(layer.digest), "Waiting"))
        blobs = layers + ([manifest.config] if manifest.config else [])
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
            futures = [pool.submit(self._push_gated, blob, blob is not manifest.config) for blob in blobs]
            for future in futures:
                future.result()

    def _count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def _push_gated(self, blob: Descriptor, is_layer: bool) -> None:
        with self.pusher.blob_gate(blob.digest):
            self._push_blob(blob, is_layer)

    def _push_blob(self, blob: Descriptor, is_layer: bool) -> None:
        layer_id = short_id(blob.digest)
        show = self.emit if is_layer else quiet
        if not self.blobs.exists(blob.digest):
            raise BlobNotFound(blob.digest)
        if self.client.blob_exists(self.repository, blob.digest, self.scope):
            show(ProgressEvent(layer_id, "Layer already exists"))
            self._count("existed")
            self._remember(blob)
            return
        location = None
        for source in self._mount_sources(blob):
            mounted, location = self.client.mount_blob(
                self.repository, blob.digest, source,
                f"{self.scope} {scope_for(source, 'pull')}")
            if mounted:
                show(ProgressEvent(layer_id, f"Mounted from {source}"))
                self._count("mounted")
                self._remember(blob)
                return
        self._upload(blob, location, show)
        show(ProgressEvent(layer_id, "Pushed"))
        self._count("pushed")
        self._remember(blob)

    def _mount_sources(self, blob: Descriptor) -> list[str]:
        """Other repositories on the target registry known to hold ``blob``."""
        sources = []
        for source in self.metadata.blob_sources(blob.digest):
            if source.registry == self.target.registry and source.repository != self.repository \
                    and source.repository not in sources:
                sources.append(source.repository)
        return sources[:3]  # as Docker, a few candidates, most recent first

    def _remember(self, blob: Descriptor) -> None:
        """Record that the target repository holds this blob, for later mounts."""
        self.metadata.add_sources([blob.digest], self.target.registry, self.repository)
        diff_id = self.metadata.diff_id(blob.digest)
        if diff_id is not None:
            self.metadata.add_diff_id(diff_id, blob.digest, self.target.registry, self.repository)

    # -- uploads --------------------------------------------------------------------------

    def _upload(self, blob: Descriptor, location: str | None, show) -> None:
        """Upload a blob: one PUT if small, else PATCH chunks; resumed or restarted after a
        broken connection, as the registry allows."""
        size = self.blobs.size(blob.digest)
        chunk_size = self.pusher.config.upload_chunk_size
        chunked = size > chunk_size
        layer_id = short_id(blob.digest)
        backoff = Backoff(f"upload of {blob.digest}", UPLOAD_ATTEMPTS)
        resume = False
        while True:
            try:
                offset = 0
                if location is not None and resume:
                    offset, location = self._where(location)
                if location is None:
                    location = self.client.start_upload(self.repository, self.scope)
                # Hashed as it is sent: the read that reaches the end raises CorruptBlob
                # before the last bytes go, so a blob changed on disk is never completed
                # on the registry; a chunk resumed mid-blob rehashes the bytes before it.
                with self.blobs.open_verified(blob.digest, blob.size if blob.size >= 0 else None) as data:
                    if chunked:
                        location = self._send_chunks(location, data, offset, size, chunk_size, layer_id, show)
                        answered = self.client.finish_upload(location, blob.digest, self.scope)
                    else:
                        show(ProgressEvent(layer_id, "Pushing", 0, size))
                        answered = self.client.finish_upload(location, blob.digest, self.scope, data, size)
                show(ProgressEvent(layer_id, "Pushing", size, size))
                if answered != blob.digest:
                    raise DigestMismatch(blob.digest, answered, f"blob pushed to {self.target.name}")
                return
            except RegistryError as error:
                lost = _upload_lost(error)
                if not lost and not isinstance(error, RegistryUnreachable):
                    raise
                try:
                    backoff.failed(error)
                except RegistryUnreachable:
                    raise error from None
                log.debug("%s: upload interrupted (%s); trying again", layer_id, error)
                show(ProgressEvent(layer_id, "Retrying"))
                backoff.wait()
                resume = chunked and not lost
                if lost or not chunked:
                    location = None  # a new upload, from the start

    def _where(self, location: str) -> tuple[int, str | None]:
        """Where an interrupted upload stands; (0, None) when the registry dropped it."""
        try:
            return self.client.upload_status(location, self.scope)
        except RegistryUnreachable:
            raise
        except RegistryError as error:
            # distribution cancels an upload whose bytes and state disagree after a cut
            # PATCH: start a new one.
            log.debug("upload cannot be resumed (%s); starting again", error)
            return 0, None

    def _send_chunks(self, location: str, data, offset: int, size: int, chunk_size: int,
                     layer_id: str, show) -> str:
        while offset < size:
            length = min(chunk_size, size - offset)
            data.seek(offset)
            offset, location = self.client.upload_chunk(location, _Window(data, length), offset,
                                                        length, self.scope)
            show(ProgressEvent(layer_id, "Pushing", offset, size))
        return location


#: Errors by which a registry says an upload session is gone (cancelled after a cut).
UPLOAD_LOST_CODES = {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"}


def _upload_lost(error: RegistryError) -> bool:
    return bool(UPLOAD_LOST_CODES & set(error.codes)) or error.status == 416


class _Window:
    """A read-only view of ``length`` bytes of a file from its current position."""

    def __init__(self, fileobj, length: int):
        self._file = fileobj
        self._start = fileobj.tell()
        self._left = length
        self._length = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def tell(self) -> int:
        return self._length - self._left

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0:
            raise OSError("only absolute seeks")
        self._file.seek(self._start + offset)
        self._left = self._length - offset
        return offset

    def __len__(self) -> int:
        return self._length
