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

#: The most bytes read from a blob's body at a time: large, since each read costs as
#: much Python as it costs bytes; smaller when the chunks go on into a diffID pipeline,
#: where what is in flight is what a download holds in memory.
BODY_CHUNK = 1 << 20
PIPELINED_BODY_CHUNK = 512 * 1024

#: Report download progress every this many bytes.
PROGRESS_STEP = 512 * 1024

#: A ranged download starts on one connection and, after this many seconds, opens the
#: others if that one brings less than :data:`FAST_CONNECTION` bytes a second: a link
#: that throttles each connection gains from more, a fast one (where receiving,
#: writing and hashing take the cores) only pays for them.
PROBE_SECONDS = 0.5
FAST_CONNECTION = 128 << 20

#: The smallest range asked for (unless the chunk size is smaller) as a ranged download
#: nears its end.
MIN_PIECE = 1 << 20

#: Seconds between records of the ranges held while a ranged download runs (and at its
#: end); a killed pull refetches at most what came since.
SAVE_EVERY = 0.5

#: The most bytes a ranged download's coordinating thread hashes between its other
#: duties (progress, the probe, saving the ranges held).
HASH_STEP = 8 << 20


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
            resumed_from = writer.held_bytes()  # bytes an earlier writer left (a prefix, or ranges)
            # the diffID comes from the same bytes when they are all hashed here, in order
            hasher = ThreadedDiffIDHasher(compression) if compression and not writer.offset else None
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
        for chunk in iter_body(response, remaining, too_much, rate, decode=False,
                               chunk_size=BODY_CHUNK if hasher is None else PIPELINED_BODY_CHUNK):
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
    prefix (and feeding ``hasher``) on this thread as it grows: the connections only
    receive and write, so receiving and hashing use two cores.

    :raises _RangesRefused: the registry does not answer ranges as asked.
    """
    config = client.config
    connections = config.max_connections_per_download
    pieces = _Pieces(writer.missing(), max(config.parallel_download_chunk_size, 1), connections)
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
            return None if stopped() else pieces.take()

    def fetch(piece: _Piece, first: requests.Response | None) -> None:
        """Fetch ``piece``, whose end the coordinating thread may move closer (a split)."""
        backoff = Backoff(f"download of {descriptor.digest} (bytes {piece.start}-{piece.end - 1})", attempts)
        while piece.position < piece.end and not stopped():
            position = piece.position
            try:
                response = first or client.open_blob(repository, descriptor.digest, position, piece.end)
                first = None
                with lock:
                    open_responses.add(response)
                try:
                    with response:
                        got_end = _check_range(response, position, piece.end, size)
                        too_much = _too_much(client, descriptor, position)
                        rate = client.transfer_rate(f"{client.endpoint.url}: blob {descriptor.digest} "
                                                    f"(bytes {position}-{got_end - 1})")
                        for data in iter_body(response, got_end - position, too_much, rate, decode=False,
                                               chunk_size=BODY_CHUNK):
                            if stopped():
                                return
                            end = piece.end  # the coordinating thread may have split the piece
                            if position + len(data) > end:
                                data = memoryview(data)[:end - position]
                            writer.write_at(position, data)
                            position = piece.position = position + len(data)
                            progress.set()  # the coordinating thread hashes what is held
                            if position >= end:
                                break
                finally:
                    with lock:
                        open_responses.discard(response)
            except (requests.RequestException, RegistryUnreachable) as exc:
                if stopped():
                    return
                log.debug("%s: range %d-%d interrupted at %d: %s", layer_id, piece.start, piece.end - 1,
                          piece.position, exc)
                backoff.failed(exc)
                emit(ProgressEvent(layer_id, f"Retrying (resuming at {writer.held_bytes()} bytes)"))
                backoff.wait()

    def work(first_piece=None, first_response=None) -> None:
        try:
            piece = first_piece or take()
            while piece is not None:
                fetch(piece, first_response)
                first_response = None
                piece = take()
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinating thread
            if not stop.is_set():
                with lock:
                    failed.append(exc)
                stop.set()
        finally:
            progress.set()

    writer.on_hashed = hasher.update if hasher is not None else None
    first_piece = pieces.take(whole=True)  # one connection first: the whole first gap
    if first_piece is None:
        writer.hash_held()
        return
    response = client.open_blob(repository, descriptor.digest, first_piece.start, first_piece.end)
    try:
        _check_range(response, first_piece.start, first_piece.end, size)
    except _RangesRefused as refused:
        if response.status_code == 200 and first_piece.start == 0 and not writer.held_bytes():
            refused.response = response  # the whole blob is coming: read it as one stream
        else:
            response.close()
        raise
    except BaseException:
        response.close()
        raise
    workers = [threading.Thread(target=work, args=(first_piece, response), name="range", daemon=True)]
    workers[0].start()
    reported = -PROGRESS_STEP
    saved = started = time.monotonic()
    start_held = writer.held_bytes()
    spread = connections <= 1
    behind = False  # held bytes wait to be hashed
    try:
        while True:
            if not behind:
                progress.wait(SAVE_EVERY)
            progress.clear()
            # in steps, so that the probe, progress and saves come on time while hashing
            # (and a diffID pipeline) lag behind the connections
            behind = writer.hash_held(HASH_STEP)
            held = writer.held_bytes()
            if held - reported >= PROGRESS_STEP or held == size:
                reported = held
                emit(ProgressEvent(layer_id, "Downloading", held, size))
            now = time.monotonic()
            if not spread and now - started >= PROBE_SECONDS:
                # One connection that is slow is likely held back on its own: add more.
                spread = True
                rate = (held - start_held) / (now - started)
                extra = 0
                if rate < FAST_CONNECTION:
                    with lock:
                        pieces.split(first_piece)  # the first connection keeps one chunk more
                        extra = min(connections - 1, pieces.count_left())
                log.debug("%s: one connection brings %.0f bytes/s; %d more", layer_id, rate, extra)
                for _ in range(extra):
                    workers.append(threading.Thread(target=work, name="range", daemon=True))
                    workers[-1].start()
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
    writer.hash_held()
    if writer.offset != size:
        raise RegistryUnreachable(f"download of {descriptor.digest}: ranges ended at {writer.offset} of "
                                  f"{size} bytes")


class _Piece:
    """A range one connection fetches: ``[start, end)``, ``position`` reached so far."""

    def __init__(self, start: int, end: int):
        self.start = self.position = start
        self.end = end


class _Pieces:
    """The ranges still to ask for, handed out in order: ``chunk`` bytes each, and
    smaller ones (down to :data:`MIN_PIECE`) as the end nears (guided scheduling), so
    that the connections finish together and the last bytes to hash after the last one
    arrives are few."""

    def __init__(self, gaps: list[tuple[int, int]], chunk: int, connections: int):
        self._gaps = collections.deque(gaps)
        self._chunk = chunk
        self._connections = max(connections, 1)
        self._left = sum(end - start for start, end in gaps)

    def count_left(self) -> int:
        """How many pieces are left at least (each at most ``chunk`` bytes)."""
        return -(-self._left // self._chunk)

    def take(self, whole: bool = False) -> _Piece | None:
        """The next piece; ``whole``: all of the next gap (for the first connection)."""
        if not self._gaps:
            return None
        start, end = self._gaps[0]
        size = min(self._chunk, max(min(MIN_PIECE, self._chunk), self._left // (2 * self._connections)))
        piece = _Piece(start, end if whole else min(end, start + size))
        if piece.end == end:
            self._gaps.popleft()
        else:
            self._gaps[0] = (piece.end, end)
        self._left -= piece.end - piece.start
        return piece

    def split(self, piece: _Piece) -> None:
        """Leave ``piece`` up to the chunk boundary after the next one (counted from its
        start) and hand out the rest of it."""
        chunks = (piece.position - piece.start) // self._chunk + 2
        cut = min(piece.end, piece.start + chunks * self._chunk)
        if cut < piece.end:
            self._gaps.appendleft((cut, piece.end))
            self._left += piece.end - cut
            piece.end = cut


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
