"""Pull and unpack of images made from real file trees, against skopeo, umoci, GNU tar
and a plain curl floor, in the same run.

Images (``--images``, comma-separated):

- ``share-gzip``: this machine's ``/usr/share`` (capped at ``--mib``), one gzip layer;
- ``share-gzip-5``: the same files in five gzip layers;
- ``share-zstd``: the same files, one zstd layer;
- ``python-gzip``: the Python standard library (tens of thousands of small files), one
  gzip layer.

Each image is pushed to a Debian ``docker-registry`` on loopback. Then, in alternating
rounds from empty destinations, each timed until its data is on disk (a final ``sync``):

- pull: ``contentstore pull`` (every digest verified; with ``--verify-diffids`` as a second
  entry when the CLI has it), ``skopeo copy docker://REF oci:DIR:t``, and ``curl`` of the
  same blobs in parallel with no checks (the floor);
- unpack: ``contentstore unpack``, ``umoci unpack --rootless``, and GNU ``tar -x`` of
  the layers in order (which applies no whiteouts and checks nothing).

It prints each tool's median, the median per-round ratios, and peak RSS.

    python benchmarks/bench_realistic.py [--images share-gzip,python-gzip] [--mib 700] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    CONTENTSTORE,
    Contest,
    alternate,
    blob_urls,
    build_image,
    curl_floor,
    fresh,
    python_stdlib,
    run_synced,
)

from contentstore import Store
from contentstore.testing import push, start_registry

IMAGES = {
    "share-gzip": ([Path("/usr/share")], 1, "gzip"),
    "share-gzip-5": ([Path("/usr/share")], 5, "gzip"),
    "share-zstd": ([Path("/usr/share")], 1, "zstd"),
    "python-gzip": ([python_stdlib()], 1, "gzip"),
}


def has_verify_diffids() -> bool:
    out = subprocess.run([*CONTENTSTORE, "pull", "--help"], capture_output=True, text=True).stdout
    return "--verify-diffids" in out


def pull_contest(name: str, registry, source: Store, work: Path, rounds: int) -> Contest:
    ref = f"{registry.host}/bench/{name}:1"
    urls = blob_urls(registry.url, f"bench/{name}", source, f"example.com/{name}:1")
    tools = {
        "contentstore pull": lambda r: run_synced([*CONTENTSTORE, "--root", str(fresh(work / "cs")), "-q",
                                                   "pull", ref]),
        "skopeo copy": lambda r: run_synced(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                             f"docker://{ref}", f"oci:{fresh(work / 'sk')}:t"]),
        "curl (floor)": lambda r: run_synced(curl_floor(urls, fresh(work / "curl"))),
    }
    if has_verify_diffids():
        tools["contentstore pull --verify-diffids"] = lambda r: run_synced(
            [*CONTENTSTORE, "--root", str(fresh(work / "csv")), "-q", "pull", "--verify-diffids", ref])
    contest = alternate(Contest(f"pull {name}"), tools, rounds)
    for leftover in ("cs", "sk", "curl", "csv"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    return contest


def unpack_contest(name: str, source: Store, compression: str, work: Path, rounds: int) -> Contest:
    """Each run writes into a directory of its own, and the trees are deleted only after
    the contest: on this machine's disk (ext4 with online discard) creating files right
    after deleting a large tree is five to ten times slower for every tool (tar: 3.5 s
    then 13-31 s), which would make the ratios a draw of who ran after a delete."""
    ref = f"example.com/{name}:1"
    layers = [source.content.path(layer.digest) for layer in source.image(ref).layers]
    flag = {"gzip": "-z", "zstd": "--zstd", "none": ""}[compression]
    trees = work / f"unpack-{name}"

    def target(tool: str, round_number: int) -> Path:
        return trees / f"{tool}-{round_number}"

    def tar(round_number):
        out = target("tar", round_number)
        out.mkdir(parents=True)
        script = " && ".join(f"tar {flag} -xf {layer} -C {out}" for layer in layers)
        return run_synced(["sh", "-c", script])

    def umoci(round_number):
        return run_synced(["umoci", "unpack", "--rootless", "--image", f"{source.root}:{ref}",
                           str(target("umoci", round_number))])

    def contentstore(round_number):
        return run_synced([*CONTENTSTORE, "--root", str(source.root), "-q", "unpack", ref,
                           str(target("cs", round_number))])

    tools = {"contentstore unpack": contentstore, "umoci unpack --rootless": umoci, "GNU tar -x": tar}
    trees.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sync"], check=True)
    try:
        return alternate(Contest(f"unpack {name}"), tools, rounds)
    finally:
        shutil.rmtree(trees, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="share-gzip,python-gzip")
    parser.add_argument("--mib", type=int, default=700, help="cap on the bytes taken from each tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", default="", help="pull and/or unpack")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--dir", default=None, help="where to work (default: a temporary directory)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cs-bench-real-", dir=args.dir))
    registry = start_registry(work / "registry")
    results = {}
    try:
        source = Store(work / "source")
        for name in args.images.split(","):
            trees, layers, compression = IMAGES[name]
            stats = build_image(source, f"example.com/{name}:1", trees, layers, compression,
                                args.mib << 20, work)
            push(f"oci:{source.root}:example.com/{name}:1", registry, f"bench/{name}:1")
            print(f"image {name}: {stats['files']} entries from {', '.join(map(str, trees))}, "
                  f"{layers} {compression} layer(s), {stats['compressed'] / (1 << 20):.0f} MiB compressed",
                  flush=True)
            if "pull" not in args.skip:
                contest = pull_contest(name, registry, source, work, args.rounds)
                print(contest.report("contentstore pull", ["skopeo copy", "curl (floor)"]), flush=True)
                if "contentstore pull --verify-diffids" in contest.runs:
                    print(f"  ratio contentstore pull --verify-diffids / skopeo copy: "
                          f"{contest.ratio('contentstore pull --verify-diffids', 'skopeo copy'):.2f}")
                results[contest.name] = contest.as_json()
            if "unpack" not in args.skip:
                contest = unpack_contest(name, source, compression, work, args.rounds)
                print(contest.report("contentstore unpack", ["umoci unpack --rootless", "GNU tar -x"]), flush=True)
                results[contest.name] = contest.as_json()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return 0
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
