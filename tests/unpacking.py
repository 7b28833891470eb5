"""Helpers for the unpack tests: layers from raw tar bytes, images made of them (in a
store, or through a real registry), a snapshot of everything outside the target, and
unpacking as root, as root with ``rootless=True``, or as an unprivileged user."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from contentstore import Store
from contentstore.errors import ContentStoreError
from contentstore.model import mediatypes as mt
from contentstore.testing import image_from_layers

NOBODY = 65534
#: root: privileged unpack; rootless: root asking for --rootless; nobody: a real
#: unprivileged user (uid 65534), in a child process that drops its privileges.
MODES = ("root", "rootless", "nobody")
MTIME = 1_700_000_000


def entry(name: str, kind: str = "file", data: bytes | str = b"", **fields) -> tuple[tarfile.TarInfo, bytes | None]:
    """One tar entry: kind is file, dir, symlink, hardlink, chr, blk or fifo; ``fields``
    set TarInfo attributes (mode, mtime, uid, gid, linkname, pax_headers …)."""
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                 "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                 "fifo": tarfile.FIFOTYPE}[kind]
    info.mode = 0o755 if kind == "dir" else 0o644
    body = None
    if kind == "file":
        body = data.encode() if isinstance(data, str) else data
        info.size = len(body)
    elif kind in ("symlink", "hardlink"):
        info.linkname = data if isinstance(data, str) else data.decode()
    for key, value in fields.items():
        setattr(info, key, value)
    return info, body


def tar_of(*entries, format=tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=format) as tar:
        for info, body in entries:
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return out.getvalue()


def layer_of(tar: bytes, compress: bool = False) -> tuple[bytes, str, str]:
    """``(blob, diffID, media type)`` for :func:`image_from_layers`."""
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    if compress:
        return gzip.compress(tar, compresslevel=1, mtime=0), diff_id, mt.OCI_LAYER_GZIP
    return tar, diff_id, mt.OCI_LAYER


def image(store: Store, ref: str, *tars: bytes, compress: bool = False) -> str:
    image_from_layers(store, ref, [layer_of(t, compress) for t in tars])
    return ref


def layer_digests(store: Store, ref: str) -> list[str]:
    return [str(layer.digest) for layer in store.image(ref).layers]


# -- what is outside the target ------------------------------------------------------------


def snapshot(root: Path) -> dict:
    """Every path under ``root`` (itself included) with type, mode, owner, times (ctime
    too: any chmod, chown or utime shows) and content or link target."""
    result = {".": _state(root)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            result[str(path.relative_to(root))] = _state(path)
    return result


def _state(path: Path) -> tuple:
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        content = os.readlink(path)
    else:
        content = None
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_ctime_ns, st.st_size, content)


# -- a place an unprivileged user can reach --------------------------------------------------


@pytest.fixture
def open_tmp():
    """A fresh directory that uid 65534 can traverse (pytest's tmp_path is 0700 root's);
    removed afterwards whatever its modes became."""
    path = Path(tempfile.mkdtemp(prefix="cs-unpack-test-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["chmod", "-R", "u+rwX", str(path)], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def give_to_nobody(*paths: Path) -> None:
    for path in paths:
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(path)], check=True)


_CHILD = r"""
import dataclasses, json, os, sys
from contentstore import Store
import contentstore.image.unpack  # imported while the source is surely readable
root, ref, target, uid = sys.argv[1:5]
store = Store(root)
os.setgroups([])
os.setgid(int(uid))
os.setuid(int(uid))
try:
    report = store.unpack(ref, target)
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "module": type(exc).__module__, "message": str(exc)}))
else:
    print(json.dumps({"report": dataclasses.asdict(report)}))
"""


class ChildError(Exception):
    """An error raised in the unprivileged child, by class name."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def unpack(mode: str, store: Store, ref: str, target: Path):
    """Unpack as ``mode`` (see :data:`MODES`); returns the report (a dict for nobody) or
    raises the error (for nobody a :class:`ChildError`, or the same contentstore class)."""
    if mode == "root":
        return store.unpack(ref, target, rootless=False)
    if mode == "rootless":
        return store.unpack(ref, target, rootless=True)
    assert mode == "nobody"
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")
    subprocess.run(["chmod", "-R", "a+rX", str(store.root)], check=True)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(store.root), ref, str(target), str(NOBODY)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "error" in result:
        import contentstore.errors as errors
        cls = getattr(errors, result["error"], None)
        if cls is not None and issubclass(cls, ContentStoreError) and result["module"] == errors.__name__:
            exc = cls.__new__(cls)
            Exception.__init__(exc, result["message"])
            raise exc
        raise ChildError(result["error"], result["message"])
    return result["report"]


def report_field(report, name: str):
    return report[name] if isinstance(report, dict) else getattr(report, name)


def asdict(report) -> dict:
    return report if isinstance(report, dict) else dataclasses.asdict(report)


@pytest.fixture(params=[0, 2], ids=["no-writers", "2-writers"])
def writers(request, monkeypatch):
    """Runs a test with and without writer threads (on by default only without a GIL),
    in this process and in the command lines it starts."""
    monkeypatch.setenv("CONTENTSTORE_UNPACK_WRITERS", str(request.param))
    return request.param
