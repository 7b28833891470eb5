"""Mirrors, plain-HTTP fallback and v1 registries, with real registries on loopback."""

import socket

import pytest
from servers import oci_ref

from contentstore import Store
from contentstore.errors import DigestMismatch, NotV2Registry, RegistryUnreachable
from contentstore.testing import ProgressRecorder, build_image, push

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def publish(source, registry, name, content):
    local = "src/" + name.replace(":", "-").replace("/", "-")
    build_image(source, local, {"version.txt": content})
    push(oci_ref(source, f"docker.io/{local}:latest"), registry, name)
    return source.image(local).digest


def store_with_config(tmp_path, text: str) -> Store:
    config = tmp_path / "config.toml"
    config.write_text(text)
    return Store(tmp_path / "store", config=config)


def mirror_config(upstream, *mirrors, fallback=True) -> str:
    urls = ", ".join(f'"{m}"' for m in mirrors)
    return (f'[registry."{upstream.host}"]\nmirrors = [{urls}]\n'
            + ("" if fallback else "mirror_fallback = false\n"))


@pytest.fixture
def two_registries(registry_factory):
    return registry_factory(), registry_factory()


def test_image_on_the_mirror_is_pulled_from_it(two_registries, proxy_factory, source, tmp_path):
    upstream, mirror = two_registries
    digest = publish(source, upstream, "team/app:1", "v1\n")
    push(f"docker://{upstream.host}/team/app:1", mirror, "team/app:1", "--src-tls-verify=false")
    up = proxy_factory(upstream.url)
    store = store_with_config(tmp_path, mirror_config(up, mirror.url))
    events = ProgressRecorder()
    image = store.pull(f"{up.host}/team/app:1", progress=events)
    assert image.digest == digest
    assert f"Pulled from mirror {mirror.url}" in events
    assert not up.requests("/blobs/")  # the upstream only told the tag's digest (HEAD)
    assert [e["method"] for e in up.requests("/manifests/")] == ["HEAD"]
    assert store.resolve(f"{up.host}/team/app:1").digest == digest  # recorded under the upstream


def test_image_only_on_the_upstream(two_registries, source, tmp_path):
    upstream, mirror = two_registries
    digest = publish(source, upstream, "team/only:1", "upstream\n")
    store = store_with_config(tmp_path, mirror_config(upstream, mirror.url))
    events = ProgressRecorder()
    assert store.pull(f"{upstream.host}/team/only:1", progress=events).digest == digest
    assert any(line.startswith(f"{mirror.url}: not found") for line in events)
    assert not any(line.startswith("Pulled from mirror") for line in events)


def test_mirror_down(two_registries, source, tmp_path):
    upstream, mirror = two_registries
    digest = publish(source, upstream, "team/down:1", "down\n")
    push(f"docker://{upstream.host}/team/down:1", mirror, "team/down:1", "--src-tls-verify=false")
    mirror.stop()
    store = store_with_config(tmp_path, mirror_config(upstream, mirror.url))
    events = ProgressRecorder()
    assert store.pull(f"{upstream.host}/team/down:1", progress=events).digest == digest
    assert any(line.startswith(f"{mirror.url}:") and "cannot reach" in line for line in events)


def test_mirror_answering_500(two_registries, proxy_factory, source, tmp_path):
    upstream, mirror = two_registries
    digest = publish(source, upstream, "team/broken:1", "broken\n")
    push(f"docker://{upstream.host}/team/broken:1", mirror, "team/broken:1", "--src-tls-verify=false")
    bad = proxy_factory(mirror.url)
    bad.faults({"match": "/v2/team/", "status": 500, "times": -1})
    store = store_with_config(tmp_path, mirror_config(upstream, bad.url))
    events = ProgressRecorder()
    assert store.pull(f"{upstream.host}/team/broken:1", progress=events).digest == digest
    assert any(line.startswith(f"{bad.url}:") and "500" in line for line in events)


def test_mirror_with_a_stale_tag(two_registries, source, tmp_path):
    upstream, mirror = two_registries
    old = publish(source, upstream, "team/stale:1", "old\n")
    push(f"docker://{upstream.host}/team/stale:1", mirror, "team/stale:1", "--src-tls-verify=false")
    new = publish(source, upstream, "team/stale:1", "new\n")
    assert old != new
    store = store_with_config(tmp_path, mirror_config(upstream, mirror.url))
    assert store.pull(f"{upstream.host}/team/stale:1").digest == new


def test_by_digest_mirror_serving_other_bytes_is_skipped(two_registries, proxy_factory, source, tmp_path):
    upstream, mirror = two_registries
    wanted = publish(source, upstream, "team/pinned:1", "wanted\n")
    other = publish(source, mirror, "team/pinned:other", "something else\n")
    liar = proxy_factory(mirror.url)
    liar.faults({"match": f"/manifests/{wanted}", "rewrite": [wanted, other], "times": -1})
    store = store_with_config(tmp_path, mirror_config(upstream, liar.url))
    events = ProgressRecorder()
    image = store.pull(f"{upstream.host}/team/pinned@{wanted}", progress=events)
    assert image.digest == wanted
    assert any(line.startswith(f"{liar.url}: digest mismatch") for line in events)
    assert not store.exists(other)


def test_no_fallback_to_upstream_when_configured(two_registries, proxy_factory, source, tmp_path):
    upstream, mirror = two_registries
    publish(source, upstream, "team/airgap:1", "airgap\n")
    up = proxy_factory(upstream.url)
    store = store_with_config(tmp_path, mirror_config(up, mirror.url, fallback=False))
    from contentstore.errors import RemoteNotFound
    with pytest.raises(RemoteNotFound):
        store.pull(f"{up.host}/team/airgap:1")
    assert up.log() == []  # the upstream was never contacted


def test_upstream_digest_mismatch_is_never_passed_over(registry, proxy_factory, source, tmp_path):
    wanted = publish(source, registry, "team/strict:1", "strict\n")
    other = publish(source, registry, "team/strict:other", "other\n")
    liar = proxy_factory(registry.url)
    liar.faults({"match": f"/manifests/{wanted}", "rewrite": [wanted, other], "times": -1})
    store = Store(tmp_path / "store")
    with pytest.raises(DigestMismatch):
        store.pull(f"{liar.host}/team/strict@{wanted}")


def test_loopback_falls_back_to_http_but_other_names_do_not(registry, source, tmp_path, monkeypatch):
    """A name that maps to 127.0.0.1 is not loopback to the policy: no plain HTTP for it.

    Without root the test cannot add a name to /etc/hosts, so it maps one in this
    process's resolver (socket.getaddrinfo): the registry, the TLS attempt and the
    refusal are real.
    """
    digest = publish(source, registry, "team/secure:1", "secure\n")
    assert Store(tmp_path / "a").pull(f"{registry.host}/team/secure:1").digest == digest  # loopback: http
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(
        "127.0.0.1" if host == "registry.contentstore.test" else host, *a, **k))
    name = f"registry.contentstore.test:{registry.port}"
    with pytest.raises(RegistryUnreachable) as info:
        Store(tmp_path / "b").pull(f"{name}/team/secure:1")
    assert "SSL" in str(info.value) or "TLS" in str(info.value) or "ssl" in str(info.value)
    # marked insecure in the configuration, the same name may use plain HTTP
    store = store_with_config(tmp_path, f'[registry."{name}"]\ninsecure = true\n')
    assert store.pull(f"{name}/team/secure:1").digest == digest


def test_v1_registry_gets_a_clear_error(proxy_factory, registry, tmp_path):
    """No v1 registry is packaged anywhere any more, so the fault proxy plays one: it
    answers /v2/ with 404 and /v1/_ping as the v1 registry did."""
    v1 = proxy_factory(registry.url)
    v1.faults({"match": "GET /v2/", "reply": {"status": 404, "body": "404 page not found"}, "times": -1},
              {"match": "GET /v1/_ping", "reply": {"status": 200, "body": "true",
                                                   "headers": {"X-Docker-Registry-Version": "0.9.1"}},
               "times": -1})
    with pytest.raises(NotV2Registry) as info:
        Store(tmp_path / "store").pull(f"{v1.host}/team/ancient:1")
    assert "v1" in str(info.value) and "0.9.1" in str(info.value)
