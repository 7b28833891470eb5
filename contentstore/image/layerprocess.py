"""A layer blob hashed and decompressed by a process of its own, as ``tar -z`` runs gzip.

The thread of :class:`~contentstore.image.layerstream.LayerStream` shares the GIL with
the thread applying entries, which runs Python nearly all the time: every time an
inflater or a hasher gives the GIL back (ISA-L and hashlib do so inside each call) the
producer then waits for the switch interval to get it again, and a layer inflates three
to four times slower than alone. A child process has a GIL of its own. containerd does
the same with ``unpigz`` when it is installed.

The child (``python -m contentstore.image.layerprocess COMPRESSION BLOB_ALGO DIFF_ALGO``)
reads the blob on its standard input, hashes it, decompresses it, hashes the result and
writes it to its standard output; at the end, on standard error, one JSON line with
both digests and, if the blob did not decompress, why. It reads the whole blob even when
decompression fails, so that a damaged blob is reported as a digest mismatch. The
parent checks the digests: the child is told nothing of what to expect.

:class:`LayerProcess` has the interface of ``LayerStream``; :func:`layer_source` picks
the process when the blob is a file on disk and the thread otherwise.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Callable

from contentstore.errors import DigestMismatch, UnpackError, VerificationError
from contentstore.image.layerstream import LayerStream
from contentstore.model.digest import Digest

#: Bytes read from the child's pipe at a time (and the pipe's capacity, where allowed).
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class LayerProcess:
    """The uncompressed bytes of one layer blob (an open file), produced by a child
    process; the interface of :class:`~contentstore.image.layerstream.LayerStream`."""

    def __init__(self, blob: BinaryIO, compression: str, digest: str | None, diff_id: str | None,
                 name: str | None = None):
        self._digest = digest
        self._diff_id = diff_id
        self.name = name or digest or "layer"
        algorithms = [Digest(d).algorithm if d else "-" for d in (digest, diff_id)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "contentstore.image.layerprocess", compression, *algorithms],
            stdin=blob, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)
        self._out = self._process.stdout.fileno()
        try:
            fcntl.fcntl(self._out, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # a lower limit (/proc/sys/fs/pipe-max-size): the default is fine
            pass
        self._ended = False
        self._status: dict | None = None

    def next_chunk(self) -> bytes:
        if self._ended:
            return b""
        data = os.read(self._out, PIPE_SIZE)
        if not data:
            self._ended = True
        return data

    def drain(self) -> None:
        while self.next_chunk():
            pass

    def _finish(self) -> dict:
        if self._status is None:
            self.drain()
            report = self._process.stderr.read()
            code = self._process.wait()
            lines = report.decode("utf-8", "replace").strip().splitlines()
            try:
                status = json.loads(lines[-1]) if code == 0 and lines else None
            except ValueError:
                status = None
            if not isinstance(status, dict):
                detail = lines[-1] if lines else f"exit status {code}"
                raise UnpackError(f"layer {self.name}: the decompressing process failed: {detail}")
            self._status = status
        return self._status

    def check_blob(self) -> None:
        status = self._finish()
        if self._digest and status.get("digest") != self._digest:
            raise DigestMismatch(self._digest, status.get("digest"), f"layer {self.name}")

    def check(self) -> None:
        self.check_blob()
        status = self._finish()
        if status.get("error"):
            raise UnpackError(f"layer {self.name} does not decompress: {status['error']}")
        if self._diff_id and status.get("diff_id") != self._diff_id:
            raise DigestMismatch(self._diff_id, status.get("diff_id"), f"uncompressed layer {self.name}")

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()
        self._process.stderr.close()

    def __enter__(self) -> LayerProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def layer_source(open_blob: Callable[[], AbstractContextManager[BinaryIO]], compression: str,
                 digest: str | None, diff_id: str | None, name: str | None = None):
    """A :class:`LayerProcess` for a compressed blob that is a file on disk, else a
    :class:`~contentstore.image.layerstream.LayerStream` (uncompressed layers have
    nothing to inflate; a blob that is no file cannot be handed to a child)."""
    if compression in ("gzip", "zstd") and sys.executable:
        with open_blob() as blob:
            try:
                blob.fileno()
            except (AttributeError, OSError, ValueError):
                pass
            else:
                return LayerProcess(blob, compression, digest, diff_id, name)
    return LayerStream(open_blob, compression, digest, diff_id, name)


def _child(compression: str, blob_algorithm: str, diff_algorithm: str) -> int:
    """The child's work (see the module)."""
    import hashlib
    import zlib

    import zstandard

    from contentstore.image.compression import decompressor

    blob_hasher = hashlib.new(blob_algorithm) if blob_algorithm != "-" else None
    diff_hasher = hashlib.new(diff_algorithm) if diff_algorithm != "-" else None
    inflater = decompressor(compression)
    error: str | None = None
    reader_gone = False

    def emit(data: bytes) -> None:
        nonlocal reader_gone
        if diff_hasher is not None:
            diff_hasher.update(data)
        if reader_gone:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(1, view):]
        except BrokenPipeError:  # the parent stopped reading: hash on, for the digest
            reader_gone = True

    failures = (zlib.error, zstandard.ZstdError, EOFError, VerificationError, ValueError)
    while data := os.read(0, PIPE_SIZE):
        if blob_hasher is not None:
            blob_hasher.update(data)
        if error is None:
            try:
                inflater.feed(data, emit)
            except failures as exc:
                error = str(exc) or type(exc).__name__
    if error is None:
        try:
            tail = inflater.finish()
            if tail:
                emit(tail)
        except failures as exc:
            error = str(exc) or type(exc).__name__
    os.close(1)
    status = {"digest": f"{blob_algorithm}:{blob_hasher.hexdigest()}" if blob_hasher else None,
              "diff_id": f"{diff_algorithm}:{diff_hasher.hexdigest()}" if diff_hasher else None,
              "error": error}
    sys.stderr.write(json.dumps(status) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:4]))
