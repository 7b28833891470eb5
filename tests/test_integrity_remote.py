"""Issue 12, remote side: what a registry sends is bounded (size, time, rate), credentials
stay with their host, and the model's promises (platform matching, reference grammar)
are containerd's and distribution's. Every test talks to a real registry, a real token
server or the fault proxy playing a lying registry."""

import os
import subprocess
import sys

import pytest
from servers import oci_ref, upload

from contentstore.testing import build_image, build_index, push

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def cli(*args, root, config=None, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    command = [sys.executable, "-m", "contentstore", "--root", str(root)]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)


# -- platforms ---------------------------------------------------------------------------------


def test_arm64_v9_and_armel_hosts_pull_what_containerd_would(registry, source, tmp_path):
    """An index without an arm64/v9 image serves an arm64/v9 host its arm64/v8 image;
    ``armel`` is arm/v6, so it gets the v6 image, not the v7 one it cannot run."""
    build_index(source, "src/plat:latest", [("linux", "amd64", None), ("linux", "arm64", "v8"),
                                            ("linux", "arm", "v7"), ("linux", "arm", "v6")])
    ref = push(oci_ref(source, "docker.io/src/plat:latest"), registry, "team/plat:1", "--all")
    for wanted, expected in (("linux/arm64/v9", "linux/arm64/v8"), ("linux/arm64/v9.0", "linux/arm64/v8"),
                             ("linux/armel", "linux/arm/v6"), ("linux/armhf", "linux/arm/v7")):
        root = tmp_path / wanted.replace("/", "-")
        proc = cli("pull", "--platform", wanted, ref, root=root)
        assert proc.returncode == 0, proc.stderr
        proc = cli("images", "--format", "json", root=root)
        assert f'"platform": "{expected}"' in proc.stdout, (wanted, proc.stdout)


# -- references --------------------------------------------------------------------------------


def test_repository_of_255_characters_on_a_registry_pulls(registry, source, store):
    """The 255-character limit is on the repository path: with its domain, this
    reference is longer than 255 characters, and the registry serves it."""
    descriptor = build_image(source, "src/long", {"long.txt": "long\n"})
    blobs = [source.content.read(d.digest) for d in source.image("src/long").layers]
    blobs.append(source.content.read(source.image("src/long").config.digest))
    repository = "team/" + "r" * 250
    upload(registry.url, repository, blobs, source.content.read(descriptor.digest), descriptor.media_type, "1")
    ref = f"{registry.host}/{repository}:1"
    assert len(ref) > 255
    assert store.pull(ref).digest == descriptor.digest


# -- mirror URLs -------------------------------------------------------------------------------


def test_mirror_url_with_a_password_is_refused_without_printing_it(registry, source, tmp_path):
    """A mirror URL may not carry user:password@ (it would show in "Pulled from mirror …"
    and in every error naming the endpoint): a one-line error that names the file and
    line and never the password, also with -v, also for a URL the grammar refuses."""
    build_image(source, "src/m", {"m.txt": "m\n"})
    ref = push(oci_ref(source, "docker.io/src/m:latest"), registry, "team/mirrored:1")
    secret = "s3cret-Mirror-pw"
    for url in (f"http://alice:{secret}@{registry.host}", f"https://alice:{secret}@{registry.host}/v2/x"):
        config = tmp_path / "config.toml"
        config.write_text(f'[registry."{registry.host}"]\nmirrors = ["{url}"]\n')
        for verbose in ((), ("-v",)):
            proc = cli(*verbose, "pull", ref, root=tmp_path / "store", config=config)
            assert proc.returncode == 1
            assert secret not in proc.stdout + proc.stderr
            assert f"{config}:2: mirror 'http" in proc.stderr and "***@" in proc.stderr
            if not verbose:
                assert proc.stderr.startswith("contentstore: error: ") and proc.stderr.count("\n") == 1
    # the same rule for a configuration made in Python
    from contentstore.config import RegistryConfig
    from contentstore.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        RegistryConfig(mirrors=(f"https://bob:{secret}@mirror.example.com",))
    assert secret not in str(info.value)


# -- sizes: a registry cannot send more than was asked for ----------------------------------------

MiB = 1 << 20


def client_for(url, host, config=None, credentials=None):
    from contentstore.model.endpoint import Endpoint
    from contentstore.plugin import manager as pluginmanager
    from contentstore.remote.client import RegistryClient
    return RegistryClient(Endpoint(url, host), credentials, pluginmanager.create().accept_header(),
                          config=config)


@pytest.fixture
def small_image(registry, source):
    """A one-layer image in the registry: (repository, its manifest digest, its layer)."""
    def make(name):
        build_image(source, f"src/{name}", {f"{name}.txt": f"{name}\n"})
        push(oci_ref(source, f"docker.io/src/{name}:latest"), registry, f"team/{name}:1")
        image = source.image(f"src/{name}")
        return f"team/{name}", image.digest, image.layers[0]
    return make


@pytest.mark.parametrize("sized", [True, False], ids=["content-length", "connection-delimited"])
def test_blob_bigger_than_its_descriptor_is_cut_off(registry, proxy_factory, small_image, store, sized):
    """A registry answering a blob of ~100 bytes with 300 MiB: refused on its
    Content-Length before a byte is read, or, with no length given, at the first chunk
    past the size; nothing is kept and the connection is dropped, so the liar stops
    after what the sockets buffer."""
    from contentstore.errors import SizeMismatch
    repo, _, layer = small_image(f"liar{int(sized)}")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "body_size": 300 * MiB,
                  "no_length": not sized, "times": -1})
    with pytest.raises(SizeMismatch) as info:
        store.pull(f"{proxy.host}/{repo}:1")
    message = str(info.value)
    assert layer.digest in message and proxy.url in message and f"expected {layer.size} bytes" in message
    assert not store.exists(layer.digest) and store.content.ingests() == []
    [fetch] = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert fetch["sent"] < 64 * MiB  # of 300 MiB: cut, not drained
    assert store.images() == []


def test_blob_with_a_content_encoding_is_refused(registry, proxy_factory, small_image, store):
    """A gzip Content-Encoding turns 300 KiB on the wire into 300 MiB on disk. Blobs are
    asked for as their own bytes (Accept-Encoding: identity) and an encoded answer is
    refused, naming the blob and the encoding."""
    from contentstore.errors import RegistryError
    repo, _, layer = small_image("gzipbomb")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "body_size": 300 * MiB, "gzip": True,
                  "times": -1})
    with pytest.raises(RegistryError) as info:
        store.pull(f"{proxy.host}/{repo}:1")
    assert layer.digest in str(info.value) and "Content-Encoding 'gzip'" in str(info.value)
    assert not store.exists(layer.digest) and all(i.offset == 0 for i in store.content.ingests())
    [fetch] = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert fetch["sent"] < 64 * MiB


def test_gzip_encoded_manifest_is_capped_on_its_decoded_bytes(registry, proxy_factory, small_image):
    """64 MiB of manifest in 64 KiB of gzip: refused once 4 MiB are decoded."""
    from contentstore.errors import ManifestTooLarge
    repo, _, _ = small_image("manifestbomb")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/manifests/1", "body_size": 64 * MiB, "gzip": True,
                  "content_type": "application/vnd.oci.image.manifest.v1+json", "times": -1})
    client = client_for(proxy.url, proxy.host)
    client.ping()
    with pytest.raises(ManifestTooLarge, match="over the 4194304-byte limit"):
        client.get_manifest(repo, "1")


# -- time: deadlines for requests, a minimum rate for blobs ------------------------------------------

SHORT = 2.0  # seconds: the request deadline these tests configure


def short_config(**settings):
    from contentstore.config import Config
    return Config(**{"request_deadline": SHORT, **settings})


def assert_deadline_error(info, started, what):
    import time
    elapsed = time.monotonic() - started
    assert f"within the {SHORT:g} s request deadline" in str(info.value) and what in str(info.value)
    assert SHORT * 0.9 <= elapsed < SHORT + 3, elapsed
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fault", [
    {"trickle": {"bytes": 1, "every": 0.25}},                 # one byte at a time, for ever
    {"trickle": {"bytes": 1, "every": 0.25, "head": True}},   # the headers too
    {"body_size": 10, "gzip": True, "gzip_members": -1,       # bytes that decode to nothing
     "content_type": "application/vnd.oci.image.manifest.v1+json"},
], ids=["trickled-body", "trickled-headers", "endless-empty-gzip"])
def test_manifest_request_ends_at_its_deadline(registry, proxy_factory, small_image, fault):
    """Each of these kept the request going with no timeout firing: every read gets a
    byte in time. The deadline cuts the connection whatever the request waits for."""
    import time

    from contentstore.errors import RegistryUnreachable
    repo, digest, _ = small_image("slowmanifest")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/manifests/{digest}", "times": -1, **fault})
    client = client_for(proxy.url, proxy.host, short_config())
    client.ping()
    started = time.monotonic()
    with pytest.raises(RegistryUnreachable) as info:
        client.get_manifest(repo, digest)
    assert_deadline_error(info, started, f"{repo}@{digest}")


def test_ping_ends_at_its_deadline_and_the_next_endpoint_is_tried(registry, proxy_factory, small_image,
                                                                   tmp_path):
    """A mirror whose /v2/ answers one header byte at a time is passed over after the
    deadline for the registry itself."""
    import time

    from contentstore.errors import RegistryUnreachable
    repo, digest, _ = small_image("slowping")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/", "trickle": {"bytes": 1, "every": 0.25, "head": True}, "times": -1})
    client = client_for(proxy.url, proxy.host, short_config())
    started = time.monotonic()
    with pytest.raises(RegistryUnreachable) as info:
        client.ping()
    assert_deadline_error(info, started, "ping of")
    assert info.value.endpoint_unusable  # the endpoint loop moves on to the next endpoint


def test_retry_after_past_the_deadline_is_not_slept(registry, proxy_factory, small_image):
    """503 with Retry-After: 3600 made the pull sleep an hour; now the wait would pass
    the deadline, so the request ends at once, saying why."""
    import time

    from contentstore.errors import RegistryUnreachable
    repo, digest, _ = small_image("retryafter")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/manifests/", "status": 503, "retry_after": 3600, "times": -1})
    client = client_for(proxy.url, proxy.host, short_config())
    client.ping()
    started = time.monotonic()
    with pytest.raises(RegistryUnreachable) as info:
        client.get_manifest(repo, digest)
    assert time.monotonic() - started < 2
    assert "asked to retry after 3600 s" in str(info.value)
    # a short Retry-After is still honoured, within the deadline
    proxy.faults({"match": f"GET /v2/{repo}/manifests/", "status": 503, "retry_after": 1, "times": 1})
    started = time.monotonic()
    assert client.get_manifest(repo, digest).data
    assert 1 <= time.monotonic() - started < SHORT


BIG = 6 * MiB


@pytest.fixture
def big_layer(registry, source):
    build_image(source, "src/slowblob", {"big.bin": os.urandom(BIG)})
    push(oci_ref(source, "docker.io/src/slowblob:latest"), registry, "team/slowblob:1")
    return "team/slowblob", source.image("src/slowblob").layers[0]


@pytest.mark.parametrize("fault, rate", [
    ({"delay": 0.5}, 1 * MiB),                           # 128 KiB/s, under a 1 MiB/s minimum
    ({"trickle": {"bytes": 1, "every": 0.2}}, 1024),     # 5 bytes/s, under the default 1 KiB/s
], ids=["64KiB-every-half-second", "a-byte-every-200ms"])
def test_blob_below_the_minimum_rate_is_cut_resumed_then_refused(registry, proxy_factory, big_layer, store,
                                                                 fault, rate):
    """A body slower than the minimum over the window is cut; the download resumes
    with Range where it stopped; when every attempt is too slow, the error names the
    blob, the endpoint and the rate."""
    import time

    from contentstore.errors import RegistryUnreachable
    from contentstore.remote.download import download
    repo, layer = big_layer
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "times": -1, **fault})
    client = client_for(proxy.url, proxy.host, short_config(min_transfer_rate=rate, transfer_rate_window=1.0))
    client.ping()
    started = time.monotonic()
    with pytest.raises(RegistryUnreachable) as info:
        download(client, repo, store.content, store.metadata, layer, attempts=2)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert f"download of {layer.digest} failed after 3 attempts" in message  # 2 retries: 3 tries
    assert proxy.url in message and f"below the minimum transfer rate of {rate} bytes/s" in message
    assert elapsed < 10, elapsed
    fetches = proxy.requests(f"/blobs/{layer.digest}", "GET")
    assert len(fetches) == 3
    [ingest] = store.content.ingests()
    assert 0 < ingest.offset < layer.size and not store.exists(layer.digest)  # kept for a resume
    resumed_at = int(fetches[1]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= fetches[0]["sent"]  # where the cut attempt stopped


def test_blob_at_a_fair_rate_is_not_cut(registry, proxy_factory, big_layer, store):
    """The same limits let a body through that keeps the rate (~1.3 MB/s over 0.05 s pauses)."""
    from contentstore.remote.download import download
    repo, layer = big_layer
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": f"GET /v2/{repo}/blobs/{layer.digest}", "delay": 0.05, "times": -1})
    client = client_for(proxy.url, proxy.host, short_config(min_transfer_rate=256 * 1024,
                                                            transfer_rate_window=1.0))
    client.ping()
    assert download(client, repo, store.content, store.metadata, layer).blob.digest == layer.digest
    assert len(proxy.requests(f"/blobs/{layer.digest}", "GET")) == 1


# -- credentials: only to the host they belong to, never over plain HTTP elsewhere ------------------

TOKENS = "tokens.contentstore.test"


@pytest.fixture
def named_token_host(monkeypatch):
    """Map TOKENS to 127.0.0.1 in this process's resolver (socket.getaddrinfo), the one
    test double here: without root a test cannot add a name to /etc/hosts, and the
    token server must be reached under a name that does not look like loopback. The
    registry, the token server, its request log and the refusal are all real."""
    import socket
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(
        "127.0.0.1" if host == TOKENS else host, *a, **k))


def push_private(source, host, name):
    from servers import PASSWORD, USER
    build_image(source, "src/private", {"secret.txt": "only with credentials\n"})
    return push(oci_ref(source, "docker.io/src/private:latest"), host, name, credentials=(USER, PASSWORD))


def test_credentials_are_not_sent_to_a_plain_http_realm_on_another_host(token_registry_factory, named_token_host,
                                                                          source, store, tmp_path):
    """The registry (on loopback, where the credentials belong) names a token realm on
    http://tokens.contentstore.test: the password would cross the network in clear to
    a host it was never given for. The pull fails saying why, and the token server saw
    no credentials; marked insecure, that host gets them."""
    from servers import PASSWORD, USER, write_docker_config

    from contentstore.config import Config, RegistryConfig
    from contentstore.errors import Unauthorized
    from contentstore.remote.credentials import Credentials
    tokens = token_registry_factory(lambda url: url.replace("127.0.0.1", TOKENS))
    reg = tokens.registry
    push_private(source, tokens.uploader.host, "team/private:1")
    ref = f"{reg.host}/team/private:1"
    before = len(tokens.log())
    write_docker_config(tmp_path / "docker-config", reg.host)
    realm_host = f"{TOKENS}:{tokens.server.port}"
    with pytest.raises(Unauthorized) as info:
        store.pull(ref)
    message = str(info.value)
    assert f"credentials not sent to the token realm http://{realm_host}/token" in message
    assert "neither loopback nor marked insecure" in message and PASSWORD not in message
    assert not any(entry["authorization"] for entry in tokens.log()[before:])
    # marked insecure, the realm's host gets the credentials (and a token that works)
    config = Config(registries={realm_host: RegistryConfig(insecure=True)})
    client = client_for(reg.url, reg.host, config, Credentials(USER, PASSWORD))
    client.ping()
    assert client.get_manifest("team/private", "1").data
    assert tokens.log()[-1]["authorization"]


def test_anonymous_token_from_a_plain_http_realm_is_still_fetched(token_registry_factory, named_token_host,
                                                                  source, store):
    """Without credentials there is nothing to protect: a public pull goes on."""
    from servers import PASSWORD, USER
    tokens = token_registry_factory(lambda url: url.replace("127.0.0.1", TOKENS))
    build_image(source, "src/public", {"public.txt": "for everyone\n"})
    push(oci_ref(source, "docker.io/src/public:latest"), tokens.uploader.host, "team/public:1",
         credentials=(USER, PASSWORD))
    from contentstore.errors import Unauthorized
    with pytest.raises(Unauthorized) as info:  # the test token server grants nothing anonymously
        store.pull(f"{tokens.registry.host}/team/public:1")
    assert "credentials not sent" not in str(info.value)
    assert tokens.log()[-1]["authorization"] is False


def test_refresh_token_is_not_posted_through_a_redirect(token_registry_factory, proxy_factory, source, store,
                                                        tmp_path):
    """A 307 from the token realm would have requests post the identity token, in the
    form body, to wherever it points; it is not followed."""
    import json

    from contentstore.errors import RegistryError
    proxies = {}

    def behind_a_proxy(url):
        proxies["front"] = proxy_factory(url)
        return proxies["front"].url

    tokens = token_registry_factory(behind_a_proxy)
    elsewhere = proxy_factory(tokens.token_url, host="127.0.0.2")
    reg = tokens.registry
    push_private(source, tokens.uploader.host, "team/refresh:1")
    ref = f"{reg.host}/team/refresh:1"
    proxies["front"].faults({"match": "POST /token", "redirect": elsewhere.url, "times": -1})
    (tmp_path / "docker-config" / "config.json").write_text(json.dumps(
        {"auths": {reg.host: {"identitytoken": "contentstore-test-refresh-token"}}}))
    with pytest.raises(RegistryError) as info:
        store.pull(ref)
    assert "307" in str(info.value) and "not followed" in str(info.value)
    assert elsewhere.requests() == []  # the refresh token went nowhere else
    posts = proxies["front"].requests("/token", "POST")
    assert posts and all(e["status"] == 307 for e in posts)


@pytest.mark.parametrize("fault, expected", [
    ({"trickle": {"bytes": 1, "every": 0.25}}, "request deadline"),
    ({"body_size": 8 * MiB, "content_type": "application/json"}, "over the 1048576-byte limit"),
], ids=["trickled", "huge"])
def test_token_answers_are_bounded(token_registry_factory, proxy_factory, source, fault, expected):
    """A token server that answers a byte at a time, or with 8 MiB, is cut off."""
    import time

    from servers import PASSWORD, USER

    from contentstore.errors import RegistryError
    from contentstore.remote.credentials import Credentials
    proxies = {}

    def behind_a_proxy(url):
        proxies["front"] = proxy_factory(url)
        return proxies["front"].url

    tokens = token_registry_factory(behind_a_proxy)
    reg = tokens.registry
    push_private(source, tokens.uploader.host, "team/tokens:1")
    proxies["front"].faults({"match": "GET /token", "times": -1, **fault})
    client = client_for(reg.url, reg.host, short_config(), Credentials(USER, PASSWORD))
    client.ping()
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        client.get_manifest("team/tokens", "1")
    assert expected in str(info.value) and "token from" in str(info.value)
    assert time.monotonic() - started < SHORT + 3
