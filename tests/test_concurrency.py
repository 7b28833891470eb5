"""Several processes on one store, and processes killed mid-write."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

from contentstore import Store
from contentstore.model import digest as digests

WORKERS = 8
SHARED = [f"shared blob {i}".encode() * 1000 for i in range(6)]


def _worker(root: str, number: int, start) -> None:
    store = Store(root)
    start.wait()
    for round_ in range(5):
        for i, data in enumerate(SHARED):
            if (i + number + round_) % 2 == 0:
                store.put(data, expected=digests.of_bytes(data) if i % 2 else None)
        own = store.put(f"worker {number} round {round_}".encode())
        store.tag(own.digest, f"127.0.0.1:5000/team/app:w{number}-r{round_}")


def test_eight_processes_put_and_tag_concurrently(tmp_path):
    root = tmp_path / "store"
    Store(root)
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(str(root), n, start)) for n in range(WORKERS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store(root)
    report = store.verify()
    assert report.ok and report.corrupt == [] and report.missing == []
    index = json.loads((root / "index.json").read_text())
    names = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert names == {f"127.0.0.1:5000/team/app:w{n}-r{r}" for n in range(WORKERS) for r in range(5)}
    stored = {b.digest for b in store.blobs()}
    assert {digests.of_bytes(d) for d in SHARED} <= stored
    assert store.content.ingests() == []
    assert not [p for p in (root / "blobs").rglob("*") if p.name.endswith(".tmp")]


SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from contentstore import Store
    store = Store(sys.argv[1])
    data = open(sys.argv[2], "rb").read()
    with store.writer(sys.argv[3], expected=sys.argv[3], size=len(data)) as w:
        for i in range(0, len(data), 1 << 16):
            w.write(data[i:i + (1 << 16)])
            w._file.flush()
            if i >= len(data) // 2:
                print("half", flush=True)
                time.sleep(60)
""")


def test_writer_killed_mid_ingest_leaves_store_valid_and_next_writer_resumes(tmp_path):
    root = tmp_path / "store"
    store = Store(root)
    data = os.urandom(4 << 20)
    source = tmp_path / "blob"
    source.write_bytes(data)
    expected = digests.of_bytes(data)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(root), str(source), expected],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "half"
        [status] = store.content.ingests()
        assert status.active
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not store.exists(expected)
    assert store.verify().ok
    [status] = store.content.ingests()
    assert not status.active and status.offset >= len(data) // 2
    with store.writer(expected, expected=expected, size=len(data)) as writer:
        assert writer.offset == status.offset
        writer.write(data[writer.offset:])
        writer.commit()
    assert store.exists(expected) and store.verify().ok


TAGGER = textwrap.dedent("""
    import sys
    from contentstore import Store
    store = Store(sys.argv[1])
    digest = store.put(b"target").digest
    print("ready", flush=True)
    i = 0
    while True:
        store.tag(digest, f"example.com/loop:t{i % 50}")
        i += 1
""")


def test_tagger_killed_at_any_point_leaves_a_valid_index(tmp_path):
    root = tmp_path / "store"
    Store(root)
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", TAGGER, str(root)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        index = json.loads((root / "index.json").read_text())
        assert index["schemaVersion"] == 2
        # the lock died with its holder: the next writer is not blocked
        Store(root).tag(Store(root).put(b"after").digest, "example.com/after:1")
