"""Benchmark the streaming tar reader against tarfile's stream mode, same run.

Reads one uncompressed tar (by default one GNU tar makes of this Python's standard
library in POSIX format: tens of thousands of entries, a PAX header on each, as umoci's
layers have) both ways, every body read: tarfile as ``tarfile.open(fileobj=f, mode="r|")``
with ``extractfile`` per regular file, ``TarReader`` over 1 MiB chunks. Prints the best
of ``--rounds`` for each and the ratio; both must see the same entries and bytes.

    python benchmarks/bench_tarstream.py [--tar FILE] [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

from contentstore.image.tarstream import TarReader

CHUNK = 1 << 20


def with_tarfile(path: Path) -> tuple[int, int]:
    entries = total = 0
    with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        while (member := tar.next()) is not None:
            entries += 1
            if member.isreg():
                body = tar.extractfile(member)
                while data := body.read(CHUNK):
                    total += len(data)
            tar.members.clear()  # as unpack does: tarfile keeps every header otherwise
    return entries, total


def with_tarstream(path: Path) -> tuple[int, int]:
    entries = total = 0
    with open(path, "rb") as f:
        reader = TarReader(lambda: f.read(CHUNK))
        while reader.next() is not None:
            entries += 1
            for piece in reader.body():
                total += len(piece)
        reader.drain()
    return entries, total


def best(function, path: Path, rounds: int) -> tuple[float, tuple[int, int]]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = function(path)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tar", type=Path, help="an uncompressed tar (default: the standard library's)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = args.tar
        if path is None:
            path = Path(work) / "stdlib.tar"
            subprocess.run(["tar", "--format=posix", "-cf", str(path), "-C", sysconfig.get_path("stdlib"), "."],
                           check=True)
        old, old_result = best(with_tarfile, path, args.rounds)
        new, new_result = best(with_tarstream, path, args.rounds)
    assert old_result == new_result, (old_result, new_result)
    entries, total = new_result
    print(f"{entries} entries, {total / 2**20:.0f} MiB of bodies, best of {args.rounds}")
    print(f"tarfile r|  {old:7.3f} s")
    print(f"TarReader   {new:7.3f} s   {old / new:.1f}x faster")


if __name__ == "__main__":
    main()
