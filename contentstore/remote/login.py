"""``login`` and ``logout``: check credentials against a registry, keep them as docker does."""

from __future__ import annotations

import requests

from contentstore.config import Config
from contentstore.errors import InvalidReference, Unauthorized
from contentstore.model.reference import DEFAULT_REGISTRY, LEGACY_DEFAULT_REGISTRY, Reference, is_registry_host
from contentstore.plugin.manager import Plugins
from contentstore.remote import fallback
from contentstore.remote.auth import Challenge
from contentstore.remote.client import RegistryClient
from contentstore.remote.credentials import Credentials, CredentialStore
from contentstore.remote.transport import TIMEOUT, raise_for_status, unreachable


def registry_name(text: str) -> str:
    """``https://host:port/`` or ``host:port`` -> ``host:port``; Docker Hub's names -> docker.io."""
    name = text.split("://", 1)[-1].split("/", 1)[0]
    if name in (LEGACY_DEFAULT_REGISTRY, "registry-1.docker.io", "index.docker.io"):
        return DEFAULT_REGISTRY
    if not is_registry_host(name):
        raise InvalidReference(f"invalid registry name {text!r}")
    return name


def check(registry: str, username: str, password: str, config: Config, plugins: Plugins) -> None:
    """Raise :class:`Unauthorized` unless the registry accepts the credentials."""
    probe = Reference(registry, "library/login-check" if registry == DEFAULT_REGISTRY else "login-check")
    credentials = Credentials(username, password)
    candidates = fallback.endpoints(probe, config, plugins, mirrors=False, operation="login")
    fallback.on_each_endpoint(candidates, fallback.client_factory(plugins, lambda endpoint: credentials, config),
                              lambda client: _authenticate(client, credentials))


def _authenticate(client: RegistryClient, credentials: Credentials) -> None:
    challenge: Challenge | None = client.auth.challenge
    if challenge is None:
        return  # the registry asks for no credentials
    url = client.url("/v2/")
    # Basic: the credentials themselves; Bearer: a token for no scope, which the token
    # server only gives for good credentials; then /v2/ must accept it.
    header = client.auth.header("")
    try:
        response = client.session.get(url, headers={"Authorization": header} if header else {},
                                      timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise unreachable(exc, client.endpoint.registry) from None
    with response:
        if response.status_code == 401:
            raise Unauthorized(f"unauthorized: {client.endpoint.registry}: incorrect username or password",
                               status=401, url=url)
        raise_for_status(response, f"login to {client.endpoint.registry}")


def login(registry: str, username: str, password: str, config: Config, plugins: Plugins,
          credentials: CredentialStore | None = None) -> str:
    """Check the credentials against the registry, then save them as ``docker login``
    does; return where they went."""
    registry = registry_name(registry)
    if not username or not password:
        raise Unauthorized("unauthorized: a username and a password are needed")
    check(registry, username, password, config, plugins)
    return (credentials or CredentialStore()).store(registry, username, password)


def logout(registry: str, credentials: CredentialStore | None = None) -> bool:
    return (credentials or CredentialStore()).erase(registry_name(registry))
