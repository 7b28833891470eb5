"""Benchmark references at scale: 10,000 tags, ``images``, a warm re-pull, in one store.

Builds a store of ``--images`` small OCI images plus one image pulled from a real local
registry (pushed Docker-typed, as Docker Hub serves most images, so its entries carry
the registry's digest), then tags ``--refs`` names round-robin over them, timing every
tag: ``--cli-tags`` of them through the command line (half while the store is nearly
empty, half at the end), the others through the API (``Store.tag``). Then, with the
store full:

- ``contentstore images`` (the first run, which summarizes each image once, then
  ``--runs`` more), and ``Store.images()`` in a fresh ``Store``;
- ``contentstore pull REF`` of the image already complete (the warm re-pull);
- ``contentstore rmi`` and ``Store.untag`` of names at the end.

Each command-line figure is a whole process (interpreter start included), with its peak
RSS from GNU time (``/usr/bin/time``); API figures are in-process. The processes may
cache bytecode (in the work folder), as an installed package has it: with
``PYTHONDONTWRITEBYTECODE`` an editable install would compile every module on every run. Targets (issue 13):
a tag at most 5 ms at the end as at the start, ``images`` under 0.5 s, a warm re-pull
under 0.3 s, with 10,000 references.

    python benchmarks/bench_references.py [--refs 10000] [--images 100] [--cli-tags 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contentstore import Store
from contentstore.testing import build_image, push_test_image, start_registry

CONTENTSTORE = [sys.executable, "-m", "contentstore"]
GNU_TIME = "/usr/bin/time"


ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def timed(args: list[str]) -> tuple[float, float]:
    """Run ``args`` as a whole process; its wall seconds and peak RSS in MiB (GNU time's
    report of that very process: a fork of this large one would count shared pages)."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as report:
        wrapped = [GNU_TIME, "-f", "%M", "-o", report.name, *args] if Path(GNU_TIME).exists() else args
        start = time.perf_counter()
        proc = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        lines = report.read().split()
    return seconds, int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan")


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} ms"


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (f"median {ms(values)}, p95 {p95 * 1000:.2f} ms, max {ordered[-1] * 1000:.2f} ms "
            f"({len(values)} tags)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refs", type=int, default=10_000, help="names to tag")
    parser.add_argument("--images", type=int, default=100, help="distinct local images the names point to")
    parser.add_argument("--cli-tags", type=int, default=200,
                        help="how many of the tags go through the command line (half first, half last)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of images and of the re-pull")
    parser.add_argument("--dir", default=None, help="where to work (a temporary folder in it)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cs-bench-refs-", dir=args.dir))
    ENV.setdefault("PYTHONPYCACHEPREFIX", str(work / "pycache"))
    registry = start_registry(work / "registry")
    figures: dict = {"refs": args.refs, "images": args.images}
    try:
        remote = push_test_image(registry, "bench/pulled:1", {"hello.txt": "pulled\n"}, "--format", "v2s2")
        root = work / "store"
        store = Store(root)
        sources = []
        for i in range(args.images):
            build_image(store, f"example.com/base/img{i}:1", {f"file{i}.txt": f"image {i}\n"})
            sources.append(f"example.com/base/img{i}:1")
        subprocess.run([*CONTENTSTORE, "--root", str(root), "-q", "pull", remote], check=True,
                       stdout=subprocess.DEVNULL, env=ENV)
        sources.append(remote)

        def name(i: int) -> str:
            return f"127.0.0.1:5000/team/app{i % 50}:tag-{i}"

        cli_first = args.cli_tags // 2
        cli_last = args.cli_tags - cli_first
        api_count = args.refs - args.cli_tags
        cli_times_first, cli_times_last, api_times, rss = [], [], [], 0.0
        for i in range(cli_first):
            seconds, peak = timed([*CONTENTSTORE, "--root", str(root), "tag", sources[i % len(sources)], name(i)])
            cli_times_first.append(seconds)
            rss = max(rss, peak)
        for i in range(cli_first, cli_first + api_count):
            start = time.perf_counter()
            store.tag(sources[i % len(sources)], name(i))
            api_times.append(time.perf_counter() - start)
        for i in range(cli_first + api_count, args.refs):
            seconds, peak = timed([*CONTENTSTORE, "--root", str(root), "tag", sources[i % len(sources)], name(i)])
            cli_times_last.append(seconds)
            rss = max(rss, peak)
        references = len(store.references())
        size = (root / "index.json").stat().st_size
        print(f"store: {references} references to {len(sources)} images; index.json {size / 1e6:.1f} MB")
        if api_times:
            first, last = api_times[:100], api_times[-100:]
            print(f"tag (API, Store.tag): first 100 {ms(first)}, last 100 {ms(last)}; all: {spread(api_times)}; "
                  f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
            figures["tag_api"] = {"first100_ms": statistics.median(first) * 1000,
                                  "last100_ms": statistics.median(last) * 1000,
                                  "median_ms": statistics.median(api_times) * 1000, "max_ms": max(api_times) * 1000}
        if cli_times_first and cli_times_last:
            print(f"tag (command line, whole process): first {len(cli_times_first)} {ms(cli_times_first)}, "
                  f"last {len(cli_times_last)} {ms(cli_times_last)}; peak RSS {rss:.0f} MiB")
            figures["tag_cli"] = {"first_ms": statistics.median(cli_times_first) * 1000,
                                  "last_ms": statistics.median(cli_times_last) * 1000, "peak_rss_mib": rss}

        listing = [*CONTENTSTORE, "--root", str(root), "images"]
        cold, cold_rss = timed(listing)
        warm = [timed(listing) for _ in range(args.runs)]
        print(f"images (command line, whole process): first run {cold * 1000:.0f} ms (summarizes each image once), "
              f"then median {ms([s for s, _ in warm])} over {args.runs}; peak RSS "
              f"{max(cold_rss, *(r for _, r in warm)):.0f} MiB")
        api_listing = []
        for _ in range(args.runs):
            start = time.perf_counter()
            listed = Store(root).images()
            api_listing.append(time.perf_counter() - start)
        assert len(listed) == references
        print(f"images (API, Store(root).images()): median {ms(api_listing)}")
        figures["images"] = {"cli_first_ms": cold * 1000, "cli_median_ms": statistics.median(s for s, _ in warm) * 1000,
                             "api_median_ms": statistics.median(api_listing) * 1000}

        pull = [*CONTENTSTORE, "--root", str(root), "-q", "pull", remote]
        pulls = [timed(pull) for _ in range(args.runs)]
        print(f"warm re-pull (command line, whole process, image complete): median {ms([s for s, _ in pulls])} "
              f"over {args.runs}; peak RSS {max(r for _, r in pulls):.0f} MiB")
        figures["warm_pull_ms"] = statistics.median(s for s, _ in pulls) * 1000

        untags = []
        for i in range(args.refs - 1, args.refs - 51, -1):
            start = time.perf_counter()
            store.untag(name(i))
            untags.append(time.perf_counter() - start)
        rmi, _ = timed([*CONTENTSTORE, "--root", str(root), "-q", "rmi", name(args.refs - 51)])
        print(f"untag (API): median {ms(untags)} over {len(untags)}; rmi (command line, whole process): "
              f"{rmi * 1000:.0f} ms")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
