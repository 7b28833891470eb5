"""contentstore.remote.client.RegistryClient against real registries on loopback: the
ping, manifests, blobs, tags, the push primitives, errors, and where credentials go.

Images are put into the registries with the plain distribution API (``upload``) or with
the client's own push primitives; faults and odd answers come from the fault proxy.
"""

import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from contentstore.errors import (ManifestTooLarge, NotV2Registry, RegistryError, RegistryUnreachable,
                                 RemoteNotFound, Unauthorized)
from contentstore.model import mediatypes as mt
from contentstore.model.endpoint import Endpoint
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.remote.auth import scope_for
from contentstore.remote.client import RegistryClient, iter_body
from contentstore.remote.credentials import Credentials
from contentstore.testing import free_port

from servers import PASSWORD, USER, upload

pytestmark = pytest.mark.needs("docker-registry")

ACCEPT = ", ".join([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST])
CREDENTIALS = Credentials(USER, PASSWORD)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def make_image(seed: str, layer_size: int = 1000) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "created_by": seed,
                         "rootfs": {"type": "layers", "diff_ids": [sha256(seed.encode())]}}).encode()
    layer = (seed.encode() + os.urandom(layer_size))[:layer_size]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": sha256(layer), "size": len(layer)}],
    }, indent=1).encode()
    return Image(config, layer, manifest)


def publish(url: str, repository: str, tag: str, auth=None, layer_size: int = 1000) -> Image:
    image = make_image(f"{repository}:{tag}", layer_size)
    assert upload(url, repository, [image.config, image.layer], image.manifest, mt.OCI_MANIFEST, tag,
                  auth=auth) == image.digest
    return image


def client_for(server, credentials=None, accept=ACCEPT, explain=None, registry_name=None) -> RegistryClient:
    """A client for ``server`` (a registry or a proxy: anything with ``url`` and ``host``)."""
    return RegistryClient(Endpoint(server.url, registry_name or server.host), credentials, accept, explain)


@pytest.fixture
def client(registry):
    c = client_for(registry)
    yield c
    c.close()


# -- ping ------------------------------------------------------------------------------------------


def test_ping_a_registry(client):
    assert not client.pinged and not client.confirmed_v2
    client.ping()
    assert client.pinged and client.confirmed_v2 and not client.ping_explained


def test_ping_answered_200_without_the_api_version_header(registry, proxy_factory):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/", "reply": {"status": 200, "body": "{}"}, "times": 1})
    client = client_for(proxy)
    client.ping()
    assert client.pinged and not client.confirmed_v2


@pytest.fixture
def web_server(tmp_path):
    """A plain web server (Python's http.server on a directory): no registry at all."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<html>hello</html>\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietFiles, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_ping_a_web_server_that_is_no_registry(web_server):
    url = f"http://127.0.0.1:{web_server.server_address[1]}"
    client = RegistryClient(Endpoint(url, "web.test"), None, ACCEPT)
    with pytest.raises(NotV2Registry) as info:
        client.ping()
    assert str(info.value) == f"{url} does not speak the registry v2 API ({url}/v2/ answered 404 File not found)"
    assert info.value.status == 404 and info.value.url == f"{url}/v2/" and info.value.endpoint_unusable
    assert not client.pinged and not client.confirmed_v2 and not client.ping_explained


@pytest.mark.parametrize("rule, status", [
    ({"reply": {"status": 404, "body": "404 page not found"}}, 404),
    ({"status": 401}, 401),  # 401 without any challenge: nothing to authenticate with
    ({"status": 503, "times": -1}, 503),
])
def test_ping_answers_that_are_not_v2(registry, proxy_factory, rule, status):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/", "times": 1, **rule})
    client = client_for(proxy)
    with pytest.raises(NotV2Registry, match=rf"\(http://{proxy.host}/v2/ answered {status} "):
        client.ping()
    assert not client.pinged
    # a ping is tried twice at most (PING_RETRIES): a down endpoint is soon passed over
    assert len(proxy.requests("/v2/", "GET")) == (2 if status == 503 else 1)


def test_ping_of_nothing_listening():
    port = free_port()
    client = RegistryClient(Endpoint(f"http://127.0.0.1:{port}", "down.test"), None, ACCEPT)
    with pytest.raises(RegistryUnreachable) as info:
        client.ping()
    assert str(info.value).startswith("down.test: cannot reach the registry: ")
    assert not client.pinged


def test_explainer_says_why_the_ping_failed(registry, proxy_factory):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/", "reply": {"status": 404, "body": "nope"}, "times": -1},
                 {"match": "GET /v1/_ping", "reply": {"status": 200, "body": "true"}, "times": -1})
    seen = []

    class Retired(Exception):
        pass

    def explain(endpoint, response, session):
        # it gets the failed answer and a session to ask more with
        v1 = session.get(f"{endpoint.url}/v1/_ping", timeout=10)
        seen.append((endpoint, response.status_code, v1.text))
        return Retired("a v1 registry")

    client = client_for(proxy, explain=explain)
    with pytest.raises(Retired, match="^a v1 registry$"):
        client.ping()
    assert client.ping_explained and not client.pinged
    assert seen == [(client.endpoint, 404, "true")]
    # an explainer that has nothing to say leaves the usual error
    silent = client_for(proxy, explain=lambda *args: seen.append("asked"))
    with pytest.raises(NotV2Registry):
        silent.ping()
    assert not silent.ping_explained and seen[-1] == "asked"


def test_explainer_is_not_asked_after_a_good_ping(registry, htpasswd_registry):
    def explain(*args):
        pytest.fail("asked to explain a ping that succeeded")

    for server in (registry, htpasswd_registry):  # 200, and 401 with a challenge
        client = client_for(server, explain=explain)
        client.ping()
        assert client.pinged and client.confirmed_v2


# -- manifests -------------------------------------------------------------------------------------


def test_head_and_get_manifest(registry, client):
    image = publish(registry.url, "client/manifest", "1")
    assert client.head_manifest("client/manifest", "1") == (image.digest, mt.OCI_MANIFEST)
    for reference in ("1", image.digest):
        fetched = client.get_manifest("client/manifest", reference)
        assert fetched.data == image.manifest  # the bytes served, not re-serialized
        assert fetched.media_type == mt.OCI_MANIFEST and fetched.header_digest == image.digest


def test_accept_header_is_sent_as_given(registry):
    """The registry itself refuses an OCI manifest to a client that does not accept it."""
    image = publish(registry.url, "client/accept", "1")
    docker_only = client_for(registry, accept=mt.DOCKER_MANIFEST)
    with pytest.raises(RemoteNotFound) as info:
        docker_only.get_manifest("client/accept", "1")
    assert str(info.value) == (f"not found: {registry.host}/client/accept:1: "
                               "OCI manifest found, but accept header does not support OCI manifests")
    with pytest.raises(RemoteNotFound):
        docker_only.head_manifest("client/accept", "1")
    oci_only = client_for(registry, accept=mt.OCI_MANIFEST)
    assert oci_only.get_manifest("client/accept", "1").data == image.manifest


@pytest.mark.parametrize("content_type, media_type", [
    ("application/json; charset=utf-8", None), ("text/plain", None), ("application/octet-stream", None),
    (None, None), (f"{mt.OCI_MANIFEST}; charset=utf-8", mt.OCI_MANIFEST),
    (mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST_LIST),
])
def test_media_type_only_from_a_telling_content_type(registry, proxy_factory, content_type, media_type):
    proxy = proxy_factory(registry.url)
    headers = {"Content-Type": content_type} if content_type else {}
    proxy.faults({"match": "/manifests/1", "reply": {"status": 200, "body": '{"schemaVersion": 2}',
                                                     "headers": headers}, "times": -1})
    client = client_for(proxy)
    fetched = client.get_manifest("client/anything", "1")
    assert fetched == type(fetched)(b'{"schemaVersion": 2}', media_type, None)
    assert client.head_manifest("client/anything", "1") == (None, media_type)


def test_manifest_over_the_limit_is_refused_by_its_length(registry, proxy_factory):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "/manifests/big", "body_size": MAX_MANIFEST_SIZE + 1,
                  "content_type": mt.OCI_MANIFEST, "times": 1},
                 {"match": "/manifests/limit", "body_size": MAX_MANIFEST_SIZE,
                  "content_type": mt.OCI_MANIFEST, "times": 1})
    client = client_for(proxy, registry_name="big.test")
    with pytest.raises(ManifestTooLarge) as info:
        client.get_manifest("client/big", "big")
    assert str(info.value) == (f"big.test/client/big:big: manifest of {MAX_MANIFEST_SIZE + 1} bytes is over "
                               f"the {MAX_MANIFEST_SIZE}-byte limit")
    assert proxy.requests("/manifests/big")[0]["sent"] < MAX_MANIFEST_SIZE  # not read to the end
    assert len(client.get_manifest("client/big", "limit").data) == MAX_MANIFEST_SIZE


class EndlessManifest(BaseHTTPRequestHandler):
    """Stands in for a server that streams a manifest with no Content-Length (HTTP/1.0,
    the body ends when the connection closes): neither docker-registry nor the fault proxy
    can be made to answer so."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", mt.OCI_MANIFEST)
        self.end_headers()
        try:
            for _ in range(self.server.chunks):
                self.wfile.write(b" " * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.mark.parametrize("chunks, refused", [(MAX_MANIFEST_SIZE // 65536 + 1, True),
                                             (MAX_MANIFEST_SIZE // 65536, False)])
def test_manifest_over_the_limit_is_refused_while_it_streams(chunks, refused):
    server = ThreadingHTTPServer(("127.0.0.1", 0), EndlessManifest)
    server.chunks = chunks
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        client = RegistryClient(Endpoint(f"http://127.0.0.1:{server.server_address[1]}", "stream.test"),
                                None, ACCEPT)
        if refused:
            with pytest.raises(ManifestTooLarge, match=r"^stream.test/r:1: manifest is over the \d+-byte limit \(cut off after \d+ bytes\)$"):
                client.get_manifest("r", "1")
        else:
            assert len(client.get_manifest("r", "1").data) == MAX_MANIFEST_SIZE
    finally:
        server.shutdown()
        server.server_close()


def test_not_found(registry, client):
    image = publish(registry.url, "client/found", "1")
    host = registry.host
    cases = [
        (lambda: client.get_manifest("client/found", "nope"), f"not found: {host}/client/found:nope: manifest unknown",
         "MANIFEST_UNKNOWN"),
        (lambda: client.get_manifest("client/found", sha256(b"x")),
         f"not found: {host}/client/found@{sha256(b'x')}: manifest unknown", "MANIFEST_UNKNOWN"),
        (lambda: client.open_blob("client/found", sha256(b"x")),
         f"not found: {host}/client/found@{sha256(b'x')}: blob unknown to registry", "BLOB_UNKNOWN"),
        (lambda: client.tags("client/never"), f"not found: {host}/client/never tags: repository name not "
         "known to registry", "NAME_UNKNOWN"),
    ]
    for call, message, code in cases:
        with pytest.raises(RemoteNotFound) as info:
            call()
        assert str(info.value) == message and info.value.codes == (code,) and info.value.status == 404
    with pytest.raises(RemoteNotFound) as info:
        client.head_manifest("client/found", "nope")  # a HEAD has no body to tell more
    assert str(info.value) == f"not found: {host}/client/found:nope: Not Found"
    assert client.get_manifest("client/found", "1").data == image.manifest


# -- blobs ------------------------------------------------------------------------------------------


def test_open_blob_whole_and_from_an_offset(registry, proxy_factory):
    image = publish(registry.url, "client/blob", "1", layer_size=300_000)
    proxy = proxy_factory(registry.url)
    client = client_for(proxy)
    digest = sha256(image.layer)
    with client.open_blob("client/blob", digest) as whole:
        assert whole.status_code == 200 and b"".join(iter_body(whole)) == image.layer
    with client.open_blob("client/blob", digest, offset=123_456) as rest:
        assert rest.status_code == 206 and b"".join(iter_body(rest)) == image.layer[123_456:]
    assert [e["range"] for e in proxy.requests("/blobs/", "GET")] == [None, "bytes=123456-"]


def test_iter_body_hands_over_every_byte_before_a_cut(registry, proxy_factory):
    image = publish(registry.url, "client/cut", "1", layer_size=300_000)
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "/blobs/", "cut_after": 200_001, "times": 1})
    received = bytearray()
    with client_for(proxy).open_blob("client/cut", sha256(image.layer)) as response:
        with pytest.raises(requests.RequestException):
            for chunk in iter_body(response):
                received += chunk
    assert bytes(received) == image.layer[:200_001]  # a resume can start right after them


# -- tags ---------------------------------------------------------------------------------------------


def test_tags(registry, client):
    for tag in ("b", "a", "c"):
        publish(registry.url, "client/tags", tag)
    assert sorted(client.tags("client/tags")) == ["a", "b", "c"]


def test_tags_follow_link_pagination(registry, proxy_factory):
    """This registry (distribution 2.8) pages no tag list, so the proxy serves the first
    page with a ``Link`` to the next; the registry's own list is that next page."""
    for tag in ("b", "c"):
        publish(registry.url, "client/paged", tag)
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/client/paged/tags/list", "times": 1, "reply": {
        "status": 200, "body": json.dumps({"name": "client/paged", "tags": ["a"]}),
        "headers": {"Content-Type": "application/json",
                    "Link": '</v2/client/paged/tags/list?last=a&n=1>; rel="next"'}}})
    tags = client_for(proxy).tags("client/paged")
    assert tags[0] == "a" and sorted(tags[1:]) == ["b", "c"]
    assert [e["path"] for e in proxy.requests("/tags/")] == ["/v2/client/paged/tags/list",
                                                             "/v2/client/paged/tags/list?last=a&n=1"]


def test_tag_pages_that_loop_are_refused(registry, proxy_factory):
    """A registry whose ``Link`` leads back to a page already read would be followed
    forever; the proxy answers so 50 times, then lets the registry end the list."""
    publish(registry.url, "client/looping", "1")
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "GET /v2/client/looping/tags/list", "times": 50, "reply": {
        "status": 200, "body": json.dumps({"tags": ["0"]}),
        "headers": {"Link": '</v2/client/looping/tags/list?n=1>; rel="next"'}}})
    with pytest.raises(RegistryError, match=r"^lie.test/client/looping: the tag list's pages loop "
                                            r"\(/v2/client/looping/tags/list\?n=1 again\)$"):
        client_for(proxy, registry_name="lie.test").tags("client/looping")
    assert len(proxy.requests("/tags/")) == 2


def test_tag_list_that_is_not_json(registry, proxy_factory):
    proxy = proxy_factory(registry.url)
    proxy.faults({"match": "/tags/list", "reply": {"status": 200, "body": "<html>"}, "times": 1})
    with pytest.raises(RegistryError, match=r"^lie.test/client/x: tag list is not JSON$"):
        client_for(proxy, registry_name="lie.test").tags("client/x")


# -- push primitives -----------------------------------------------------------------------------------


PUSH = scope_for("client/push", "pull,push")


def test_chunked_upload(registry, client):
    data = os.urandom(50_000)
    digest = sha256(data)
    assert not client.blob_exists("client/push", digest, PUSH)
    location = client.start_upload("client/push", PUSH)
    assert location.startswith(f"{registry.url}/v2/client/push/blobs/uploads/")
    held, location = client.upload_chunk(location, data[:20_000], 0, 20_000, PUSH)
    assert held == 20_000
    assert client.upload_status(location, PUSH)[0] == 20_000
    held, location = client.upload_chunk(location, io.BytesIO(data[20_000:]), 20_000, 30_000, PUSH)
    assert held == 50_000
    assert client.finish_upload(location, digest, PUSH) == digest
    assert client.blob_exists("client/push", digest, PUSH)
    with client.open_blob("client/push", digest) as response:
        assert response.content == data


def test_monolithic_and_empty_uploads(client):
    for data in (os.urandom(10_000), b""):
        location = client.start_upload("client/push", PUSH)
        assert client.finish_upload(location, sha256(data), PUSH, data=data, length=len(data)) == sha256(data)
        assert client.blob_exists("client/push", sha256(data), PUSH)


def test_upload_errors(client):
    first = client.start_upload("client/push", PUSH)
    held, location = client.upload_chunk(first, b"0123456789", 0, 10, PUSH)
    assert location != first
    with pytest.raises(RemoteNotFound) as info:  # the location a chunk was sent to is spent
        client.upload_chunk(first, b"abc", 10, 3, PUSH)
    assert str(info.value) == "not found: blob upload: blob upload invalid"
    assert info.value.codes == ("BLOB_UPLOAD_INVALID",)
    with pytest.raises(RegistryError) as info:
        client.finish_upload(location, sha256(b"something else"), PUSH)
    assert info.value.status == 400 and "DIGEST_INVALID" in info.value.codes
    assert str(info.value).startswith(f"upload of {sha256(b'something else')}: 400 ")
    # the upload is still there: asked where it stands, it can be finished right
    held, location = client.upload_status(location, PUSH)
    assert held == 10
    assert client.finish_upload(location, sha256(b"0123456789"), PUSH) == sha256(b"0123456789")
    with pytest.raises(RemoteNotFound) as info:
        client.upload_status(location, PUSH)  # a finished upload is gone
    assert info.value.codes == ("BLOB_UPLOAD_UNKNOWN",)


def test_mount_blob_across_repositories(registry, client):
    image = publish(registry.url, "client/mount-src", "1")
    digest = sha256(image.layer)
    dst = scope_for("client/mount-dst", "pull,push")
    assert not client.blob_exists("client/mount-dst", digest, dst)
    assert client.mount_blob("client/mount-dst", digest, "client/mount-src", dst) == (True, None)
    assert client.blob_exists("client/mount-dst", digest, dst)
    # from a repository without the blob: no mount, an upload session instead
    data = b"not anywhere yet"
    mounted, location = client.mount_blob("client/mount-dst", sha256(data), "client/mount-src", dst)
    assert not mounted and location.startswith(f"{registry.url}/v2/client/mount-dst/blobs/uploads/")
    client.finish_upload(location, sha256(data), dst, data=data, length=len(data))
    assert client.blob_exists("client/mount-dst", sha256(data), dst)


def test_put_manifest(registry, client):
    image = make_image("client/put:1")
    for blob in (image.config, image.layer):
        location = client.start_upload("client/push", PUSH)
        client.finish_upload(location, sha256(blob), PUSH, data=blob, length=len(blob))
    assert client.put_manifest("client/push", "1", image.manifest, mt.OCI_MANIFEST, PUSH) == image.digest
    assert client.get_manifest("client/push", "1").data == image.manifest
    assert "1" in client.tags("client/push")
    missing = make_image("client/put:missing")  # blobs never uploaded
    with pytest.raises(RegistryError) as info:
        client.put_manifest("client/push", "2", missing.manifest, mt.OCI_MANIFEST, PUSH)
    assert info.value.status == 400 and "MANIFEST_BLOB_UNKNOWN" in info.value.codes
    assert str(info.value).startswith(f"manifest {registry.host}/client/push:2: 400 ")


# -- authentication and where credentials go --------------------------------------------------------------


def test_basic_auth(htpasswd_registry):
    auth = (USER, PASSWORD)
    image = publish(htpasswd_registry.url, "client/private", "1", auth=auth)
    client = client_for(htpasswd_registry, CREDENTIALS)
    client.ping()
    assert client.auth.challenge.scheme == "basic"
    assert client.get_manifest("client/private", "1").data == image.manifest
    assert client.tags("client/private") == ["1"]
    for credentials in (None, Credentials(USER, "wrong")):
        other = client_for(htpasswd_registry, credentials)
        other.ping()
        assert other.pinged
        with pytest.raises(Unauthorized) as info:
            other.get_manifest("client/private", "1")
        assert str(info.value) == f"unauthorized: {htpasswd_registry.host}/client/private:1: authentication required"
        assert info.value.status == 401


def test_bearer_auth_push_and_pull(token_registry):
    reg = token_registry.registry
    client = client_for(reg, CREDENTIALS)
    client.ping()
    assert client.auth.challenge.scheme == "bearer"
    image = make_image("client/token:1")
    push = scope_for("client/token", "pull,push")
    for blob in (image.config, image.layer):
        if not client.blob_exists("client/token", sha256(blob), push):
            location = client.start_upload("client/token", push)
            client.finish_upload(location, sha256(blob), push, data=blob, length=len(blob))
    assert client.put_manifest("client/token", "1", image.manifest, mt.OCI_MANIFEST, push) == image.digest
    assert client.get_manifest("client/token", "1").data == image.manifest
    with client.open_blob("client/token", sha256(image.layer)) as response:
        assert response.content == image.layer
    assert client.tags("client/token") == ["1"]
    scopes = [scope for entry in token_registry.log() for scope in entry["scope"]]
    assert scopes == ["repository:client/token:pull,push", "repository:client/token:pull"]  # one token each
    anonymous = client_for(reg)
    anonymous.ping()
    with pytest.raises(Unauthorized):
        anonymous.get_manifest("client/token", "1")


def test_refused_token_is_renewed_and_a_file_body_resent(token_registry, proxy_factory):
    """A 401 mid-upload (the token expired): the client fetches a new token and sends the
    chunk again from where the file object stood."""
    reg = token_registry.registry
    proxy = proxy_factory(reg.url)
    client = client_for(proxy, CREDENTIALS)
    client.ping()
    push = scope_for("client/renew", "pull,push")
    location = client.start_upload("client/renew", push)
    challenge = (f'Bearer realm="{token_registry.token_url}/token",service="contentstore-test-registry",'
                 f'scope="repository:client/renew:pull,push",error="invalid_token"')
    proxy.faults({"match": "PATCH /v2/client/renew/", "status": 401, "www_authenticate": challenge, "times": 1})
    data = os.urandom(40_000)
    body = io.BytesIO(b"header" + data)
    body.seek(6)
    held, location = client.upload_chunk(location, body, 0, len(data), push)
    assert held == len(data)
    assert client.finish_upload(location, sha256(data), push) == sha256(data)
    assert [e["status"] for e in proxy.requests("", "PATCH")] == [401, 202]
    assert len(token_registry.log()) == 2  # the first token, and its renewal


def test_credentials_never_go_to_another_host(htpasswd_registry, proxy_factory):
    """Upload locations, redirects and Link URLs may point at other hosts (blob storage);
    those get no Authorization. The other host here is a proxy on 127.0.0.2 that
    authenticates to the registry by itself, as storage with its own access would."""
    reg = htpasswd_registry
    image = publish(reg.url, "client/elsewhere", "1", auth=(USER, PASSWORD))
    storage = proxy_factory(reg.url, host="127.0.0.2", upstream_auth=f"{USER}:{PASSWORD}")
    client = client_for(reg, CREDENTIALS)
    client.ping()
    push = scope_for("client/elsewhere", "pull,push")

    # an upload location on another host
    location = client.start_upload("client/elsewhere", push).replace(reg.host, storage.host)
    data = os.urandom(5000)
    held, location = client.upload_chunk(location, data, 0, len(data), push)
    assert held == len(data) and location.startswith(storage.url)
    assert client.finish_upload(location, sha256(data), push) == sha256(data)
    assert client.blob_exists("client/elsewhere", sha256(data), push)

    # a redirect of a blob to another host
    front = proxy_factory(reg.url)
    front.faults({"match": "GET /v2/client/elsewhere/blobs/", "redirect": storage.url, "times": -1})
    via_front = client_for(front, CREDENTIALS, registry_name=reg.host)
    via_front.ping()
    with via_front.open_blob("client/elsewhere", sha256(image.layer)) as response:
        assert response.content == image.layer

    # a Link to the next page of tags on another host
    front.faults({"match": "GET /v2/client/elsewhere/tags/list", "times": 1, "reply": {
        "status": 200, "body": json.dumps({"tags": ["0"]}),
        "headers": {"Link": f'<{storage.url}/v2/client/elsewhere/tags/list>; rel="next"'}}})
    assert via_front.tags("client/elsewhere") == ["0", "1"]

    elsewhere = storage.requests()
    assert [(e["method"], e["path"].split("?")[0].rsplit("/", 2)[-2]) for e in elsewhere] == [
        ("PATCH", "uploads"), ("PUT", "uploads"), ("GET", "blobs"), ("GET", "tags")]
    assert not any(e["authorization"] for e in elsewhere)
    assert all(e["authorization"] for e in front.requests("/v2/client/"))

    # and another host that wants credentials gets a 401, not ours
    bare = proxy_factory(reg.url, host="127.0.0.2")
    location = client.start_upload("client/elsewhere", push).replace(reg.host, bare.host)
    with pytest.raises(Unauthorized):
        client.upload_status(location, push)
    [asked] = bare.requests()
    assert asked["status"] == 401 and not asked["authorization"]
