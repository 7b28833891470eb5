"""One large blob over several connections: parallel Range requests into one ingest,
against the real registry through the fault proxy (cuts in one range, a killed pull
resumed only for the missing ranges, Range ignored at the start or later), and peak
memory flat in blob size."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest
import requests

from contentstore import Store
from contentstore.config import Config
from contentstore.model import mediatypes as mt

MiB = 1 << 20
BIG = 6 * MiB
CHUNK = MiB
#: A link that holds each connection to this many bytes a second: slow enough that a
#: ranged download opens its other connections (after half a second on one).
SLOW = 2_000_000
SETTINGS = dict(max_connections_per_download=3, parallel_download_threshold=2 * MiB,
                parallel_download_chunk_size=CHUNK)
SETTINGS_TOML = "\n".join(f"{key} = {value}" for key, value in SETTINGS.items()) + "\n"

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


@pytest.fixture
def ranged_store(tmp_path):
    return Store(tmp_path / "store", config=Config(**SETTINGS))


def _span(fetch) -> tuple[int, int]:
    """The bytes a logged request asked for, as [start, end)."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", fetch["range"] or "")
    assert match, fetch
    return int(match.group(1)), int(match.group(2)) + 1


def _slow(repo, layer, **rule):
    return {"match": f"GET /v2/{repo}/blobs/{layer.digest}", "rate": SLOW, "times": -1, **rule}


def test_large_blob_on_a_slow_link_comes_in_parallel_ranges(registry, proxy_factory, big_image, ranged_store):
    repo, layer = big_image("ranges")
    proxy = proxy_factory(registry.url)
    proxy.faults(_slow(repo, layer))
    started = time.monotonic()
    ranged_store.pull(f"{proxy.host}/{repo}:1")
    assert time.monotonic() - started < 0.8 * layer.size / SLOW  # faster than one connection can be
    assert ranged_store.exists(layer.digest) and ranged_store.verify().ok
    fetches = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert len(fetches) >= 4 and all(f["status"] == 206 for f in fetches)
    spans = sorted(_span(f) for f in fetches)
    # the first asked for everything and was cut short where the others begin
    assert spans[0] == (0, layer.size) and spans[1][0] % CHUNK == 0
    received = sorted((start, start + f["sent"]) for f, (start, _) in zip(fetches, map(_span, fetches)))
    assert received[0][0] == 0 and received[-1][1] == layer.size
    assert all(b[0] <= a[1] for a, b in zip(received, received[1:]))  # every byte came
    # and once, but for what the connection cut short had in flight
    assert proxy.sent(f"/blobs/{layer.digest}") <= layer.size + 256 * 1024
    assert ranged_store.content.ingests() == []


def test_large_blob_on_a_fast_link_is_one_request(registry, proxy_factory, big_image, ranged_store):
    repo, layer = big_image("fast")
    proxy = proxy_factory(registry.url)
    ranged_store.pull(f"{proxy.host}/{repo}:1")
    [fetch] = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert fetch["range"] == f"bytes=0-{layer.size - 1}" and fetch["status"] == 206
    assert ranged_store.verify().ok


def test_small_blob_is_one_stream(registry, proxy_factory, big_image, tmp_path):
    repo, layer = big_image("small")
    proxy = proxy_factory(registry.url)
    store = Store(tmp_path / "store", config=Config(**{**SETTINGS, "parallel_download_threshold": 64 * MiB}))
    store.pull(f"{proxy.host}/{repo}:1")
    [fetch] = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert fetch["range"] is None and fetch["status"] == 200


def test_cut_in_one_range_refetches_only_the_rest_of_it(registry, proxy_factory, big_image, ranged_store):
    repo, layer = big_image("cutrange")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "range": f"bytes={4 * CHUNK}-",
                  "cut_after": 300_000, "times": 1}, _slow(repo, layer))
    ranged_store.pull(f"{proxy.host}/{repo}:1")
    assert ranged_store.exists(layer.digest) and ranged_store.verify().ok
    fetches = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert f"bytes={4 * CHUNK + 300_000}-{5 * CHUNK - 1}" in [f["range"] for f in fetches]
    assert proxy.sent(f"/blobs/{layer.digest}") <= layer.size + 256 * 1024

def test_registry_ignoring_range_is_read_as_one_stream(registry, proxy_factory, big_image, ranged_store):
    repo, layer = big_image("norange")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "ignore_range": True, "times": -1})
    ranged_store.pull(f"{proxy.host}/{repo}:1", verify_diffids=True)
    assert ranged_store.exists(layer.digest) and ranged_store.verify().ok
    [fetch] = proxy.requests(f"/blobs/{layer.digest}", "GET")  # the 200 answer is the blob: no second request
    assert fetch["status"] == 200 and fetch["sent"] == layer.size


def test_registry_that_stops_honouring_range_goes_on_as_one_stream(registry, proxy_factory, big_image,
                                                                    ranged_store):
    repo, layer = big_image("laterange")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "range": f"bytes={4 * CHUNK}-",
                  "ignore_range": True, "times": 1}, _slow(repo, layer))
    ranged_store.pull(f"{proxy.host}/{repo}:1", verify_diffids=True)
    assert ranged_store.exists(layer.digest) and ranged_store.verify().ok
    assert ranged_store.content.ingests() == []


def test_flipped_byte_in_a_range_is_refused(registry, proxy_factory, big_image, ranged_store):
    from contentstore.errors import DigestMismatch
    repo, layer = big_image("fliprange")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "range": f"bytes={4 * CHUNK}-",
                  "flip_byte": 1000, "times": -1}, _slow(repo, layer))
    with pytest.raises(DigestMismatch):
        ranged_store.pull(f"{proxy.host}/{repo}:1")
    assert not ranged_store.exists(layer.digest) and ranged_store.content.ingests() == []


def test_verify_diffids_over_ranges(registry, proxy_factory, big_image, ranged_store):
    repo, layer = big_image("diffranges")
    proxy = proxy_factory(registry.url)
    proxy.faults(_slow(repo, layer))
    image = ranged_store.pull(f"{proxy.host}/{repo}:1", verify_diffids=True)
    config = json.loads(ranged_store.content.read(image.config.digest))
    assert ranged_store.metadata.diff_id(layer.digest) == config["rootfs"]["diff_ids"][0]


def test_killed_ranged_pull_resumes_only_the_missing_ranges(registry, proxy_factory, big_image,
                                                            ranged_store, tmp_path):
    repo, layer = big_image("killedranges")
    proxy = proxy_factory(registry.url)
    proxy.faults(_slow(repo, layer, rate=500_000))
    config = tmp_path / "ranged.toml"
    config.write_text(SETTINGS_TOML)
    ref = f"{proxy.host}/{repo}:1"
    proc = subprocess.Popen([sys.executable, "-m", "contentstore", "--root", str(ranged_store.root),
                             "--config", str(config), "-q", "pull", ref],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    held = 0
    while time.monotonic() < deadline and held < BIG // 3:
        time.sleep(0.05)
        held = max((i.offset for i in ranged_store.content.ingests() if i.ref == layer.digest), default=0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert held >= BIG // 3 and not ranged_store.exists(layer.digest)
    [ingest_dir] = [p for p in (ranged_store.content.ingest_dir).iterdir() if p.is_dir()]
    recorded = json.loads((ingest_dir / "state.json").read_text())["ranges"]
    assert len(recorded) > 1 or recorded[0] != [0, layer.size]  # holes: several ranges were in flight
    first_run = len(proxy.requests(f"/blobs/{layer.digest}", "GET"))
    proxy.faults()
    ranged_store.pull(ref)
    assert ranged_store.exists(layer.digest) and ranged_store.verify().ok
    again = proxy.requests(f"/blobs/{layer.digest}", "GET")[first_run:]
    for fetch in again:  # nothing recorded is asked for again
        start, end = _span(fetch)
        assert all(end <= a or start >= b for a, b in recorded), (fetch["range"], recorded)
    assert sum(f["sent"] for f in again) == layer.size - sum(b - a for a, b in recorded)


def test_ranged_ingest_is_taken_over_by_one_stream(registry, proxy_factory, big_image, ranged_store, tmp_path):
    """Ranges left by a killed pull, resumed by a pull configured for one connection:
    it keeps the contiguous prefix and fetches the rest in order."""
    repo, layer = big_image("handover")
    proxy = proxy_factory(registry.url)
    source = Store(tmp_path / "fetch-all")
    source.pull(f"{registry.host}/{repo}:1")
    data = source.content.path(layer.digest).read_bytes()
    with ranged_store.content.writer(layer.digest, expected=layer.digest, total=layer.size) as writer:
        writer.write_at(0, data[:CHUNK])
        writer.write_at(3 * CHUNK, data[3 * CHUNK:4 * CHUNK])
    single = Store(ranged_store.root, config=Config(max_connections_per_download=1))
    single.pull(f"{proxy.host}/{repo}:1")
    assert single.exists(layer.digest) and single.verify().ok
    [fetch] = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert fetch["range"] == f"bytes={CHUNK}-"


RSS_CHILD = textwrap.dedent("""
    import resource, subprocess, sys
    subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
""")


def _uncompressed_layer(path, size: int) -> tuple[str, str]:
    """A tar of one file of ``size`` random bytes, written to ``path``; its digest twice
    (an uncompressed layer's diffID is its digest)."""
    hasher = hashlib.sha256()
    with open(path, "wb") as out:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        header = info.tobuf(tarfile.PAX_FORMAT)
        out.write(header)
        hasher.update(header)
        block = os.urandom(MiB)
        for _ in range(size // MiB):
            out.write(block)
            hasher.update(block)
        tail = b"\0" * (-size % 512 + 1024)
        out.write(tail)
        hasher.update(tail)
    digest = "sha256:" + hasher.hexdigest()
    return digest, digest


def _upload_blob(registry, repository: str, path, digest: str) -> None:
    """A blob put into the registry as it is (skopeo would compress an uncompressed layer)."""
    start = requests.post(f"{registry.url}/v2/{repository}/blobs/uploads/", timeout=30)
    start.raise_for_status()
    location = start.headers["Location"]
    location = location if location.startswith("http") else registry.url + location
    with open(path, "rb") as body:
        requests.put(f"{location}{'&' if '?' in location else '?'}digest={digest}", data=body, timeout=120,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()


def test_peak_memory_of_a_512_mib_layer_pull_is_bounded(registry, tmp_path):
    """The default settings (4 connections, 16 MiB ranges), with and without diffIDs:
    a child process's peak RSS stays under a bound that does not depend on the blob."""
    repository = "team/bigmem"
    layer_path = tmp_path / "layer.tar"
    digest, diff_id = _uncompressed_layer(layer_path, 512 * MiB)
    size = layer_path.stat().st_size
    _upload_blob(registry, repository, layer_path, digest)
    layer_path.unlink()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    config_path = tmp_path / "config.json"
    config_path.write_bytes(config)
    _upload_blob(registry, repository, config_path, config_digest)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": mt.OCI_LAYER, "digest": digest, "size": size}]}).encode()
    requests.put(f"{registry.url}/v2/{repository}/manifests/1", data=manifest, timeout=30,
                 headers={"Content-Type": mt.OCI_MANIFEST}).raise_for_status()
    for number, flags in enumerate([[], ["--verify-diffids"]]):
        root = tmp_path / f"store{number}"
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, sys.executable, "-m", "contentstore",
                              "--root", str(root), "-q", "pull", *flags, f"{registry.host}/{repository}:1"],
                             check=True, capture_output=True, text=True).stdout
        peak_mib = int(out.split()[-1]) / 1024
        assert Store(root).exists(digest)
        assert peak_mib < 64, f"peak RSS {peak_mib:.0f} MiB with {flags}"


def test_wrong_bytes_in_a_recorded_range_mean_one_more_fetch_whole(registry, proxy_factory, big_image,
                                                                    ranged_store):
    """A range recorded as held whose bytes are wrong (a crash lost them, a disk changed
    them): the digest check fails after the resume, and the blob is fetched whole again."""
    repo, layer = big_image("badrange")
    proxy = proxy_factory(registry.url)
    with ranged_store.content.writer(layer.digest, expected=layer.digest, total=layer.size) as writer:
        writer.write_at(3 * CHUNK, os.urandom(CHUNK))
    ranged_store.pull(f"{proxy.host}/{repo}:1")
    assert ranged_store.exists(layer.digest) and ranged_store.verify().ok
    fetches = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert fetches[-1]["range"] == f"bytes=0-{layer.size - 1}" and fetches[-1]["sent"] == layer.size
