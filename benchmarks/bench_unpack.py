"""Benchmark unpack: ``contentstore unpack`` against ``umoci unpack --rootless``, same run.

Builds an image of about ``--mib`` MiB (several gzip layers of large and small files,
half of the bytes random, half text-like) in a contentstore root, which is an OCI layout
that umoci reads as it is, then times both unpacks of the same image from it, alternately,
into fresh directories. Prints the best time of each and the ratio (target <= 1.0).

    python benchmarks/bench_unpack.py [--mib 1024] [--layers 4] [--rounds 2]
"""

import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from contentstore import Store
from contentstore import mediatypes as mt
from contentstore.testing import image_from_layers

TEXT = b"".join(b"line %d of some text-like content that compresses well\n" % i for i in range(20000))


def layer(size: int, index: int) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        written, n = 0, 0
        while written < size:
            n += 1
            if n % 10 == 0:  # every tenth entry a directory of small files
                for j in range(50):
                    data = TEXT[: 500 + j * 37]
                    info = tarfile.TarInfo(f"layer{index}/small{n}/file{j}.txt")
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
                    written += len(data)
                continue
            chunk = 4 << 20
            data = os.urandom(chunk // 2) + TEXT[: chunk // 2] * 1
            info = tarfile.TarInfo(f"layer{index}/big{n}.bin")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
            written += len(data)
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def build(store: Store, ref: str, mib: int, layers: int) -> None:
    image_from_layers(store, ref, [(*layer(mib * (1 << 20) // layers, i), mt.OCI_LAYER_GZIP)
                                   for i in range(layers)])

def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    if not shutil.which("umoci"):
        raise SystemExit("umoci is not installed")
    work = Path(tempfile.mkdtemp(prefix="cs-bench-unpack-", dir=args.dir))
    try:
        store = Store(work / "store")
        ref = "example.com/bench/unpack:1"
        build(store, ref, args.mib, args.layers)
        ours, theirs = [], []
        for i in range(args.rounds):
            ours.append(timed([sys.executable, "-m", "contentstore", "--root", str(store.root), "-q",
                               "unpack", ref, str(work / f"ours{i}")]))
            theirs.append(timed(["umoci", "unpack", "--rootless", "--image", f"{store.root}:{ref}",
                                 str(work / f"theirs{i}")]))
            shutil.rmtree(work / f"ours{i}")
            shutil.rmtree(work / f"theirs{i}")
        best_ours, best_theirs = min(ours), min(theirs)
        print(f"image: {args.mib} MiB in {args.layers} gzip layers")
        print(f"contentstore unpack {best_ours:.2f}s, umoci unpack --rootless {best_theirs:.2f}s, "
              f"ratio {best_ours / best_theirs:.2f} (target <= 1.0)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
