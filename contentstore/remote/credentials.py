"""Registry credentials from Docker's ``config.json``, as the docker CLI keeps them.

Looked up at ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``:
``credHelpers[host]``, then ``credsStore`` (both run ``docker-credential-NAME get``),
then ``auths`` (``auth``: base64 ``user:password``; ``identitytoken``).
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from contentstore.errors import ConfigError, CredentialsNotFound
from contentstore.local.fsutil import atomic_write

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
#: What may follow ``docker-credential-`` in a helper's program name.
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class Credentials:
    """A username and password, or an identity token (OAuth2 refresh token)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(username={self.username!r}, password=***, identity_token=***)"


def docker_config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG")
    return (Path(directory) if directory else Path.home() / ".docker") / "config.json"


def config_key(registry: str) -> str:
    """The key docker uses in ``auths`` for ``registry``."""
    return DOCKER_HUB_KEY if registry in _HUB_ALIASES else registry


def _host_of(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port``, as docker's ConvertToHostname."""
    if "://" in key:
        key = key.split("://", 1)[1]
    return key.split("/", 1)[0]


class CredentialStore:
    """Reads (and, for ``login``, writes) Docker's ``config.json``."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else docker_config_path()

    def load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: cannot read Docker config: {exc}") from None
        self._check(data)
        return data

    def _check(self, data) -> None:
        """The parts of config.json that are read must have the types docker writes."""
        def wrong(where: str, kind: str):
            return ConfigError(f"{self.path}: invalid Docker config: {where} must be {kind}")

        if not isinstance(data, dict):
            raise wrong("the file", "a JSON object")
        for section in ("auths", "credHelpers"):
            if not isinstance(data.get(section) or {}, dict):
                raise wrong(repr(section), "an object")
        helpers = {"'credsStore'": data.get("credsStore") or ""}
        helpers.update({f"credHelpers[{key!r}]": helper for key, helper in (data.get("credHelpers") or {}).items()})
        for where, helper in helpers.items():
            if not isinstance(helper, str) or (helper and not _HELPER_NAME.fullmatch(helper)):
                raise wrong(where, "the name of a credential helper (letters, digits, '.', '_', '-')")
        for key, entry in (data.get("auths") or {}).items():
            if not isinstance(entry, dict):
                raise wrong(f"auths[{key!r}]", "an object")
            for field in ("auth", "identitytoken", "username", "password"):
                if not isinstance(entry.get(field) or "", str):
                    raise wrong(f"auths[{key!r}].{field}", "a string")

    def helper_for(self, registry: str, config: dict | None = None) -> str | None:
        config = self.load() if config is None else config
        helpers = config.get("credHelpers") or {}
        host = _host_of(config_key(registry))
        for key, helper in helpers.items():
            if _host_of(key) == host or (host == _host_of(DOCKER_HUB_KEY) and key in _HUB_ALIASES):
                return helper
        return config.get("credsStore") or None

    def get(self, registry: str) -> Credentials | None:
        """Credentials for ``registry`` (``host[:port]``), or ``None``."""
        config = self.load()
        helper = self.helper_for(registry, config)
        if helper:
            found = self._from_helper(helper, config_key(registry))
            if found:
                return found
        host = _host_of(config_key(registry))
        for key, entry in (config.get("auths") or {}).items():
            if _host_of(key) != host:
                continue
            if entry.get("identitytoken"):
                return Credentials(identity_token=entry["identitytoken"],
                                   username=_decode_auth(entry.get("auth", ""))[0])
            if entry.get("auth"):
                username, password = _decode_auth(entry["auth"])
                return Credentials(username, password)
            if entry.get("username"):
                return Credentials(entry["username"], entry.get("password", ""))
        return None

    # -- login / logout ---------------------------------------------------------------

    def store(self, registry: str, username: str, password: str) -> str:
        """Save credentials as ``docker login`` does; return where they went."""
        config = self.load()
        helper = self.helper_for(registry, config)
        key = config_key(registry)
        if helper:
            _helper_call(helper, "store", json.dumps(
                {"ServerURL": key, "Username": username, "Secret": password}).encode())
            return f"docker-credential-{helper}"
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        auths = config.setdefault("auths", {})
        for existing in [k for k in auths if _host_of(k) == _host_of(key) and k != key]:
            del auths[existing]
        auths[key] = {"auth": auth}
        self._write(config)
        return str(self.path)

    def erase(self, registry: str) -> bool:
        """Remove the credentials for ``registry``; return whether there were any."""
        config = self.load()
        key = config_key(registry)
        found = False
        auths = config.get("auths") or {}
        for existing in [k for k in auths if _host_of(k) == _host_of(key)]:
            del auths[existing]
            found = True
        if found:
            self._write(config)
        helper = self.helper_for(registry, config)
        if helper:
            try:
                _helper_call(helper, "erase", key.encode())
                found = True
            except CredentialsNotFound:
                pass
        return found

    def _write(self, config: dict) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(config, indent="\t").encode() + b"\n", mode=0o600)

    def _from_helper(self, helper: str, server: str) -> Credentials | None:
        try:
            output = _helper_call(helper, "get", server.encode())
        except CredentialsNotFound:
            return None
        try:
            answer = json.loads(output)
        except ValueError:
            raise ConfigError(f"docker-credential-{helper} get printed no JSON") from None
        username, secret = answer.get("Username", ""), answer.get("Secret", "")
        if username == "<token>":
            return Credentials(identity_token=secret)
        return Credentials(username, secret) if secret else None


def _helper_call(helper: str, action: str, payload: bytes) -> bytes:
    """Run ``docker-credential-HELPER ACTION`` with ``payload`` on its stdin; its stdout.

    :raises CredentialsNotFound: the helper said it has no credentials for the server.
    :raises ConfigError: the helper is missing or failed otherwise.
    """
    import subprocess  # only with a helper configured

    try:
        proc = subprocess.run([f"docker-credential-{helper}", action], input=payload,
                              capture_output=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError(f"credential helper docker-credential-{helper} not found on PATH") from None
    if proc.returncode != 0:
        message = (proc.stdout or proc.stderr).decode(errors="replace").strip()
        text = f"docker-credential-{helper} {action} failed: {message.splitlines()[0] if message else proc.returncode}"
        if "credentials not found" in message.lower():
            raise CredentialsNotFound(text)
        raise ConfigError(text)
    return proc.stdout


def _decode_auth(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value).decode()
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("invalid 'auth' value in Docker config (not base64 of user:password)") from None
    username, _, password = decoded.partition(":")
    return username, password
