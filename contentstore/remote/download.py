"""Downloading one blob into the store: streamed, hashed, resumable, retried.

The blob streams into the store's ingest named by its digest. A connection that breaks
mid-body is retried (paced by :class:`~contentstore.remote.transport.Backoff`) and resumed with ``Range`` from what
the ingest already holds; a server that answers 200 instead of 206 restarts the ingest
cleanly (Docker's ErrWrongCodeForByteRange handling). A digest mismatch is final, except
after a resumed download, where the blob is fetched once more from the start.

With a compression given, the diffID is computed from the same stream as it arrives; a
resumed download computes it from the stored blob instead.

A registry cannot send more than the descriptor says: a ``Content-Length`` past it is
refused before any byte is read, and the bytes are counted as they arrive, so the
chunk that would pass the size is never written; the connection is closed, the ingest
dropped, and :class:`SizeMismatch` names the blob and the endpoint. A body slower than
the client's minimum transfer rate is cut and resumed like a broken one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import requests

from contentstore.errors import Cancelled, DigestMismatch, RegistryUnreachable, SizeMismatch
from contentstore.image.compression import DiffIDHasher, diff_id_of
from contentstore.local.content import BlobInfo
from contentstore.local.interfaces import BlobStore
from contentstore.local.metadata import Metadata
from contentstore.model.digest import Digest
from contentstore.model.manifest import Descriptor
from contentstore.progress import ProgressEvent
from contentstore.remote.client import RegistryClient
from contentstore.remote.transport import ATTEMPTS, Backoff, iter_body

log = logging.getLogger(__name__)

#: Report download progress every this many bytes.
PROGRESS_STEP = 512 * 1024


@dataclass(frozen=True)
class Downloaded:
    blob: BlobInfo
    diff_id: Digest | None
    fetched: bool  # False when the blob was already in the store


def short_id(digest: str) -> str:
    return Digest(digest).hex[:12]


def download(client: RegistryClient, repository: str, blobs: BlobStore, metadata: Metadata,
             descriptor: Descriptor, compression: str | None = None, progress=None,
             attempts: int = ATTEMPTS, cancel: threading.Event | None = None) -> Downloaded:
    """Put the blob ``descriptor`` names into ``blobs``, from ``client`` if not there yet.

    :param metadata: where a diffID already known for the blob is found.
    :param compression: compute the diffID of the blob decompressed so.
    :param cancel: stop (keeping what was written, for a later resume) once it is set.
    """
    layer_id = short_id(descriptor.digest)
    emit = progress if progress is not None else (lambda event: None)
    size = descriptor.size if descriptor.size >= 0 else None
    backoff = Backoff(f"download of {descriptor.digest}", attempts)
    while True:
        if cancel is not None and cancel.is_set():
            raise _cancelled(descriptor)
        if blobs.exists(descriptor.digest):
            return Downloaded(BlobInfo(descriptor.digest, blobs.size(descriptor.digest)),
                              _diff_id_from_store(blobs, metadata, descriptor.digest, compression), False)
        with blobs.writer(descriptor.digest, expected=descriptor.digest, total=size) as writer:
            if blobs.exists(descriptor.digest):  # another process finished it meanwhile
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
                    remaining = None if size is None else size - writer.offset
                    too_much = _too_much(client, descriptor, writer.offset)
                    length = response.headers.get("Content-Length", "")
                    if remaining is not None and length.isdigit() and int(length) > remaining:
                        raise too_much(int(length))
                    rate = client.transfer_rate(f"{client.endpoint.url}: blob {descriptor.digest}")
                    reported = -PROGRESS_STEP
                    for chunk in iter_body(response, remaining, too_much, rate):
                        if cancel is not None and cancel.is_set():
                            raise _cancelled(descriptor)
                        writer.write(chunk)
                        if hasher:
                            hasher.update(chunk)
                        if writer.offset - reported >= PROGRESS_STEP or writer.offset == size:
                            reported = writer.offset
                            emit(ProgressEvent(layer_id, "Downloading", writer.offset, size))
                emit(ProgressEvent(layer_id, "Verifying Checksum"))
                blob = writer.commit()
            except SizeMismatch:
                writer.abort()  # these bytes came from a registry that lies about this blob
                raise
            except DigestMismatch as exc:
                if not resumed_from:
                    raise DigestMismatch(exc.expected, exc.actual, f"blob {descriptor.digest}") from None
                log.debug("%s: resumed download failed verification; fetching it whole", layer_id)
                backoff.failed(exc)
                continue
            except (requests.RequestException, RegistryUnreachable) as exc:
                log.debug("%s: download interrupted at %d bytes: %s", layer_id, writer.offset, exc)
                backoff.failed(exc)
                emit(ProgressEvent(layer_id, f"Retrying (resuming at {writer.offset} bytes)"))
                backoff.wait()
                continue
        emit(ProgressEvent(layer_id, "Download complete"))
        diff_id = hasher.digest() if hasher else _diff_id_from_store(blobs, metadata, blob.digest, compression)
        return Downloaded(blob, diff_id, True)


def _too_much(client: RegistryClient, descriptor: Descriptor, offset: int):
    """The error for a registry that sends more than the blob's size, given how many
    bytes of this answer came (or its ``Content-Length`` said would)."""
    def refuse(received: int) -> SizeMismatch:
        return SizeMismatch(descriptor.size, offset + received,
                            f"blob {descriptor.digest} from {client.endpoint.url} (cut off past the "
                            f"descriptor's size)")
    return refuse


def _cancelled(descriptor: Descriptor) -> Cancelled:
    return Cancelled(f"download of {descriptor.digest} stopped: another part of the pull failed")


def _diff_id_from_store(blobs: BlobStore, metadata: Metadata, digest: Digest,
                        compression: str | None) -> Digest | None:
    if not compression:
        return None
    known = metadata.diff_id(digest)
    if known:
        return known
    with blobs.open(digest) as blob:
        return diff_id_of(blob, compression)
