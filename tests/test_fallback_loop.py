"""contentstore.remote.fallback: the one loop over endpoints (on_each_endpoint), with real
registries, a port nothing listens on, and the fault proxy; and which endpoints are tried
(endpoints, client_factory) with the real policy plugins."""

import hashlib
import json

import pytest

from contentstore.config import Config, RegistryConfig
from contentstore.errors import NotV2Registry, RegistryUnreachable, RemoteNotFound
from contentstore.model import mediatypes as mt
from contentstore.model.endpoint import Endpoint
from contentstore.model.reference import Reference
from contentstore.plugin import hookimpl
from contentstore.remote.client import RegistryClient
from contentstore.remote.credentials import Credentials
from contentstore.remote.fallback import client_factory, endpoints, on_each_endpoint
from contentstore.testing import free_port

from servers import upload

pytestmark = pytest.mark.needs("docker-registry")

REGISTRY = "registry.test"  # the registry every endpoint here serves


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def publish(registry, repository: str) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repository}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                           "layers": []}).encode()
    upload(registry.url, repository, [config], manifest, mt.OCI_MANIFEST, "1")
    return manifest


class Connections:
    """A ``connect`` that makes real clients and remembers which endpoints it was asked for."""

    def __init__(self, explain=None):
        self.explain = explain
        self.asked: list[Endpoint] = []

    def __call__(self, endpoint: Endpoint) -> RegistryClient:
        self.asked.append(endpoint)
        return RegistryClient(endpoint, None, mt.OCI_MANIFEST, self.explain)


def down(mirror: bool = False) -> Endpoint:
    return Endpoint(f"http://127.0.0.1:{free_port()}", REGISTRY, mirror=mirror)


def at(server, mirror: bool = False) -> Endpoint:
    return Endpoint(server.url, REGISTRY, mirror=mirror)


def fetch(repository: str):
    return lambda client: client.get_manifest(repository, "1").data


# -- passing over endpoints that fail before or at the ping -------------------------------------------


def test_unreachable_endpoint_then_a_real_registry(registry):
    manifest = publish(registry, "loop/app")
    connect, notes = Connections(), []
    candidates = [down(), at(registry)]
    data, served = on_each_endpoint(candidates, connect, fetch("loop/app"), notify=notes.append)
    assert data == manifest and served == candidates[1]
    assert connect.asked == candidates
    assert notes == []  # the registry's own endpoint that is down: passed over quietly, as Docker


def test_unreachable_mirror_is_told(registry):
    manifest = publish(registry, "loop/mirrored")
    notes = []
    mirror = down(mirror=True)
    data, served = on_each_endpoint([mirror, at(registry)], Connections(), fetch("loop/mirrored"),
                                    notify=notes.append)
    assert data == manifest and served.url == registry.url
    [note] = notes
    assert note.startswith(f"{mirror.url}: {REGISTRY}: cannot reach the registry: ")
    assert note.endswith(f"; trying {registry.url}")


def test_endpoint_that_is_not_v2_is_passed_over(registry, proxy_factory):
    manifest = publish(registry, "loop/notv2")
    web = proxy_factory(registry.url)
    web.faults({"match": "GET /v2/", "reply": {"status": 404, "body": "404 page not found"}, "times": -1})
    data, served = on_each_endpoint([at(web), at(registry)], Connections(), fetch("loop/notv2"))
    assert data == manifest and served.url == registry.url
    assert [e["path"] for e in web.requests()] == ["/v2/"]


def test_ping_failure_explained_ends_at_once(registry, proxy_factory):
    web = proxy_factory(registry.url)
    web.faults({"match": "GET /v2/", "reply": {"status": 404, "body": "404 page not found"}, "times": -1})
    behind = proxy_factory(registry.url)

    class Explained(Exception):
        pass

    connect = Connections(explain=lambda endpoint, response, session: Explained(f"{endpoint.url}: retired"))
    with pytest.raises(Explained, match=f"^{web.url}: retired$"):
        on_each_endpoint([at(web), at(behind)], connect, fetch("loop/x"))
    assert connect.asked == [at(web)] and behind.log() == []


def test_v1_registry_explained_by_the_real_plugin(registry, proxy_factory, plugins):
    """The fault proxy plays a v1 registry (none is packaged any more); the v1 policy
    plugin explains the failed ping, and no other endpoint is tried."""
    v1 = proxy_factory(registry.url)
    v1.faults({"match": "GET /v2/", "reply": {"status": 404, "body": "404 page not found"}, "times": -1},
              {"match": "GET /v1/_ping", "reply": {"status": 200, "body": "true",
                                                   "headers": {"X-Docker-Registry-Version": "0.9.1"}}, "times": -1})
    behind = proxy_factory(registry.url)
    connect = client_factory(plugins, lambda endpoint: None)
    with pytest.raises(NotV2Registry, match="is a registry v1 server \\(0.9.1\\)"):
        on_each_endpoint([at(v1), at(behind)], connect, fetch("loop/x"))
    assert behind.log() == []


# -- errors after a good ping ---------------------------------------------------------------------------


def test_error_after_a_good_ping_ends_the_operation_by_default(registry, registry_factory, proxy_factory):
    publish(registry, "loop/elsewhere")
    empty = registry_factory()
    behind = proxy_factory(registry.url)
    notes = []
    with pytest.raises(RemoteNotFound, match="manifest unknown|repository name not known"):
        on_each_endpoint([at(empty), at(behind)], Connections(), fetch("loop/elsewhere"), notify=notes.append)
    assert behind.log() == [] and notes == []


def test_error_after_a_good_ping_moves_on_when_the_policy_says_so(registry, registry_factory):
    manifest = publish(registry, "loop/policy")
    empty = registry_factory()
    asked, notes = [], []

    def continue_on_error(endpoint, error, confirmed_v2):
        asked.append((endpoint, type(error), confirmed_v2))
        return True

    data, served = on_each_endpoint([at(empty), at(registry)], Connections(), fetch("loop/policy"),
                                    continue_on_error=continue_on_error, notify=notes.append)
    assert data == manifest and served.url == registry.url
    assert asked == [(at(empty), RemoteNotFound, True)]  # the registry had confirmed v2
    [note] = notes
    assert note.startswith(f"{empty.url}: not found: {REGISTRY}/loop/policy:1: ")
    assert note.endswith(f"; trying {registry.url}")
    # the policy saying no ends it
    with pytest.raises(RemoteNotFound):
        on_each_endpoint([at(empty), at(registry)], Connections(), fetch("loop/policy"),
                         continue_on_error=lambda *args: False)


def test_the_real_policy_moves_on_from_not_found(registry, registry_factory, plugins):
    manifest = publish(registry, "loop/real-policy")
    empty = registry_factory()
    data, served = on_each_endpoint([at(empty), at(registry)], client_factory(plugins, lambda e: None),
                                    fetch("loop/real-policy"), continue_on_error=plugins.continue_on_error)
    assert data == manifest and served.url == registry.url


def test_errors_that_are_not_the_stores_never_move_on(registry, proxy_factory):
    behind = proxy_factory(registry.url)

    def work(client):
        raise KeyError("a bug in the caller")

    with pytest.raises(KeyError):
        on_each_endpoint([at(registry), at(behind)], Connections(), work, continue_on_error=lambda *a: True)
    assert behind.log() == []


def test_the_last_endpoints_error_is_raised(registry, registry_factory):
    first, last = down(), down()
    with pytest.raises(RegistryUnreachable) as info:
        on_each_endpoint([first, last], Connections(), fetch("loop/x"))
    assert f"port={last.url.rsplit(':', 1)[1]}" in str(info.value)
    # the last one fails after a good ping: its error, whatever the policy says
    empty = registry_factory()
    with pytest.raises(RemoteNotFound):
        on_each_endpoint([down(), at(empty)], Connections(), fetch("loop/x"), continue_on_error=lambda *a: True)
    notes = []
    with pytest.raises(RegistryUnreachable):
        on_each_endpoint([at(empty), down(mirror=True)], Connections(), fetch("loop/x"),
                         continue_on_error=lambda *a: True, notify=notes.append)
    assert len(notes) == 1 and notes[0].startswith(f"{empty.url}: not found")
    with pytest.raises(RegistryUnreachable, match="^no endpoint to try$"):
        on_each_endpoint([], Connections(), fetch("loop/x"))


# -- which endpoints, and their clients ---------------------------------------------------------------


def test_endpoints_with_and_without_mirrors(plugins):
    reference = Reference.parse("127.0.0.1:5000/team/app:1")
    config = Config(registries={"127.0.0.1:5000": RegistryConfig(
        mirrors=("https://mirror.example.com", "http://127.0.0.1:6000"))})
    assert endpoints(reference, config, plugins) == [
        Endpoint("https://mirror.example.com", "127.0.0.1:5000", mirror=True),
        Endpoint("http://127.0.0.1:6000", "127.0.0.1:5000", mirror=True),  # the scheme given is used
        Endpoint("https://127.0.0.1:5000", "127.0.0.1:5000", verify_tls=False),
        Endpoint("http://127.0.0.1:5000", "127.0.0.1:5000", verify_tls=False),
    ]
    assert endpoints(reference, config, plugins, mirrors=False) == [
        Endpoint("https://127.0.0.1:5000", "127.0.0.1:5000", verify_tls=False),
        Endpoint("http://127.0.0.1:5000", "127.0.0.1:5000", verify_tls=False),
    ]


def test_endpoints_of_docker_hub(plugins):
    config = Config(registries={"docker.io": RegistryConfig(mirrors=("https://mirror.gcr.io",))})
    assert endpoints(Reference.parse("alpine"), config, plugins, mirrors=False) == [
        Endpoint("https://registry-1.docker.io", "docker.io")]
    assert [e.url for e in endpoints(Reference.parse("alpine"), config, plugins)] == [
        "https://mirror.gcr.io", "https://registry-1.docker.io"]


def test_no_endpoint_left_is_an_error(plugins):
    config = Config(registries={"registry.example.com": RegistryConfig(
        mirrors=("https://mirror.example.com",), mirror_fallback=False)})
    reference = Reference.parse("registry.example.com/team/app:1")
    assert [e.url for e in endpoints(reference, config, plugins)] == ["https://mirror.example.com"]
    with pytest.raises(RegistryUnreachable) as info:
        endpoints(reference, config, plugins, mirrors=False, operation="push")
    assert str(info.value) == ('registry.example.com: every endpoint was ruled out by the configuration (its '
                               'mirrors are for pulls only, and mirror_fallback = false in '
                               '[registry."registry.example.com"])')


def test_a_policy_that_leaves_no_endpoint_is_named(plugins):
    """Not "the configuration": the plugin that emptied the list, and the operation."""
    class Scorched:
        @hookimpl
        def contentstore_modify_endpoints(self, endpoints, operation):
            if operation == "push":
                endpoints.clear()

    plugins.register(Scorched(), "scorched")
    reference = Reference.parse("registry.example.com/team/app:1")
    assert endpoints(reference, Config(), plugins, operation="pull")
    with pytest.raises(RegistryUnreachable) as info:
        endpoints(reference, Config(), plugins, mirrors=False, operation="push")
    assert str(info.value) == ("registry.example.com: no endpoint left to push: the policy plugin 'scorched' "
                               "removed every one (disable it with -p no:scorched)")


def test_each_operation_gets_its_own_endpoints(plugins):
    """A pull-only fallback stays out of pushes and logins; a mirror never serves a push,
    whatever the operation it was added for."""
    seen = []

    class Team:
        @hookimpl
        def contentstore_modify_endpoints(self, reference, endpoints, operation):
            seen.append((str(reference), operation))
            if operation in ("pull", "copy"):
                endpoints.append(Endpoint("https://team-cache.example.com", reference.registry, mirror=True))
            endpoints.append(Endpoint("https://everything.example.com", reference.registry, mirror=True))

    plugins.register(Team(), "team")
    reference = Reference.parse("registry.example.com/team/app:1")
    urls = {operation: [e.url for e in endpoints(reference, Config(), plugins, mirrors=operation == "pull",
                                                 operation=operation)]
            for operation in ("pull", "push", "login")}
    assert urls == {"pull": ["https://registry.example.com", "https://team-cache.example.com",
                             "https://everything.example.com"],
                    "push": ["https://registry.example.com"], "login": ["https://registry.example.com"]}
    assert seen == [(str(reference), "pull"), (str(reference), "push"), (str(reference), "login")]


def test_client_factory(plugins, registry):
    given = []
    credentials = Credentials("someone", "secret")

    def credentials_for(endpoint):
        given.append(endpoint)
        return credentials

    client = client_factory(plugins, credentials_for)(at(registry))
    assert client.accept == plugins.accept_header() and mt.OCI_INDEX in client.accept
    assert client.auth.credentials is credentials and given == [at(registry)]
    client.ping()
    assert client.pinged
