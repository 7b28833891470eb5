"""HTTP transport to registries: pooled sessions, timeouts, retries, error mapping.

Retries, backoff and ``Retry-After`` are urllib3's job (``Retry`` mounted on the
session's adapter), for idempotent requests only (GET, HEAD) on connection errors, 429
and 5xx. A body cut in the middle is not something urllib3 can retry; the blob downloader
resumes those with ``Range``.
"""

from __future__ import annotations

import json

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from contentstore.version import __version__
from contentstore.errors import (Denied, RegistryError, RegistryUnreachable, RemoteNotFound,
                     TooManyRequests, Unauthorized)

USER_AGENT = f"contentstore/{__version__} python-requests/{requests.__version__}"

#: (connect, read) seconds: a registry that stops sending for this long has failed.
TIMEOUT = (15, 60)

RETRY_STATUSES = (429, 500, 502, 503, 504)


def retry_policy(total: int = 5, backoff_factor: float = 0.5, other: int = 0) -> Retry:
    """The retry policy for registry requests (also used to pace blob resumes).

    :param other: retries for errors that are neither connect nor read errors; 0 for
        requests (a TLS error repeats itself), more for a download's own resumes.
    """
    return Retry(
        total=total,
        connect=total,
        read=total,
        status=total,
        other=other,
        backoff_factor=backoff_factor,
        backoff_max=30,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def make_session(verify_tls: bool = True, pool_size: int = 10, retries: int = 5) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry_policy(total=retries), pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.verify = verify_tls
    return session


def error_codes(response: requests.Response) -> tuple[list[str], str]:
    """The OCI error codes and the first message of an error answer."""
    try:
        body = json.loads(response.content[:65536] or b"{}")
        errors = body.get("errors") or []
        codes = [str(e.get("code", "")) for e in errors if isinstance(e, dict)]
        message = next((str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")), "")
        return codes, message
    except (ValueError, AttributeError, requests.RequestException):
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
