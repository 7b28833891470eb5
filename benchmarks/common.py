"""What every benchmark here shares: real images from real file trees, a real registry,
and fair timing.

Fair timing means: each tool runs as its own process, in alternating rounds (A B A B …,
so drift of the machine hits both alike), every run is timed until its writes are on disk
(a final ``sync`` inside the timed command: this machine's writeback otherwise moves time
from one run into the next), and what is reported is the median of each tool, the
median of the per-round ratios, and each tool's peak RSS (from ``wait4``'s rusage of that
very process tree).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from contentstore import Store
from contentstore.model import mediatypes as mt

CONTENTSTORE = [sys.executable, "-m", "contentstore"]
GNU_TIME = "/usr/bin/time"  # Debian package time


def precompile() -> None:
    """Write the bytecode of contentstore's modules, as installing a wheel does: run from
    a source tree with ``PYTHONDONTWRITEBYTECODE`` set, every timed process would
    otherwise compile them again (tens of milliseconds a run)."""
    import compileall

    import contentstore
    import contentstore_plugins

    for package in (contentstore, contentstore_plugins):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


precompile()


# -- timing ---------------------------------------------------------------------------------------

@dataclass
class Run:
    seconds: float
    peak_rss_mib: float


def run_synced(args: list[str], cwd: Path | None = None) -> Run:
    """Run ``args`` then ``sync``, as one timed command; its wall time and peak RSS.

    The peak RSS comes from GNU time, which reports its own child's rusage: the rusage of
    a direct child of this (large) process would count what it shares with it between
    fork and exec.
    """
    with tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as report:
        start = time.perf_counter()
        process = subprocess.run([GNU_TIME, "-f", "%M", "-o", report.name, "sh", "-c", '"$@" >/dev/null && sync',
                                  "sh", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            raise SystemExit(f"{args[0]} failed ({process.returncode}): "
                             f"{process.stderr.decode(errors='replace').strip()[:2000]}")
        lines = report.read().split()
    return Run(elapsed, int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan"))


@dataclass
class Contest:
    """Several tools doing the same job, timed in alternating rounds."""

    name: str
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def add(self, tool: str, run: Run) -> None:
        self.runs.setdefault(tool, []).append(run)

    def median(self, tool: str) -> float:
        return statistics.median(r.seconds for r in self.runs[tool])

    def ratio(self, tool: str, other: str) -> float:
        """Median of the per-round ratios (robust to drift between rounds)."""
        pairs = zip(self.runs[tool], self.runs[other])
        return statistics.median(a.seconds / b.seconds for a, b in pairs)

    def report(self, subject: str, against: list[str]) -> str:
        lines = [f"{self.name}:"]
        for tool, runs in self.runs.items():
            peak = max(r.peak_rss_mib for r in runs)
            times = ", ".join(f"{r.seconds:.2f}" for r in runs)
            lines.append(f"  {tool:<28} median {self.median(tool):7.2f} s  (runs: {times})  peak RSS {peak:.0f} MiB")
        for other in against:
            if other in self.runs and subject in self.runs:
                lines.append(f"  ratio {subject} / {other}: {self.ratio(subject, other):.2f}")
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {tool: [{"seconds": r.seconds, "peak_rss_mib": r.peak_rss_mib} for r in runs]
                for tool, runs in self.runs.items()}


def alternate(contest: Contest, tools: dict[str, callable], rounds: int) -> Contest:
    """Run each tool once per round, in turn, the order rotated every round."""
    names = list(tools)
    for round_number in range(rounds):
        order = names[round_number % len(names):] + names[:round_number % len(names)]
        for tool in order:
            contest.add(tool, tools[tool](round_number))
    return contest


# -- images from real trees ----------------------------------------------------------------------

def files_of(trees: list[Path], limit_bytes: int | None) -> list[Path]:
    """Regular files, directories and symlinks under ``trees``, in order, up to a size."""
    chosen, total = [], 0
    for tree in trees:
        for directory, dirs, files in os.walk(tree):
            dirs.sort()
            chosen.append(Path(directory))
            for name in sorted(files):
                path = Path(directory, name)
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not (path.is_symlink() or path.is_file()) or not os.access(path, os.R_OK):
                    continue
                total += st.st_size if not path.is_symlink() else 0
                chosen.append(path)
                if limit_bytes and total >= limit_bytes:
                    return chosen
    return chosen


def write_layer_tar(paths: list[Path], out) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            try:
                tar.add(path, arcname=str(path).lstrip("/"), recursive=False)
            except OSError:
                continue


class _Tee:
    """Hashes what is written through it (the diffID) and passes it on."""

    def __init__(self, sink):
        self.sink = sink
        self.hasher = hashlib.sha256()

    def write(self, data) -> int:
        self.hasher.update(data)
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()


def build_layer(paths: list[Path], compression: str, work: Path) -> tuple[Path, str]:
    """A compressed layer file of ``paths``; returns it and its diffID."""
    fd, name = tempfile.mkstemp(prefix="layer-", dir=work)
    with os.fdopen(fd, "wb") as raw:
        if compression == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as compressed:
                tee = _Tee(compressed)
                write_layer_tar(paths, tee)
        elif compression == "zstd":
            with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as compressed:
                tee = _Tee(compressed)
                write_layer_tar(paths, tee)
        else:
            tee = _Tee(raw)
            write_layer_tar(paths, tee)
    return Path(name), "sha256:" + tee.hasher.hexdigest()


LAYER_TYPES = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}


def build_image(store: Store, ref: str, trees: list[Path], layers: int, compression: str,
                limit_bytes: int | None, work: Path) -> dict:
    """An OCI image of the files under ``trees`` split into ``layers`` layers, in ``store``."""
    paths = files_of(trees, limit_bytes)
    per_layer = -(-len(paths) // layers)
    descriptors, diff_ids, stats = [], [], {"files": len(paths), "compressed": 0, "layers": layers}
    for i in range(layers):
        part = paths[i * per_layer:(i + 1) * per_layer]
        layer_file, diff_id = build_layer(part, compression, work)
        with open(layer_file, "rb") as f:
            info = store.put(f)
        layer_file.unlink()
        descriptors.append({"mediaType": LAYER_TYPES[compression], "digest": info.digest, "size": info.size})
        diff_ids.append(diff_id)
        stats["compressed"] += info.size
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_info = store.put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_info.digest,
                                      "size": config_info.size},
                           "layers": descriptors}).encode()
    store.tag(store.put(manifest).digest, ref)
    return stats


def python_stdlib() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def blob_urls(registry_url: str, repository: str, store: Store, ref: str) -> list[str]:
    image = store.image(ref)
    return [f"{registry_url}/v2/{repository}/blobs/{d.digest}" for d in [image.config, *image.layers]]


def curl_floor(urls: list[str], directory: Path) -> list[str]:
    """A plain parallel download of the same blobs, no checks: the floor to compare with."""
    args = ["curl", "--silent", "--fail", "--parallel", "--parallel-max", "8", "--location"]
    for n, url in enumerate(urls):
        args += ["-o", str(directory / f"blob{n}"), url]
    return args


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
