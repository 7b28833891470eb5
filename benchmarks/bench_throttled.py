"""One large layer through a link that throttles each connection: contentstore (its
layer over several connections, parallel ``Range`` requests) against skopeo (one
connection per layer), through the same proxy, same run.

Starts a Debian ``docker-registry`` on loopback, pushes an image of one layer of
``--mib`` MiB of random data (gzip), and puts :mod:`throttle` in front of it, capping
each connection at ``--rate`` bytes a second. Then, in alternating rounds from empty
destinations, each timed until its data is on disk (a final ``sync``):

- ``contentstore pull`` (defaults: up to 4 connections for a blob over 64 MiB);
- ``contentstore pull`` with ``max_connections_per_download = 1`` (one stream, for
  reference);
- ``skopeo copy docker://PROXY/REF oci:DIR:t``.

It prints each one's median, the median per-round ratios, and peak RSS.

    python benchmarks/bench_throttled.py [--mib 512] [--rate 20000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

from common import CONTENTSTORE, Contest, alternate, fresh, run_synced
from throttle import Throttle

from contentstore import Store
from contentstore.model import mediatypes as mt
from contentstore.testing import push, start_registry


def random_gzip_layer(size: int, work: Path) -> tuple[Path, str]:
    """A gzip layer file holding a tar of ``size`` random bytes, written in pieces (the
    fastest gzip installed: building it is not what is measured); and its diffID."""
    import hashlib
    import tarfile

    try:
        from isal import isal_zlib as deflate_module
    except ImportError:
        deflate_module = zlib
    path = work / "layer.tar.gz"
    diff_id = hashlib.sha256()
    compressor = deflate_module.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        def emit(data: bytes) -> None:
            diff_id.update(data)
            out.write(compressor.compress(data))
        info = tarfile.TarInfo("data.bin")
        info.size = size
        emit(info.tobuf(tarfile.PAX_FORMAT))
        remaining = size
        while remaining:
            n = min(remaining, 8 << 20)
            emit(os.urandom(n))
            remaining -= n
        emit(b"\0" * (-size % 512 + 1024))
        out.write(compressor.flush())
    return path, "sha256:" + diff_id.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512, help="size of the one layer")
    parser.add_argument("--rate", type=float, default=20e6, help="bytes a second, each connection")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--dir", default=None, help="where to work (default: a temporary directory)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cs-bench-throttled-", dir=args.dir))
    registry = start_registry(work / "registry")
    throttle = None
    try:
        source = Store(work / "source")
        layer, diff_id = random_gzip_layer(args.mib << 20, work)
        with open(layer, "rb") as f:
            info = source.put(f)
        layer.unlink()
        config = source.put(json.dumps({"architecture": "amd64", "os": "linux",
                                        "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
        manifest = source.put(json.dumps({
            "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": info.digest, "size": info.size}]}).encode())
        source.tag(manifest.digest, "example.com/big:1")
        push(f"oci:{source.root}:example.com/big:1", registry, "bench/big:1")
        throttle = Throttle(("127.0.0.1", registry.port), args.rate).start()
        ref = f"{throttle.address}/bench/big:1"
        single = work / "single.toml"
        single.write_text("max_connections_per_download = 1\n")
        print(f"image: one gzip layer of {info.size / (1 << 20):.0f} MiB (random data); each connection "
              f"capped at {args.rate / 1e6:.0f} MB/s", flush=True)
        tools = {
            "contentstore pull": lambda r: run_synced(
                [*CONTENTSTORE, "--root", str(fresh(work / "cs")), "-q", "pull", ref]),
            "contentstore pull (1 connection)": lambda r: run_synced(
                [*CONTENTSTORE, "--root", str(fresh(work / "cs1")), "--config", str(single), "-q", "pull", ref]),
            "skopeo copy": lambda r: run_synced(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                                 f"docker://{ref}", f"oci:{fresh(work / 'sk')}:t"]),
        }
        contest = alternate(Contest("pull through a per-connection cap"), tools, args.rounds)
        print(contest.report("contentstore pull", ["skopeo copy", "contentstore pull (1 connection)"]))
        print(f"  speed-up over skopeo: {1 / contest.ratio('contentstore pull', 'skopeo copy'):.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps({contest.name: contest.as_json()}, indent=2))
        return 0
    finally:
        if throttle is not None:
            throttle.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
