"""Benchmark a pull from a real local registry: contentstore against skopeo, same run.

Starts docker-registry on loopback, pushes an image of random (incompressible) layers
with skopeo, then times, alternately and from empty destinations:

- ``contentstore pull REF`` (verifies digests and every layer's diffID, which means
  decompressing every layer), and
- ``skopeo copy docker://REF oci:DIR:tag`` (verifies digests; decompresses nothing).

It prints the best time of each, their ratio, and the peak RSS of the contentstore
process, for two layer sizes so that memory growth with blob size would show.

    python benchmarks/bench_pull.py [--mib 512] [--layers 4] [--rounds 2]
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
from contentstore.testing import push, start_registry


def random_layer(size: int) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def build(store: Store, name: str, layer_sizes: list[int]) -> None:
    image_from_layers(store, name, [(*random_layer(size), mt.OCI_LAYER_GZIP) for size in layer_sizes])

def timed_child(args: list[str]) -> tuple[float, int | None]:
    """Run ``args``; return seconds and its peak RSS in MiB (through GNU time, if there).

    GNU time measures the process itself; the rusage of a direct child would count the
    pages it shares with this (large) benchmark process between fork and exec.
    """
    gnu_time = shutil.which("time") if Path("/usr/bin/time").exists() else None
    report = tempfile.NamedTemporaryFile(mode="r", suffix=".rss")
    wrapped = [gnu_time, "-f", "%M", "-o", report.name, *args] if gnu_time else args
    start = time.perf_counter()
    proc = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {proc.stderr.decode()}")
    text = report.read().strip().splitlines()
    return elapsed, int(text[-1]) // 1024 if text and text[-1].isdigit() else None


def compare(work: Path, registry, name: str, rounds: int) -> None:
    ref = f"{registry.host}/bench/{name}:1"
    cs_times, sk_times, rss = [], [], 0
    for i in range(rounds):
        root, dest = work / f"cs-{name}-{i}", work / f"sk-{name}-{i}"
        seconds, peak = timed_child([sys.executable, "-m", "contentstore", "--root", str(root), "-q", "pull", ref])
        cs_times.append(seconds)
        rss = max(rss, peak or 0)
        seconds, _ = timed_child(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                  f"docker://{ref}", f"oci:{dest}:bench"])
        sk_times.append(seconds)
        shutil.rmtree(root)
        shutil.rmtree(dest)
    cs, sk = min(cs_times), min(sk_times)
    print(f"{name}: contentstore {cs:.2f}s, skopeo {sk:.2f}s, ratio {cs / sk:.2f}; "
          f"contentstore peak RSS {rss} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512, help="total size of the large image")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cs-bench-pull-", dir=args.dir))
    registry = start_registry(work / "registry")
    try:
        source = Store(work / "source")
        small = max(1, args.mib // 8)
        build(source, "small", [small * (1 << 20) // args.layers] * args.layers)
        build(source, "large", [args.mib * (1 << 20) // args.layers] * args.layers)
        for name in ("small", "large"):
            push(f"oci:{source.root}:docker.io/library/{name}:latest", registry, f"bench/{name}:1")
        print(f"image 'small': {small} MiB, 'large': {args.mib} MiB, {args.layers} layers each "
              f"(random data, gzip)")
        compare(work, registry, "small", args.rounds)
        compare(work, registry, "large", args.rounds)
        return 0
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
