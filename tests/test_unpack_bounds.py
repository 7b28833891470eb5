"""unpack is linear in time and bounded in memory whatever the compression ratio
(issue 11): each layer is unpacked in a child process whose wall time, user CPU time
and peak RSS are measured. The previous code took 52 s (quadratic copying in tarfile's
gzip stream) for the 20,000 files and could not unpack the gigabyte of zeros, which it
inflated a megabyte of input at a time into one buffer."""

import gzip
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import pytest

from contentstore import Store
from contentstore.model import mediatypes as mt
from contentstore.testing import image_from_layers

MiB = 1 << 20
RSS_BOUND = 64 * MiB  # Python with contentstore imported is about 30 MiB

# The child's own peak (VmHWM of its address space): ru_maxrss would also count the
# pages of the forked test process before exec.
CHILD = ("import sys; from contentstore import Store; "
         "Store(sys.argv[1]).unpack(sys.argv[2], sys.argv[3], rootless=True); "
         "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))")


def measured_unpack(store: Store, ref: str, target: Path, wall_bound: float):
    """Unpack in a child; returns (wall seconds, user CPU seconds, peak RSS bytes). A child
    still running after ``wall_bound`` is killed and the test fails."""
    start = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(store.root), ref, str(target)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > wall_bound:
            os.kill(child.pid, signal.SIGKILL)
            os.wait4(child.pid, 0)
            pytest.fail(f"unpack still running after {wall_bound:.0f} s")
        time.sleep(0.05)
    wall = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, child.stderr.read().decode(errors="replace")
    peak_kib = int(child.stdout.read())
    child.stdout.close()
    child.stderr.close()
    print(f"unpack: {wall:.2f} s wall, {usage.ru_utime:.2f} s user, {peak_kib / 1024:.0f} MiB peak RSS")
    return wall, usage.ru_utime, peak_kib * 1024


@pytest.fixture
def fast_dir(tmp_path):
    """Where 20,000 files are written: memory when the machine has it (this measures our
    work per entry, not how the disk of the moment creates files), else tmp_path."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="cs-unpack-bounds-", dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) \
        else tmp_path / "fast"
    base.mkdir(exist_ok=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_20000_one_byte_files(tmp_path, fast_dir):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(20_000):
            info = tarfile.TarInfo(f"d{i // 1000}/f{i}")
            info.size, info.mtime = 1, 1_700_000_000
            tar.addfile(info, io.BytesIO(b"x"))
    layer = raw.getvalue()
    store = Store(tmp_path / "store")
    image_from_layers(store, "example.com/bounds/files:1",
                      [(gzip.compress(layer, compresslevel=1, mtime=0),
                        "sha256:" + hashlib.sha256(layer).hexdigest(), mt.OCI_LAYER_GZIP)])
    target = fast_dir / "rootfs"
    wall, user, rss = measured_unpack(store, "example.com/bounds/files:1", target, wall_bound=20)
    assert sum(len(files) for _, _, files in os.walk(target)) == 20_000
    assert user < 10, f"{user:.1f} s of user CPU time"
    assert rss < RSS_BOUND, f"peak RSS {rss / MiB:.0f} MiB"


def test_one_gibibyte_of_zeros(tmp_path):
    """One file of 1 GiB of zeros: 4.5 MiB of gzip (one member, level 1)."""
    size = 1 << 30
    info = tarfile.TarInfo("disk.img")
    info.size, info.mtime, info.mode = size, 1_700_000_000, 0o644
    header = info.tobuf(tarfile.PAX_FORMAT)
    tail = bytes(1024)
    tail += bytes(-(len(header) + size + len(tail)) % tarfile.RECORDSIZE)
    deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    diff_id = hashlib.sha256(header)
    blob = [deflate.compress(header)]
    zeros = bytes(MiB)
    for _ in range(size // MiB):
        blob.append(deflate.compress(zeros))
        diff_id.update(zeros)
    blob += [deflate.compress(tail), deflate.flush()]
    diff_id.update(tail)
    store = Store(tmp_path / "store")
    image_from_layers(store, "example.com/bounds/zeros:1",
                      [(b"".join(blob), "sha256:" + diff_id.hexdigest(), mt.OCI_LAYER_GZIP)])
    del blob
    target = tmp_path / "rootfs"
    try:
        wall, user, rss = measured_unpack(store, "example.com/bounds/zeros:1", target, wall_bound=60)
        assert os.path.getsize(target / "disk.img") == size
        assert user < 30, f"{user:.1f} s of user CPU time"
        assert rss < RSS_BOUND, f"peak RSS {rss / MiB:.0f} MiB"
    finally:
        shutil.rmtree(target, ignore_errors=True)
