"""Registry authentication: ``WWW-Authenticate`` challenges, Basic, and Bearer tokens.

The registry's answer to ``GET /v2/`` (or to any request) says how to authenticate. For
Bearer, a token is fetched from the realm for each scope (anonymously, with a username
and password, or with an identity token as an OAuth2 refresh token) and cached until it
expires or the registry refuses it.

The realm is whatever URL the registry names, on any host. Credentials go to a realm on
plain ``http://`` only when its host is loopback or marked ``insecure`` (the client
says which); otherwise the token is not asked for and the error says why. The
refresh-token ``POST`` follows no redirect (a 307 would repeat the token elsewhere);
the ``GET`` with a password follows them, and requests drops the password on a redirect
to another host or scheme. A token answer is read under the request deadline and
refused past :data:`TOKEN_ANSWER_LIMIT` bytes.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import requests

from contentstore.config import Config, redact_userinfo
from contentstore.errors import RegistryError, Unauthorized
from contentstore.remote.credentials import Credentials
from contentstore.remote.transport import TIMEOUT, Deadline, error_codes, read_body, unreachable

_PARAM = re.compile(r'([\w.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*))')
_CHALLENGE = re.compile(
    r'([A-Za-z][\w.-]*)(?:\s+|$)((?:[\w.-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^,\s"]*)\s*(?:,\s*|$))*)'
)

#: Tokens are renewed this many seconds before they expire.
EXPIRY_MARGIN = 10
#: As Docker: a token said to live less than this is taken to live this long.
MINIMUM_TOKEN_LIFETIME = 60
CLIENT_ID = "contentstore"
#: A token answer (JSON with a JWT or two) bigger than this is refused.
TOKEN_ANSWER_LIMIT = 1 << 20


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (a host name, without port or brackets). Names
    are not resolved: a name that maps to 127.0.0.1 is not loopback here."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: dict = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header (one or more challenges)."""
    challenges = []
    for match in _CHALLENGE.finditer(header or ""):
        params = {
            p.group(1).lower(): re.sub(r"\\(.)", r"\1", p.group(2) if p.group(2) is not None else p.group(3))
            for p in _PARAM.finditer(match.group(2))
        }
        challenges.append(Challenge(match.group(1).lower(), params))
    return challenges


def scope_for(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


class Authenticator:
    """Authorization headers for one registry endpoint, by scope."""

    def __init__(self, registry: str, session: requests.Session, credentials: Credentials | None,
                 plain_http_allowed: Callable[[str], bool] | None = None,
                 deadline: float = Config.request_deadline):
        """
        :param plain_http_allowed: ``(host[:port]) -> bool``: may credentials go to this
            host over plain HTTP? By default only to loopback addresses.
        :param deadline: seconds a token request may take in all.
        """
        self.registry = registry
        self.session = session
        self.credentials = credentials
        self.plain_http_allowed = plain_http_allowed or (lambda host: is_loopback(urlsplit(f"//{host}").hostname or host))
        self.deadline = deadline
        self.challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def learn(self, response: requests.Response) -> bool:
        """Take the challenge from a 401; return whether there is a way to authenticate."""
        challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
        chosen = next((c for c in challenges if c.scheme == "bearer"), None) or \
            next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is None:
            return False
        with self._lock:
            self.challenge = chosen
        return True

    def invalidate(self, scope: str) -> None:
        with self._lock:
            self._tokens.pop(scope, None)

    def header(self, scope: str) -> str | None:
        """The ``Authorization`` value for a request within ``scope``, if any is needed."""
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if not self.credentials or not self.credentials.username:
                return None
            return requests.auth._basic_auth_str(self.credentials.username, self.credentials.password)
        with self._lock:
            cached = self._tokens.get(scope)
            if cached and cached[1] > time.time():
                return f"Bearer {cached[0]}"
            token, expires_at = self._fetch_token(challenge, scope)
            self._tokens[scope] = (token, expires_at)
            return f"Bearer {token}"

    def _fetch_token(self, challenge: Challenge, scope: str) -> tuple[str, float]:
        realm = challenge.realm
        if not realm or not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{self.registry}: bearer challenge without a usable realm: {realm!r}")
        service = challenge.params.get("service", "")
        scopes = sorted(set(scope.split()) | set(challenge.params.get("scope", "").split()))
        creds = self.credentials
        shown = redact_userinfo(realm)
        what = f"token from {shown}"
        if creds and (creds.username or creds.identity_token):
            self._check_realm_for_credentials(realm, shown)
        with Deadline(self.deadline, what):
            return self._request_token(realm, what, service, scopes, creds)

    def _check_realm_for_credentials(self, realm: str, shown: str) -> None:
        parts = urlsplit(realm)
        if parts.scheme != "http" or self.plain_http_allowed(parts.netloc):
            return
        raise Unauthorized(
            f"unauthorized: {self.registry}: credentials not sent to the token realm {shown}: it is "
            f"plain HTTP to {parts.netloc}, which is neither loopback nor marked insecure "
            f'(insecure = true under [registry."{parts.netloc}"] allows it)', url=shown)

    def _request_token(self, realm: str, what: str, service: str, scopes: list[str],
                       creds: Credentials | None) -> tuple[str, float]:
        try:
            if creds and creds.identity_token:
                # No redirect: a 307 would post the refresh token to wherever it points.
                response = self.session.post(realm, timeout=TIMEOUT, stream=True, allow_redirects=False, data={
                    "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": service, "scope": " ".join(scopes), "client_id": CLIENT_ID,
                })
            else:
                auth = (creds.username, creds.password) if creds and creds.username else None
                response = self.session.get(realm, timeout=TIMEOUT, auth=auth, stream=True,
                                            params=[("service", service)] + [("scope", s) for s in scopes])
        except requests.RequestException as exc:
            raise unreachable(exc, what) from None
        with response:
            return self._token_from(response, what, redact_userinfo(realm), creds)

    def _token_from(self, response: requests.Response, what: str, realm: str,
                    creds: Credentials | None) -> tuple[str, float]:
        if response.status_code in (401, 403):
            _, message = error_codes(response)
            reason = "incorrect username or password" if creds else "authentication required"
            raise Unauthorized(f"unauthorized: {self.registry}: {reason}"
                               + (f" ({message})" if message else ""), status=response.status_code,
                               url=realm)
        if response.status_code >= 300:
            kind = "redirect, not followed with a refresh token" if response.status_code < 400 else response.reason
            raise RegistryError(f"{what}: {response.status_code} {kind}",
                                status=response.status_code, url=realm)
        try:
            data = read_body(response, TOKEN_ANSWER_LIMIT, lambda received: RegistryError(
                f"{what}: the answer is over the {TOKEN_ANSWER_LIMIT}-byte limit (cut off after {received} bytes)",
                url=realm))
        except requests.RequestException as exc:
            raise unreachable(exc, what) from None
        try:
            body = json.loads(data)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise RegistryError(f"{what}: the answer holds no token")
        try:
            lifetime = max(float(body.get("expires_in") or 0), MINIMUM_TOKEN_LIFETIME)
        except (TypeError, ValueError):
            lifetime = MINIMUM_TOKEN_LIFETIME
        return token, time.time() + lifetime - EXPIRY_MARGIN
