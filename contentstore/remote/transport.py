"""HTTP transport to registries: pooled sessions, timeouts, deadlines, retries, backoff,
bounded bodies, error mapping.

Three limits on time, so that no registry keeps an operation silent for long:

- every read waits at most the read timeout (:data:`TIMEOUT`);
- a request run under a :class:`Deadline` (pings, manifests, tokens, tag lists, and a
  blob request until its headers) ends when the deadline passes, retries and body
  included: the deadline's timer cuts the request's connections, so a registry that
  sends one byte at a time, or gzip members that decode to nothing, is stopped too;
- a blob body is held to a :class:`MinimumRate`.

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
import socket
import threading
import time
from typing import Callable, Iterator
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from contentstore.config import redact_userinfo
from contentstore.errors import (
    CertificateError,
    Denied,
    RegistryError,
    RegistryUnreachable,
    RemoteNotFound,
    TooManyRequests,
    Unauthorized,
)
from contentstore.model.limits import CHUNK_SIZE
from contentstore.remote.tls import TLSSettings, explain_failure
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


#: At most this much of an error answer's body is read (for its OCI error codes).
ERROR_BODY_LIMIT = 64 * 1024


# -- deadlines ---------------------------------------------------------------------------------

_active = threading.local()


def _deadlines() -> list["Deadline"]:
    stack = getattr(_active, "deadlines", None)
    if stack is None:
        stack = _active.deadlines = []
    return stack


class _Expired(Exception):
    """Raised inside urllib3 once a deadline has passed. Not an ``OSError``, so neither
    urllib3 nor requests retries or wraps it: it ends the request at once, and
    :class:`Deadline` turns it into its error."""


class Deadline:
    """An overall wall-clock limit on what runs in its ``with`` block in this thread:
    the requests sent (their retries, redirects and bodies included).

    When it passes, the connections those requests use are shut down, whatever they
    are waiting for; a retry that would start after it, or a ``Retry-After`` that would
    sleep past it, is not waited for. Leaving the block after the deadline passed, with
    a transport error or with none (a body cut short can look whole), raises
    :class:`RegistryUnreachable` saying so. Deadlines nest: an inner one (a token
    fetched for a manifest request) is bounded by the outer too, whose error then says
    what it was waiting for.
    """

    def __init__(self, seconds: float, what: str):
        self.seconds = seconds
        self.what = what
        self.expires = time.monotonic() + seconds
        self.expired = False
        self.reason = ""
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        self._stack = _deadlines()
        self._stack.append(self)
        self._timer.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        with self._lock:
            self._done = True
        self._timer.cancel()
        self._stack.remove(self)
        if not self.expired:
            return False  # an _Expired here is an outer deadline's: it reports it
        # Past the deadline a transport error is the deadline's doing, and so may be a
        # clean end: a body without a Content-Length ends where the cut came.
        if exc is None or isinstance(exc, (_Expired, RegistryUnreachable, requests.RequestException,
                                           urllib3.exceptions.HTTPError, OSError)):
            raise self.error() from None
        return False

    def error(self) -> RegistryUnreachable:
        reason = f" ({self.reason})" if self.reason else ""
        return RegistryUnreachable(f"{self.what}: no complete answer within the {self.seconds:g} s "
                                   f"request deadline{reason}")

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (refuse it now, if it has)."""
        with self._lock:
            if self.expired or time.monotonic() >= self.expires:
                self.expired = True
                raise _Expired(self.what)
            self._sockets.append(sock)

    def allows_wait(self, seconds: float, why: str) -> bool:
        """Whether waiting ``seconds`` still ends before the deadline; if not, it is
        taken as passed now (nothing is gained by sleeping into it)."""
        if time.monotonic() + seconds < self.expires:
            return True
        with self._lock:
            self.expired = True
            self.reason = why
        return False

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            inner = self._stack[-1] if self._stack else self
            if inner is not self and not self.reason:
                self.reason = f"while waiting for {inner.what}"
            for sock in self._sockets:
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    try:
        # The plain socket's shutdown, also under TLS: it wakes a reader blocked in
        # another thread without touching the TLS object that reader is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _watch(connection: HTTPConnection) -> None:
    # The socket, not the connection: http.client lets go of the connection's socket
    # when the answer ends with the connection (no Content-Length), while the answer
    # still reads from it.
    if connection.sock is None:
        return
    for deadline in _deadlines():
        deadline.watch(connection.sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self, *args, **kwargs):
        _watch(self)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args, **kwargs):
        _watch(self)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOL_CLASSES = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter with connections a :class:`Deadline` can cut, speaking TLS as
    its :class:`~.tls.TLSSettings` say (one SSL context, built once: the CAs of the
    host's certs.d or configuration beside the system's, its client certificate), also
    through a proxy's tunnel. A request's own ``verify`` and ``cert``, and
    ``$REQUESTS_CA_BUNDLE``, do not change them (the bundle is among the system's CAs)."""

    def __init__(self, tls: TLSSettings | None = None, **kwargs):
        self.tls = tls if tls is not None else TLSSettings()
        # Built now: a certificate file that cannot be used is a ConfigError here, not
        # something requests would take for a bad URL in the middle of a request.
        self.context = self.tls.context()
        super().__init__(**kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") != "https":
            return host_params, pool_kwargs
        return host_params, {"ssl_context": self.context,
                             "cert_reqs": "CERT_REQUIRED" if self.tls.verify else "CERT_NONE"}

    def cert_verify(self, conn, url, verify, cert) -> None:
        # Everything is in the pool's SSL context: no CA file or client pair is loaded
        # into it again for each connection.
        conn.cert_reqs = "CERT_REQUIRED" if self.tls.verify else "CERT_NONE"
        conn.ca_certs = conn.ca_cert_dir = None
        conn.cert_file = conn.key_file = None

    def send(self, request, *args, **kwargs):
        try:
            return super().send(request, *args, **kwargs)
        except requests.exceptions.SSLError as exc:
            exc.tls_settings = self.tls  # what unreachable() advises on
            raise

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have their own connections
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager


class _Retry(Retry):
    """urllib3's ``Retry``, which does not sleep into a running :class:`Deadline`."""

    def sleep(self, response=None) -> None:
        try:
            wait = self.get_retry_after(response) if response is not None and \
                self.respect_retry_after_header else None
        except urllib3.exceptions.InvalidHeader:
            wait = None
        why = f"the registry asked to retry after {wait:g} s" if wait else "retrying"
        wait = wait if wait else self.get_backoff_time()
        for deadline in _deadlines():
            if not deadline.allows_wait(wait, why):
                raise _Expired(why)
        super().sleep(response)


# -- rates and bounded bodies --------------------------------------------------------------------


class MinimumRate:
    """Ends a body that arrives slower than ``rate`` bytes a second on average over a
    ``window`` of seconds. Checked as bytes arrive; a body that stops altogether meets
    the read timeout, which a blob request sets to the window."""

    def __init__(self, rate: float, window: float, what: str, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.window = window
        self.what = what
        self._clock = clock
        self._start = clock()
        self._count = 0

    def add(self, count: int) -> None:
        self._count += count
        now = self._clock()
        elapsed = now - self._start
        if elapsed < self.window:
            return
        if self._count < self.rate * elapsed:
            raise RegistryUnreachable(
                f"{self.what}: {self._count / elapsed:.0f} bytes/s over {elapsed:.0f} s, below the "
                f"minimum transfer rate of {self.rate:.0f} bytes/s")
        self._start, self._count = now, 0


def iter_body(response: requests.Response, limit: int | None = None,
              too_much: Callable[[int], Exception] | None = None,
              rate: MinimumRate | None = None, decode: bool = True,
              chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The body of a streaming response, in chunks of up to ``chunk_size`` (1 MiB), decoded.

    Each chunk is what arrived (``read1``), so when a connection breaks every byte that
    came before the break has been handed over, and a resume starts right after it.

    :param limit: the most bytes (decoded) the body may have; the chunk that passes it
        is not handed over: ``too_much(bytes received)`` is raised instead, and the
        caller's ``with response`` closes the connection.
    :param rate: a minimum rate the body must keep.
    :param chunk_size: the most bytes a chunk holds.
    :param decode: undo a ``Content-Encoding``. ``False`` for an answer that has none
        (a blob, see :meth:`RegistryClient.open_blob`): each chunk is then the very
        bytes object the socket was read into, never copied through urllib3's buffer.
    """
    raw = response.raw
    received = 0
    while True:
        try:
            chunk = raw.read1(chunk_size, decode_content=decode)
        except urllib3.exceptions.HTTPError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from None
        except OSError as exc:
            raise requests.exceptions.ConnectionError(exc) from None
        if not chunk:
            return
        received += len(chunk)
        if limit is not None and received > limit:
            raise (too_much(received) if too_much else
                   RegistryError(f"{response.url}: answer over {limit} bytes", url=response.url))
        if rate is not None:
            rate.add(len(chunk))
        yield chunk


def read_body(response: requests.Response, limit: int, too_much: Callable[[int], Exception]) -> bytes:
    """The whole (decoded) body of a streaming response, refused past ``limit`` bytes."""
    data = bytearray()
    for chunk in iter_body(response, limit, too_much):
        data += chunk
    return bytes(data)


# -- sessions ------------------------------------------------------------------------------------


def retry_policy(total: int = ATTEMPTS) -> Retry:
    """urllib3's retry policy for registry requests: idempotent methods only, on
    connection errors, 429 and 5xx (not on TLS or other errors, which repeat themselves);
    no sleep runs past a :class:`Deadline`."""
    return _Retry(
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


def make_session(verify_tls: bool = True, pool_size: int = 10, retries: int = 5,
                 tls: TLSSettings | None = None) -> requests.Session:
    """A session with the retry policy and connections a :class:`Deadline` can cut.

    :param tls: how to speak TLS (:func:`.tls.for_host`); default: the system's CAs,
        checked unless ``verify_tls`` is false.

    Proxies come from ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` (requests reads
    them for each request); only credentials in the proxy's own URL go to the proxy.
    """
    tls = tls if tls is not None else TLSSettings(verify=verify_tls)
    session = requests.Session()
    adapter = _Adapter(tls, max_retries=retry_policy(total=retries), pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.verify = tls.verify
    return session


def error_codes(response: requests.Response) -> tuple[list[str], str]:
    """The OCI error codes and the first message of an error answer (its first line: the
    errors raised from it are one line; at most :data:`ERROR_BODY_LIMIT` bytes are read)."""
    try:
        body = json.loads(_error_body(response) or b"{}")
        errors = body.get("errors") or []
        codes = [str(e.get("code", "")) for e in errors if isinstance(e, dict)]
        message = next((str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")), "")
        return codes, next((line.strip() for line in message.splitlines() if line.strip()), "")
    except (ValueError, AttributeError, TypeError, requests.RequestException):
        return [], ""


def _error_body(response: requests.Response) -> bytes:
    data = bytearray()
    for chunk in response.iter_content(8192):
        data += chunk
        if len(data) >= ERROR_BODY_LIMIT:
            break
    return bytes(data[:ERROR_BODY_LIMIT])


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
    if status == 407:
        raise RegistryUnreachable(proxy_refusal(what, proxy_for(response.url)), **kwargs)
    if status == 429:
        raise TooManyRequests(f"too many requests: {what}: the registry kept answering 429", **kwargs)
    raise RegistryError(text, **kwargs)


def unreachable(exc: requests.RequestException, what: str) -> RegistryUnreachable:
    """The error for a request that got no answer: one line saying why. A TLS failure
    names the host and what to configure (a :class:`CertificateError` when it is about
    certificates)."""
    if isinstance(exc, requests.exceptions.SSLError):
        request = getattr(exc, "request", None)
        host = urlsplit(request.url).netloc if request is not None and request.url else what
        explained = explain_failure(exc, host, getattr(exc, "tls_settings", None))
        if explained is not None:
            text, about_certificates = explained
            return (CertificateError if about_certificates else RegistryUnreachable)(text)
    reason = exc.__class__.__name__
    inner = exc.args[0] if exc.args else None
    detail = getattr(inner, "reason", None) or inner or exc
    if isinstance(exc, requests.exceptions.ProxyError):
        request = getattr(exc, "request", None)
        proxy = proxy_for(request.url) if request is not None and request.url else None
        cause = detail.args[-1] if isinstance(detail, urllib3.exceptions.ProxyError) and detail.args else detail
        cause = getattr(cause, "reason", None) or cause
        text = str(cause).splitlines()[0] if str(cause) else reason
        if isinstance(cause, urllib3.exceptions.NewConnectionError):
            text = text.rsplit(": ", 1)[-1]  # not the connection object's repr
        if "407" in text:
            return RegistryUnreachable(proxy_refusal(what, proxy))
        return RegistryUnreachable(f"{what}: cannot reach the registry through the proxy "
                                   f"{redact_userinfo(proxy) if proxy else '(from the environment)'}: {text}")
    text = str(detail).splitlines()[0] if str(detail) else reason
    return RegistryUnreachable(f"{what}: cannot reach the registry: {text}")


def proxy_for(url: str) -> str | None:
    """The proxy requests takes for ``url`` from ``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY`` and ``NO_PROXY``, or ``None``."""
    try:
        return requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    except (ValueError, OSError):
        return None


def proxy_refusal(what: str, proxy: str | None) -> str:
    """A proxy answered 407: it wants credentials of its own (registry credentials are never
    sent to it)."""
    shown = redact_userinfo(proxy) if proxy else "of the environment"
    return (f"{what}: the proxy {shown} refused the request (407 Proxy Authentication Required): give "
            f"its credentials in its URL (HTTPS_PROXY=http://USER:PASSWORD@HOST:PORT), or exempt "
            f"the registry with NO_PROXY")
