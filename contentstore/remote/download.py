"""Downloading one blob into the store: streamed, hashed, resumable, retried.

The blob streams into the store's ingest named by its digest. A connection that breaks
mid-body is retried (paced by :class:`~contentstore.remote.transport.Backoff`) and resumed with ``Range`` from what
the ingest already holds; a server that answers 200 instead of 206 restarts the ingest
cleanly (Docker's ErrWrongCodeForByteRange handling). A digest mismatch is final, except
after a resumed download, where the blob is fetched once more from the start.

A blob of at least ``parallel_download_threshold`` bytes is fetched over up to
``max_connections_per_download`` connections at once, as ``Range`` requests of
``parallel_download_chunk_size`` bytes written at their offsets into the same ingest
(containerd 2.1's parallel layer fetch, without its memory buffers): the ranges held
are recorded in the ingest, so a killed pull resumes only the missing ones, and the
digest is computed in order as the contiguous prefix grows, from the page cache. A
registry that answers the first range with 200 is read as one stream; one that stops
honouring ranges later is resumed as one stream from the prefix.

With a compression given, the diffID is computed from the same bytes as they arrive, on
another thread (:class:`~contentstore.image.compression.ThreadedDiffIDHasher`); a
download that resumes past the start computes it from the stored blob instead.

A registry cannot send more than the descriptor says: a ``Content-Length`` past it is
refused before any byte is read, and the bytes are counted as they arrive, so the
chunk that would pass the size is never written; the connection is closed, the ingest
dropped, and :class:`SizeMismatch` names the blob and the endpoint. A body slower than
the client's minimum transfer rate (each connection) is cut and resumed like a broken one.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from dataclasses import dataclass

import requests

from contentstore.errors import Cancelled, DigestMismatch, RegistryUnreachable, SizeMismatch
from contentstore.image.compression import ThreadedDiffIDHasher, diff_id_of
from contentstore.local.content import BlobInfo, IngestWriter
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

#: Seconds between records of the ranges held while a ranged download runs (and at its
#: end); a killed pull refetches at most what came since.
SAVE_EVERY = 0.5


@dataclass(frozen=True)
class Downloaded:
    blob: BlobInfo
    diff_id: Digest | None
    fetched: bool  # False when the blob was already in the store


def short_id(digest: str) -> str:
    return Digest(digest).hex[:12]


class _RangesRefused(Exception):
    """The registry did not answer a range as asked: go on as one stream. ``response``
    is its answer when it may be read as the whole blob (a 200 to the first range)."""

    def __init__(self, why: str, response: requests.Response | None = None):
        super().__init__(why)
        self.response = response


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
    config = client.config
    ranged = (size is not None and config.max_connections_per_download > 1
              and size >= max(config.parallel_download_threshold, 1))
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
            hasher = ThreadedDiffIDHasher(compression) if compression and not resumed_from else None
            try:
                response = None
                if ranged:
                    try:
                        _fetch_ranges(client, repository, descriptor, writer, hasher, emit, attempts, cancel)
                    except _RangesRefused as refused:
                        log.debug("%s: %s; going on as one stream", layer_id, refused)
                        ranged = False
                        response = refused.response
                if not ranged:
                    if response is None:
                        response = client.open_blob(repository, descriptor.digest, writer.offset)
                    hasher = _stream(client, descriptor, writer, response, hasher, compression, emit, cancel)
                emit(ProgressEvent(layer_id, "Verifying Checksum"))
                blob = writer.commit()
            except SizeMismatch:
                writer.abort()  # these bytes came from a registry that lies about this blob
                _close(hasher)
                raise
            except DigestMismatch as exc:
                _close(hasher)
                if not resumed_from:
                    raise DigestMismatch(exc.expected, exc.actual, f"blob {descriptor.digest}") from None
                log.debug("%s: resumed download failed verification; fetching it whole", layer_id)
                backoff.failed(exc)
                continue
            except (requests.RequestException, RegistryUnreachable) as exc:
                _close(hasher)
                log.debug("%s: download interrupted at %d bytes: %s", layer_id, writer.held_bytes(), exc)
                backoff.failed(exc)
                emit(ProgressEvent(layer_id, f"Retrying (resuming at {writer.held_bytes()} bytes)"))
                backoff.wait()
                continue
            except BaseException:
                _close(hasher)
                raise
        emit(ProgressEvent(layer_id, "Download complete"))
        diff_id = hasher.digest() if hasher else _diff_id_from_store(blobs, metadata, blob.digest, compression)
        return Downloaded(blob, diff_id, True)


def _close(hasher) -> None:
    if hasher is not None:
        hasher.close()


def _stream(client: RegistryClient, descriptor: Descriptor, writer: IngestWriter, response: requests.Response,
            hasher, compression: str | None, emit, cancel: threading.Event | None):
    """Read ``response`` into ``writer`` from its offset (from 0 when the registry
    ignored ``Range``); return the diffID hasher in use."""
    layer_id = short_id(descriptor.digest)
    size = descriptor.size if descriptor.size >= 0 else None
    with response:
        if response.status_code != 206 and (writer.offset or writer.held_bytes()):
            log.debug("%s: server ignored Range; starting over", layer_id)
            writer.truncate()
            _close(hasher)
            hasher = ThreadedDiffIDHasher(compression) if compression else None
        remaining = None if size is None else size - writer.offset
        too_much = _too_much(client, descriptor, writer.offset)
        length = response.headers.get("Content-Length", "")
        if remaining is not None and length.isdigit() and int(length) > remaining:
            raise too_much(int(length))
        rate = client.transfer_rate(f"{client.endpoint.url}: blob {descriptor.digest}")
        reported = -PROGRESS_STEP
        for chunk in iter_body(response, remaining, too_much, rate, decode=False):
            if cancel is not None and cancel.is_set():
                raise _cancelled(descriptor)
            writer.write(chunk)
            if hasher:
                hasher.update(chunk)
            if writer.offset - reported >= PROGRESS_STEP or writer.offset == size:
                reported = writer.offset
                emit(ProgressEvent(layer_id, "Downloading", writer.offset, size))
    return hasher


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)


def _fetch_ranges(client: RegistryClient, repository: str, descriptor: Descriptor, writer: IngestWriter,
                  hasher, emit, attempts: int, cancel: threading.Event | None) -> None:
    """Fetch what ``writer`` is missing over parallel ``Range`` requests, hashing the
    prefix (and feeding ``hasher``) on this thread as it grows.

    :raises _RangesRefused: the registry does not answer ranges as asked.
    """
    config = client.config
    chunk = max(config.parallel_download_chunk_size, 1)
    pieces = collections.deque((start, min(start + chunk, end))
                               for start, end in writer.missing() for start in range(start, end, chunk))
    layer_id = short_id(descriptor.digest)
    size = descriptor.size
    progress = threading.Event()
    failed: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()
    open_responses: set[requests.Response] = set()

    def stopped() -> bool:
        return stop.is_set() or (cancel is not None and cancel.is_set())

    def take():
        with lock:
            return pieces.popleft() if pieces and not stopped() else None

    def fetch(start: int, end: int, first: requests.Response | None) -> None:
        backoff = Backoff(f"download of {descriptor.digest} (bytes {start}-{end - 1})", attempts)
        position = start
        while position < end and not stopped():
            try:
                response = first or client.open_blob(repository, descriptor.digest, position, end)
                first = None
                with lock:
                    open_responses.add(response)
                try:
                    with response:
                        got_end = _check_range(response, position, end, size)
                        too_much = _too_much(client, descriptor, position)
                        rate = client.transfer_rate(f"{client.endpoint.url}: blob {descriptor.digest} "
                                                    f"(bytes {position}-{end - 1})")
                        for data in iter_body(response, got_end - position, too_much, rate, decode=False):
                            if stopped():
                                return
                            writer.write_at(position, data)
                            position += len(data)
                            progress.set()
                finally:
                    with lock:
                        open_responses.discard(response)
            except (requests.RequestException, RegistryUnreachable) as exc:
                if stopped():
                    return
                log.debug("%s: range %d-%d interrupted at %d: %s", layer_id, start, end - 1, position, exc)
                backoff.failed(exc)
                emit(ProgressEvent(layer_id, f"Retrying (resuming at {writer.held_bytes()} bytes)"))
                backoff.wait()

    def work(first_piece=None, first_response=None) -> None:
        try:
            piece = first_piece or take()
            while piece is not None:
                fetch(*piece, first_response)
                first_response = None
                piece = take()
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinating thread
            if not stop.is_set():
                with lock:
                    failed.append(exc)
                stop.set()
        finally:
            progress.set()

    if not pieces:
        _hash_prefix(writer, hasher)
        return
    first_piece = pieces.popleft()
    response = client.open_blob(repository, descriptor.digest, *first_piece)
    try:
        _check_range(response, *first_piece, size)
    except _RangesRefused as refused:
        if response.status_code == 200 and first_piece[0] == 0 and not writer.held_bytes():
            refused.response = response  # the whole blob is coming: read it as one stream
        else:
            response.close()
        raise
    except BaseException:
        response.close()
        raise
    workers = [threading.Thread(target=work, args=(first_piece, response), name="range", daemon=True)]
    workers += [threading.Thread(target=work, name="range", daemon=True)
                for _ in range(min(config.max_connections_per_download, len(pieces) + 1) - 1)]
    for thread in workers:
        thread.start()
    reported = -PROGRESS_STEP
    saved = 0.0
    try:
        while True:
            progress.wait(SAVE_EVERY)
            progress.clear()
            _hash_prefix(writer, hasher)
            held = writer.held_bytes()
            if held - reported >= PROGRESS_STEP or held == size:
                reported = held
                emit(ProgressEvent(layer_id, "Downloading", held, size))
            now = time.monotonic()
            if now - saved >= SAVE_EVERY:
                writer.save_ranges()
                saved = now
            if failed or stopped() or not any(t.is_alive() for t in workers):
                break
    finally:
        stop.set()
        with lock:
            for response in list(open_responses):
                try:
                    response.close()  # wakes a worker waiting for a stalled connection
                except Exception:  # noqa: BLE001 - closing from another thread, best effort
                    pass
        for thread in workers:
            thread.join()
        writer.save_ranges()
    if failed:
        raise failed[0]
    if cancel is not None and cancel.is_set():
        raise _cancelled(descriptor)
    _hash_prefix(writer, hasher)
    if writer.offset != size:
        raise RegistryUnreachable(f"download of {descriptor.digest}: ranges ended at {writer.offset} of "
                                  f"{size} bytes")


def _hash_prefix(writer: IngestWriter, hasher) -> None:
    for piece in writer.hash_held():
        if hasher is not None:
            hasher.update(piece)


def _check_range(response: requests.Response, start: int, end: int, size: int) -> int:
    """Where the answer to ``Range: bytes=start-(end-1)`` ends (exclusive), or
    :class:`_RangesRefused` when it is not that range."""
    if response.status_code != 206:
        raise _RangesRefused(f"the registry answered a range with {response.status_code}")
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match:
        raise _RangesRefused("the registry answered a range without a usable Content-Range")
    first, last, total = int(match.group(1)), int(match.group(2)), match.group(3)
    if total != "*" and int(total) != size:
        raise SizeMismatch(size, int(total), f"blob (the registry's Content-Range says {total} bytes)")
    if first != start or last < first or last >= end:
        raise _RangesRefused(f"the registry answered bytes {first}-{last} for {start}-{end - 1}")
    return last + 1


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
