"""Pulls through a fault proxy: cut connections, 429/503, corrupted bytes, killed pulls."""

import os
import signal
import subprocess
import sys
import time

import pytest

from contentstore.errors import DigestMismatch

BIG = 6 << 20


pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def test_cut_connection_resumes_with_range(registry, proxy_factory, big_image, store):
    repo, layer = big_image("cut")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "cut_after": 2_000_000, "times": 1})
    image = store.pull(f"{proxy.host}/{repo}:1")
    assert store.exists(layer.digest) and image.layers[0].digest == layer.digest
    fetches = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert len(fetches) == 2 and fetches[1]["range"] == "bytes=2000000-"
    assert fetches[1]["status"] == 206
    assert proxy.sent(f"/blobs/{layer.digest}") < 1.2 * layer.size


def test_server_ignoring_range_restarts_cleanly(registry, proxy_factory, big_image, store):
    repo, layer = big_image("norange")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "cut_after": 1_000_000, "times": 1},
                 {"match": f"GET /v2/{repo}/blobs/{layer.digest}", "ignore_range": True, "times": 1})
    store.pull(f"{proxy.host}/{repo}:1")
    fetches = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert [f["status"] for f in fetches] == [200, 200]
    assert store.verify().ok


@pytest.mark.parametrize("status", [503, 429])
def test_busy_registry_is_retried_after_retry_after(registry, proxy_factory, big_image, store, status):
    repo, layer = big_image(f"busy{status}")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/manifests/", "status": status, "retry_after": 1, "times": 2},
                 {"match": f"GET /v2/{repo}/blobs/{layer.digest}", "status": status, "retry_after": 1,
                  "times": 1})
    started = time.monotonic()
    store.pull(f"{proxy.host}/{repo}:1")
    assert time.monotonic() - started >= 2  # Retry-After was honoured
    statuses = [e["status"] for e in proxy.requests(f"/blobs/{layer.digest}", "GET")]
    assert statuses == [status, 200]


def test_flipped_byte_is_refused_and_nothing_enters_the_store(registry, proxy_factory, big_image, store):
    repo, layer = big_image("flip")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "flip_byte": 12345, "times": -1})
    with pytest.raises(DigestMismatch) as info:
        store.pull(f"{proxy.host}/{repo}:1")
    assert layer.digest in str(info.value)
    assert not store.exists(layer.digest)
    assert store.content.ingests() == []
    assert len(proxy.requests(f"/blobs/{layer.digest}", "GET")) == 1  # a fresh mismatch is not retried
    assert store.images() == []


def test_killed_pull_resumes_without_refetching(registry, proxy_factory, big_image, store):
    repo, layer = big_image("killed")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "delay": 0.05, "times": 1})
    ref = f"{proxy.host}/{repo}:1"
    proc = subprocess.Popen([sys.executable, "-m", "contentstore", "--root", str(store.root), "-q", "pull", ref],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    offset = 0
    while time.monotonic() < deadline and offset < BIG // 3:
        time.sleep(0.05)
        offset = max((i.offset for i in store.content.ingests() if i.ref == layer.digest), default=0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert offset >= BIG // 3 and not store.exists(layer.digest)
    [partial] = [i for i in store.content.ingests() if i.ref == layer.digest]
    first_run = len(proxy.requests(f"/blobs/{layer.digest}", "GET"))
    store.pull(ref)
    assert store.exists(layer.digest) and store.verify().ok
    second_run = sum(e["sent"] for e in proxy.requests(f"/blobs/{layer.digest}", "GET")[first_run:])
    assert second_run == layer.size - partial.offset
    assert proxy.requests(f"/blobs/{layer.digest}", "GET")[-1]["range"] == f"bytes={partial.offset}-"
