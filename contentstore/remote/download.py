"""Downloading one blob into the store: streamed, hashed, resumable, retried.

The blob streams into the store's ingest named by its digest. A connection that breaks
mid-body is retried (paced by urllib3's ``Retry``) and resumed with ``Range`` from what
the ingest already holds; a server that answers 200 instead of 206 restarts the ingest
cleanly (Docker's ErrWrongCodeForByteRange handling). A digest mismatch is final, except
after a resumed download, where the blob is fetched once more from the start.

With a compression given, the diffID is computed from the same stream as it arrives; a
resumed download computes it from the stored blob instead.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import requests
from urllib3.exceptions import MaxRetryError

from contentstore.image.compression import DiffIDHasher, diff_id_of
from contentstore.local.content import BlobInfo
from contentstore.model.digest import Digest
from contentstore.errors import Cancelled, DigestMismatch, RegistryUnreachable
from contentstore.model.manifest import Descriptor
from contentstore.progress import ProgressEvent
from contentstore.remote.client import RegistryClient, iter_body
from contentstore.remote.transport import retry_policy

log = logging.getLogger(__name__)

ATTEMPTS = 5
#: Report download progress every this many bytes.
PROGRESS_STEP = 512 * 1024


@dataclass(frozen=True)
class Downloaded:
    blob: BlobInfo
    diff_id: Digest | None
    fetched: bool  # False when the blob was already in the store


def short_id(digest: str) -> str:
    return Digest(digest).hex[:12]


def download(client: RegistryClient, repository: str, store, descriptor: Descriptor,
             compression: str | None = None, progress=None, attempts: int = ATTEMPTS,
             cancel: threading.Event | None = None) -> Downloaded:
    """Put the blob ``descriptor`` names into ``store``, from ``client`` if not there yet.

    :param compression: compute the diffID of the blob decompressed so.
    :param cancel: stop (keeping what was written, for a later resume) once it is set.
    """
    layer_id = short_id(descriptor.digest)
    emit = progress if progress is not None else (lambda event: None)
    size = descriptor.size if descriptor.size >= 0 else None
    retry = retry_policy(total=attempts, other=attempts)
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"download of {descriptor.digest} stopped: another part of the pull failed")
        if store.exists(descriptor.digest):
            return Downloaded(BlobInfo(descriptor.digest, store.size(descriptor.digest)),
                              _diff_id_from_store(store, descriptor.digest, compression), False)
        with store.writer(descriptor.digest, expected=descriptor.digest, size=size) as writer:
            if store.exists(descriptor.digest):  # another process finished it meanwhile
                writer.abort()
                continue
            resumed_from = writer.offset
            hasher = DiffIDHasher(compression) if compression and not resumed_from else None
            try:
                response = client.open_blob(repository, descriptor.digest, writer.offset)
                with response:
                    if writer.offset and response.status_code != 206:
                        log.debug("%s: server ignored Range; starting over", layer_id)
                        writer.truncate()
                        resumed_from = 0
                        hasher = DiffIDHasher(compression) if compression else None
                    reported = -PROGRESS_STEP
                    for chunk in iter_body(response):
                        if cancel is not None and cancel.is_set():
                            raise Cancelled(f"download of {descriptor.digest} stopped: another part of the pull failed")
                        writer.write(chunk)
                        if hasher:
                            hasher.update(chunk)
                        if writer.offset - reported >= PROGRESS_STEP or writer.offset == size:
                            reported = writer.offset
                            emit(ProgressEvent(layer_id, "Downloading", writer.offset, size))
                emit(ProgressEvent(layer_id, "Verifying Checksum"))
                blob = writer.commit()
            except DigestMismatch as exc:
                if not resumed_from:
                    raise DigestMismatch(exc.expected, exc.actual, f"blob {descriptor.digest}") from None
                log.debug("%s: resumed download failed verification; fetching it whole", layer_id)
                retry = _next_try(retry, exc, descriptor, attempts)
                continue
            except (requests.RequestException, RegistryUnreachable) as exc:
                log.debug("%s: download interrupted at %d bytes: %s", layer_id, writer.offset, exc)
                retry = _next_try(retry, exc, descriptor, attempts)
                emit(ProgressEvent(layer_id, f"Retrying (resuming at {writer.offset} bytes)"))
                retry.sleep()
                continue
        emit(ProgressEvent(layer_id, "Download complete"))
        diff_id = hasher.digest() if hasher else _diff_id_from_store(store, blob.digest, compression)
        return Downloaded(blob, diff_id, True)


def _next_try(retry, error: Exception, descriptor: Descriptor, attempts: int):
    try:
        return retry.increment(method="GET", url=str(descriptor.digest), error=error)
    except MaxRetryError:
        raise RegistryUnreachable(
            f"download of {descriptor.digest} failed after {attempts} attempts: {error}"
        ) from None


def _diff_id_from_store(store, digest: Digest, compression: str | None) -> Digest | None:
    if not compression:
        return None
    known = store.metadata.diff_id(digest)
    if known:
        return known
    with store.open(digest) as blob:
        return diff_id_of(blob, compression)
