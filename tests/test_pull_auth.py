"""Pulls from registries that want credentials: htpasswd (Basic) and token (Bearer)."""

import os
import subprocess
import sys

import pytest
from servers import PASSWORD, USER, oci_ref, write_docker_config

from contentstore import Store
from contentstore.errors import Unauthorized
from contentstore.testing import build_image, push

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def push_private(source, host, name):
    build_image(source, "src/private", {"secret.txt": "only with credentials\n"})
    return push(oci_ref(source, "docker.io/src/private:latest"), host, name, credentials=(USER, PASSWORD))


def cli_pull(ref, root, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), "pull", ref],
                          capture_output=True, text=True, env=env)


def check_auth(registry_host, source, store, tmp_path):
    ref = push_private(source, registry_host, "team/private:1")
    # no credentials: a one-line 'unauthorized' error, exit 1
    proc = cli_pull(ref, store.root)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("contentstore: error: unauthorized") and proc.stderr.count("\n") == 1
    # wrong credentials
    write_docker_config(tmp_path / "docker-config", registry_host, password="wrong")
    with pytest.raises(Unauthorized):
        store.pull(ref)
    proc = cli_pull(ref, store.root)
    assert proc.returncode == 1 and "unauthorized" in proc.stderr and proc.stderr.count("\n") == 1
    # the right ones, from Docker's config.json
    write_docker_config(tmp_path / "docker-config", registry_host)
    proc = cli_pull(ref, store.root)
    assert proc.returncode == 0, proc.stderr
    assert f"Status: Downloaded newer image for {ref}" in proc.stdout
    assert store.image(ref).layers
    return ref


def test_basic_auth(htpasswd_registry, source, store, tmp_path):
    check_auth(htpasswd_registry.host, source, store, tmp_path)


def test_token_auth(token_registry, source, store, tmp_path):
    check_auth(token_registry.registry.host, source, store, tmp_path)
    scopes = [scope for entry in token_registry.log() for scope in entry["scope"]]
    assert "repository:team/private:pull" in scopes
    authorized = [e for e in token_registry.log() if e["authorization"]]
    assert authorized  # credentials went to the token realm the registry named


def test_credential_helper(htpasswd_registry, source, store, tmp_path):
    ref = push_private(source, htpasswd_registry.host, "team/helper:1")
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-fake"
    helper.write_text("#!/bin/sh\nread server\n"
                      f"echo '{{\"ServerURL\": \"'$server'\", \"Username\": \"{USER}\", \"Secret\": \"{PASSWORD}\"}}'\n")
    helper.chmod(0o755)
    (tmp_path / "docker-config" / "config.json").write_text(
        '{"credHelpers": {"%s": "fake"}}' % htpasswd_registry.host)
    proc = cli_pull(ref, store.root, {"PATH": f"{helper_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr


def test_redirect_to_another_host_gets_no_authorization(htpasswd_registry, proxy_factory, source, store,
                                                        tmp_path):
    """Blob storage behind a redirect (as S3 behind Docker Hub) never sees the credentials."""
    ref = push_private(source, htpasswd_registry.host, "team/redirected:1")
    storage = proxy_factory(htpasswd_registry.url, host="127.0.0.2", upstream_auth=f"{USER}:{PASSWORD}")
    front = proxy_factory(htpasswd_registry.url)
    front.faults({"match": "GET /v2/team/redirected/blobs/", "redirect": storage.url, "times": -1})
    write_docker_config(tmp_path / "docker-config", front.host)
    image = store.pull(f"{front.host}/team/redirected:1")
    assert image.layers
    redirected = storage.requests("/blobs/", "GET")
    assert redirected and not any(e["authorization"] for e in redirected)
    assert any(e["authorization"] for e in front.requests("/manifests/"))
    del ref




def _client(reg, endpoint_url=None):
    from contentstore.model.endpoint import Endpoint
    from contentstore.plugin import manager as pluginmanager
    from contentstore.remote.client import RegistryClient
    from contentstore.remote.credentials import Credentials
    return RegistryClient(Endpoint(endpoint_url or reg.url, reg.host), Credentials(USER, PASSWORD),
                          pluginmanager.create().accept_header())


def test_token_refused_by_the_registry_is_renewed(token_registry, proxy_factory, source):
    reg = token_registry.registry
    push_private(source, reg.host, "team/renew:1")
    proxy = proxy_factory(reg.url)
    client = _client(reg, proxy.url)
    client.ping()
    first = client.get_manifest("team/renew", "1")
    fetched = len(token_registry.log())
    challenge = (f'Bearer realm="{token_registry.token_url}/token",service="contentstore-test-registry",'
                 f'scope="repository:team/renew:pull",error="invalid_token"')
    proxy.faults({"match": "GET /v2/team/renew/manifests/", "status": 401, "www_authenticate": challenge,
                  "times": 1})
    assert client.get_manifest("team/renew", "1").data == first.data
    assert len(token_registry.log()) == fetched + 1


def test_expired_token_is_renewed_before_use(token_registry, source, monkeypatch):
    import time

    from contentstore.remote import auth
    reg = token_registry.registry
    push_private(source, reg.host, "team/expiry:1")
    before = len(token_registry.log())  # skopeo's own tokens
    client = _client(reg)
    client.ping()
    client.get_manifest("team/expiry", "1")
    client.get_manifest("team/expiry", "1")
    fetched = len(token_registry.log())
    assert fetched == before + 1  # cached while valid
    later = time.time() + 3600  # past the token's lifetime; a clock, not a registry, is faked here
    monkeypatch.setattr(auth.time, "time", lambda: later)
    client.get_manifest("team/expiry", "1")
    assert len(token_registry.log()) == fetched + 1


def test_identity_token_is_used_as_a_refresh_token(token_registry, source, store, tmp_path):
    import json
    reg = token_registry.registry
    ref = push_private(source, reg.host, "team/identity:1")
    (tmp_path / "docker-config" / "config.json").write_text(json.dumps(
        {"auths": {reg.host: {"identitytoken": "contentstore-test-refresh-token"}}}))
    assert store.pull(ref).layers
    assert any(entry.get("method") == "POST" for entry in token_registry.log())
    (tmp_path / "docker-config" / "config.json").write_text(json.dumps(
        {"auths": {reg.host: {"identitytoken": "revoked"}}}))
    with pytest.raises(Unauthorized):
        Store(tmp_path / "other").pull(ref)
