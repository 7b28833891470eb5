"""Sync between two local registries: ``contentstore sync`` against ``skopeo sync``, same run.

One repository of ``--images`` images (20 by default) that share layers as a team's
images do: one base layer of real files (the Python standard library, capped at
``--base-mib``) in every image, one of four middle layers (``/usr/share`` files) in each
quarter of them, and a small layer of its own in each. They are pushed to a Debian
``docker-registry`` on loopback. Then, in alternating rounds, each tool:

- syncs the repository (every tag) to a fresh second registry, timed until its writes
  are on disk (a final ``sync``): ``contentstore sync SRC/bench/app DEST`` from an empty
  store (every blob passes through it, verified) against ``skopeo sync --src docker
  --dest docker SRC/bench/app DEST/bench`` (which streams registry to registry);
- syncs it again, now up to date (the re-sync a mirror runs on a timer).

It checks that both destinations hold the source's digests, and prints each tool's
median, the median per-round ratio, and peak RSS. contentstore runs as an installed
package does, from cached bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped and the
package compiled before the rounds): the up-to-date re-sync takes well under a second,
and compiling the modules on every start would be a good part of it.

    python benchmarks/bench_sync.py [--images 20] [--base-mib 24] [--rounds 3] [--jobs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CONTENTSTORE, LAYER_TYPES, Contest, build_layer, files_of, fresh, python_stdlib, run_synced

import contentstore
from contentstore import Store
from contentstore.model import mediatypes as mt
from contentstore.testing import push, start_registry


def layer_of(store: Store, paths: list[Path], work: Path) -> tuple[dict, str]:
    path, diff_id = build_layer(paths, "gzip", work)
    with open(path, "rb") as f:
        info = store.put(f)
    path.unlink()
    return {"mediaType": LAYER_TYPES["gzip"], "digest": info.digest, "size": info.size}, diff_id


def unique_layer(store: Store, n: int, work: Path) -> tuple[dict, str]:
    directory = work / f"own-{n}"
    directory.mkdir()
    (directory / "app.bin").write_bytes(os.urandom(256 * 1024))
    (directory / "version").write_text(f"{n}\n")
    try:
        return layer_of(store, [directory, directory / "app.bin", directory / "version"], work)
    finally:
        shutil.rmtree(directory)


def build_images(store: Store, count: int, base_mib: int, work: Path) -> dict:
    base = layer_of(store, files_of([python_stdlib()], base_mib << 20), work)
    share = files_of([Path("/usr/share")], 16 << 20)
    quarter = -(-len(share) // 4)
    middles = [layer_of(store, share[i * quarter:(i + 1) * quarter], work) for i in range(4)]
    sizes = {"base": base[0]["size"], "middle": sum(m[0]["size"] for m in middles), "own": 0}
    for n in range(count):
        own = unique_layer(store, n, work)
        sizes["own"] += own[0]["size"]
        layers = [base, middles[n * 4 // count], own]
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": [f"N={n}"]},
                             "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}).encode()
        config_info = store.put(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                               "config": {"mediaType": mt.OCI_CONFIG, "digest": config_info.digest,
                                          "size": config_info.size},
                               "layers": [descriptor for descriptor, _ in layers]}).encode()
        store.tag(store.put(manifest).digest, f"docker.io/bench/app:{n + 1}")
    return sizes


def digests(host: str, repository: str, tags: list[str]) -> dict[str, str]:
    found = {}
    for tag in tags:
        out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repository}:{tag}"],
                             check=True, capture_output=True).stdout
        found[tag] = out
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--base-mib", type=int, default=24, help="uncompressed size of the shared base layer")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4, help="contentstore sync -j")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--json", metavar="FILE", help="also write the runs as JSON")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import contentstore_plugins

    for package in (contentstore, contentstore_plugins):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(package.__file__).parent)], check=True)
    work = Path(tempfile.mkdtemp(prefix="cs-bench-sync-", dir=args.dir))
    registries = []
    try:
        source = start_registry(work / "source-registry")
        registries.append(source)
        layout = Store(work / "layout")
        sizes = build_images(layout, args.images, args.base_mib, work)
        tags = [str(n + 1) for n in range(args.images)]
        for tag in tags:
            push(f"oci:{layout.root}:docker.io/bench/app:{tag}", source, f"bench/app:{tag}")
        expected = digests(source.host, "bench/app", tags)
        print(f"{args.images} images in one repository: shared base layer {sizes['base'] / 1e6:.1f} MB, "
              f"4 middle layers {sizes['middle'] / 1e6:.1f} MB, own layers {sizes['own'] / 1e6:.1f} MB "
              f"(gzip); contentstore -j {args.jobs}")

        cold, warm = Contest("sync to a fresh registry"), Contest("up-to-date re-sync")
        tools = ["contentstore sync", "skopeo sync"]
        for round_number in range(args.rounds):
            order = tools[round_number % 2:] + tools[:round_number % 2]
            for tool in order:
                dest = start_registry(fresh(work / f"dest-{round_number}-{tool.split()[0]}"))
                registries.append(dest)
                if tool == "contentstore sync":
                    root = fresh(work / f"store-{round_number}")
                    command = [*CONTENTSTORE, "--root", str(root), "-q", "sync", f"{source.host}/bench/app",
                               dest.host, "-j", str(args.jobs)]
                else:
                    command = ["skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
                               "--dest-tls-verify=false", f"{source.host}/bench/app", f"{dest.host}/bench"]
                cold.add(tool, run_synced(command))
                warm.add(tool, run_synced(command))
                if digests(dest.host, "bench/app", tags) != expected:
                    raise SystemExit(f"{tool}: the destination's manifests differ from the source's")
                dest.stop()
                registries.remove(dest)
                shutil.rmtree(dest.directory, ignore_errors=True)
                if tool == "contentstore sync":
                    shutil.rmtree(root, ignore_errors=True)
        print(cold.report("contentstore sync", ["skopeo sync"]))
        print(warm.report("contentstore sync", ["skopeo sync"]))
        if args.json:
            Path(args.json).write_text(json.dumps({"cold": cold.as_json(), "warm": warm.as_json()}, indent=2))
        return 0
    finally:
        for registry in registries:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
