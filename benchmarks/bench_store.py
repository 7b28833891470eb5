"""Benchmark the blob store: small-blob puts/s and exists/s, and 1 GiB put MB/s.

The large put is compared, in the same run and on the same file, with what any tool must
at least do: hash the file (``sha256sum``) and copy it (``cp``) then ``sync`` it. The
ratio is what counts; absolute figures depend on the machine.

    python benchmarks/bench_store.py [--small 10000] [--large-mib 1024] [--dir DIR]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contentstore import Store


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def make_file(path: Path, mib: int) -> None:
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(chunk[i % 256:] + chunk[: i % 256])  # distinct chunks, cheap to make


def baseline(source: Path, dest: Path) -> float:
    def run():
        subprocess.run(["sha256sum", str(source)], check=True, capture_output=True)
        subprocess.run(["cp", str(source), str(dest)], check=True)
        subprocess.run(["sync", str(dest)], check=True)
    seconds, _ = timed(run)
    dest.unlink()
    return seconds


def store_put(store: Store, source: Path) -> float:
    def run():
        with open(source, "rb") as f:
            return store.put(f)
    seconds, info = timed(run)
    store.delete(info.digest)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000, help="number of small blobs")
    parser.add_argument("--large-mib", type=int, default=1024, help="size of the large blob in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the large put (best counts)")
    parser.add_argument("--dir", default=None, help="where to work (default: a temp dir)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cs-bench-", dir=args.dir))
    try:
        store = Store(work / "store")
        blobs = [f"small blob {i}".encode() * 8 for i in range(args.small)]
        put_s, infos = timed(lambda: [store.put(b) for b in blobs])
        exists_s, found = timed(lambda: sum(store.exists(i.digest) for i in infos))
        assert found == args.small
        print(f"small blobs: {args.small} puts in {put_s:.2f}s = {args.small / put_s:,.0f} puts/s; "
              f"exists {args.small / exists_s:,.0f}/s")

        source = work / "large.bin"
        make_file(source, args.large_mib)
        size_mb = args.large_mib * (1 << 20) / 1e6
        base_runs, put_runs = [], []
        for _ in range(args.rounds):  # interleaved, so cache and disk state are alike for both
            base_runs.append(baseline(source, work / "copy.bin"))
            put_runs.append(store_put(store, source))
        base, put = min(base_runs), min(put_runs)
        print(f"large blob: {args.large_mib} MiB; sha256sum+cp+sync {size_mb / base:,.0f} MB/s; "
              f"Store.put {size_mb / put:,.0f} MB/s")
        ratio = put / base
        print(f"ratio (Store.put time / sha256sum+cp time): {ratio:.2f} (target <= 1.5)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
