"""Pull of random-data images from a real local registry: contentstore against skopeo
and a plain curl floor, same run.

Starts docker-registry on loopback, pushes two images of random (incompressible) gzip
layers with skopeo, ``small`` (``--mib`` / 8) and ``large`` (``--mib``), each in
``--layers`` layers; then, in alternating rounds from empty destinations, each timed
until its data is on disk (a final ``sync``):

- ``contentstore pull REF`` (every blob's digest verified as it arrives; a layer over
  64 MiB over several connections);
- ``contentstore pull --verify-diffids REF`` (every layer inflated and its diffID
  checked too);
- ``skopeo copy docker://REF oci:DIR:t`` (verifies digests; decompresses nothing);
- ``curl`` of the same blobs in parallel, no checks (the floor).

It prints each tool's median, the median per-round ratios and peak RSS, for both
sizes, so that memory growing with blob size would show.

    python benchmarks/bench_pull.py [--mib 1024] [--layers 8] [--rounds 3]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from common import CONTENTSTORE, Contest, alternate, blob_urls, curl_floor, fresh, run_synced

from contentstore import Store
from contentstore import mediatypes as mt
from contentstore.testing import image_from_layers, push, start_registry


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


def compare(work: Path, registry, source: Store, name: str, rounds: int) -> Contest:
    ref = f"{registry.host}/bench/{name}:1"
    urls = blob_urls(registry.url, f"bench/{name}", source, f"docker.io/library/{name}:latest")
    tools = {
        "contentstore pull": lambda r: run_synced([*CONTENTSTORE, "--root", str(fresh(work / "cs")), "-q",
                                                   "pull", ref]),
        "contentstore pull --verify-diffids": lambda r: run_synced(
            [*CONTENTSTORE, "--root", str(fresh(work / "csv")), "-q", "pull", "--verify-diffids", ref]),
        "skopeo copy": lambda r: run_synced(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                             f"docker://{ref}", f"oci:{fresh(work / 'sk')}:t"]),
        "curl (floor)": lambda r: run_synced(curl_floor(urls, fresh(work / "curl"))),
    }
    contest = alternate(Contest(f"pull {name}"), tools, rounds)
    for leftover in ("cs", "csv", "sk", "curl"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    return contest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="total size of the large image")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cs-bench-pull-", dir=args.dir))
    registry = start_registry(work / "registry")
    results = {}
    try:
        source = Store(work / "source")
        small = max(1, args.mib // 8)
        build(source, "docker.io/library/small:latest", [small * (1 << 20) // args.layers] * args.layers)
        build(source, "docker.io/library/large:latest", [args.mib * (1 << 20) // args.layers] * args.layers)
        for name in ("small", "large"):
            push(f"oci:{source.root}:docker.io/library/{name}:latest", registry, f"bench/{name}:1")
        print(f"image 'small': {small} MiB, 'large': {args.mib} MiB, {args.layers} layers each "
              f"(random data, gzip)", flush=True)
        for name in ("small", "large"):
            contest = compare(work, registry, source, name, args.rounds)
            print(contest.report("contentstore pull", ["skopeo copy", "curl (floor)"]), flush=True)
            print(f"  ratio contentstore pull --verify-diffids / skopeo copy: "
                  f"{contest.ratio('contentstore pull --verify-diffids', 'skopeo copy'):.2f}", flush=True)
            results[contest.name] = contest.as_json()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return 0
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
