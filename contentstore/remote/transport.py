"""HTTP transport to registries: pooled sessions, timeouts, retries, backoff, error mapping.

Two kinds of retry live here, with one pacing:

- a *request* (GET, HEAD) that fails to connect, or is answered 429 or 5xx, is retried
  by urllib3's ``Retry`` mounted on the session's adapter, honouring ``Retry-After``;
- an *operation* made of several requests that broke in the middle (a blob body cut
  mid-stream, resumed with ``Range``; an upload whose session the registry dropped) is
  retried by its caller through :class:`Backoff`, which paces the tries the same way and
  says when to give up (as go-containerregistry's retry transport wraps its operations).
"""

from __future__ import annotations

import json
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from contentstore.errors import (
    Denied,
    RegistryError,
    RegistryUnreachable,
    RemoteNotFound,
    TooManyRequests,
    Unauthorized,
)
from contentstore.version import __version__

USER_AGENT = f"contentstore/{__version__} python-requests/{requests.__version__}"

#: (connect, read) seconds: a registry that stops sending for this long has failed.
TIMEOUT = (15, 60)

RETRY_STATUSES = (429, 500, 502, 503, 504)
#: Tries of a request or an operation, and how they are paced: no wait before the
#: second, then FACTOR * 2 ** (n - 1) seconds after the n-th failure, at most BACKOFF_MAX
#: (urllib3's formula).
ATTEMPTS = 5
BACKOFF_FACTOR = 0.5
BACKOFF_MAX = 30


def retry_policy(total: int = ATTEMPTS) -> Retry:
    """urllib3's retry policy for registry requests: idempotent methods only, on
    connection errors, 429 and 5xx (not on TLS or other errors, which repeat themselves)."""
    return Retry(
        total=total,
        connect=total,
        read=total,
        status=total,
        other=0,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=BACKOFF_MAX,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class Backoff:
    """Paces the tries of one operation that broke in the middle, and ends them.

    ::

        backoff = Backoff(f"download of {digest}")
        while True:
            try:
                return attempt()
            except RegistryUnreachable as error:
                backoff.failed(error)   # raises once the tries are spent
                backoff.wait()
    """

    def __init__(self, what: str, attempts: int = ATTEMPTS, factor: float = BACKOFF_FACTOR,
                 maximum: float = BACKOFF_MAX, sleep=time.sleep):
        self.what = what
        self.attempts = attempts
        self.factor = factor
        self.maximum = maximum
        self.failures = 0
        self._sleep = sleep

    def delay(self) -> float:
        """Seconds to wait before the next try (none before the first retry)."""
        if self.failures <= 1:
            return 0.0
        return min(self.maximum, self.factor * 2 ** (self.failures - 1))

    def failed(self, error: Exception) -> None:
        """Count a failure; raise :class:`RegistryUnreachable` when it was the last try."""
        self.failures += 1
        if self.failures > self.attempts:
            # ``attempts`` counts the retries after the first try (as urllib3's total)
            raise RegistryUnreachable(f"{self.what} failed after {self.failures} attempts: {error}") from None

    def wait(self) -> None:
        """Sleep before the next try."""
        self._sleep(self.delay())


def make_session(verify_tls: bool = True, pool_size: int = 10, retries: int = 5) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry_policy(total=retries), pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.verify = verify_tls
    return session


def error_codes(response: requests.Response) -> tuple[list[str], str]:
    """The OCI error codes and the first message of an error answer (its first line:
    the errors raised from it are one line)."""
    try:
        body = json.loads(response.content[:65536] or b"{}")
        errors = body.get("errors") or []
        codes = [str(e.get("code", "")) for e in errors if isinstance(e, dict)]
        message = next((str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")), "")
        return codes, next((line.strip() for line in message.splitlines() if line.strip()), "")
    except (ValueError, AttributeError, TypeError, requests.RequestException):
        return [], ""


def raise_for_status(response: requests.Response, what: str) -> None:
    """Turn an error answer into the matching :class:`RegistryError` subclass."""
    if response.status_code < 400:
        return
    codes, message = error_codes(response)
    status = response.status_code
    detail = message or (codes[0].lower().replace("_", " ") if codes else response.reason or "")
    text = f"{what}: {status} {detail}".rstrip()
    kwargs = dict(status=status, codes=tuple(codes), url=response.url)
    if status == 401:
        raise Unauthorized(f"unauthorized: {what}: authentication required"
                           + (f" ({message})" if message and message != "authentication required" else ""), **kwargs)
    if status == 403 or "DENIED" in codes:
        raise Denied(f"denied: {what}: requested access to the resource is denied", **kwargs)
    if status == 404:
        raise RemoteNotFound(f"not found: {what}" + (f": {detail}" if detail else ""), **kwargs)
    if status == 429:
        raise TooManyRequests(f"too many requests: {what}: the registry kept answering 429", **kwargs)
    raise RegistryError(text, **kwargs)


def unreachable(exc: requests.RequestException, what: str) -> RegistryUnreachable:
    reason = exc.__class__.__name__
    inner = exc.args[0] if exc.args else None
    detail = getattr(inner, "reason", None) or inner or exc
    text = str(detail).splitlines()[0] if str(detail) else reason
    return RegistryUnreachable(f"{what}: cannot reach the registry: {text}")
