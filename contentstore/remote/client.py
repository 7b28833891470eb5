"""A client for one repository on one registry endpoint (the distribution v2 API).

It knows URLs, authentication and status codes, and nothing about formats: manifests
come back as raw bytes with the media type the registry gave. It calls no plugin: it is
handed the ``Accept`` header to send for manifests and, optionally, a function that
explains a failed ping (the ``v1`` policy's "this is a v1 registry").

It bounds what a registry can make it wait for and read: pings, manifests, tags and
tokens run under the configured request deadline, a blob request until its headers;
a blob body is held to the minimum transfer rate (see :mod:`.transport`). Manifests are
refused past 4 MiB as they arrive, decoded; blobs are asked for and accepted only as
their own bytes (no ``Content-Encoding``), so their size is counted exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from contentstore.config import Config
from contentstore.errors import (
    ManifestTooLarge,
    NotV2Registry,
    RegistryError,
    RegistryUnreachable,
    Unauthorized,
    Unsupported,
)
from contentstore.model.digest import Digest
from contentstore.model.endpoint import Endpoint
from contentstore.model.manifest import MAX_MANIFEST_SIZE
from contentstore.remote.auth import Authenticator, is_loopback, scope_for
from contentstore.remote.credentials import Credentials
from contentstore.remote.tls import TLSSettings, for_endpoint
from contentstore.remote.transport import (
    TIMEOUT,
    Deadline,
    MinimumRate,
    error_codes,
    iter_body,
    make_session,
    proxy_for,
    proxy_refusal,
    raise_for_status,
    read_body,
    unreachable,
)

# iter_body moved to .transport (the token answer reads through it too); kept here for
# the code that reads blob bodies through the client module.
__all__ = ["FetchedManifest", "PingExplainer", "RegistryClient", "iter_body"]

PING_RETRIES = 1

#: Content types that say nothing about the manifest format.
GENERIC_CONTENT_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str | None  # None when the registry gave a generic or no content type
    header_digest: str | None


#: ``explain(endpoint, response, session)``: an exception that says why a ping failed, or None.
PingExplainer = Callable[[Endpoint, requests.Response, requests.Session], Exception | None]


class RegistryClient:
    """One endpoint of a registry, shared by the repositories pulled from it.

    :param accept: the ``Accept`` header for manifests (what the format plugins read).
    :param explain_ping_failure: asked when ``/v2/`` does not answer as a v2 registry.
    :param config: the request deadline, the minimum transfer rate, which hosts are
        marked ``insecure`` (a token realm on plain HTTP gets credentials only from
        those and loopback), and TLS files; the defaults when not given.
    :param tls: how to speak TLS to the endpoint (default: :func:`.tls.for_endpoint`,
        from the configuration and the certs.d directories).
    :ivar pinged: the ``/v2/`` ping succeeded.
    :ivar confirmed_v2: the ping's answer carried the v2 API version header.
    :ivar ping_explained: the ping failed and ``explain_ping_failure`` said why: the
        error raised is the answer, not a reason to try another endpoint.
    """

    def __init__(self, endpoint: Endpoint, credentials: Credentials | None, accept: str,
                 explain_ping_failure: PingExplainer | None = None,
                 session: requests.Session | None = None, config: Config | None = None,
                 tls: TLSSettings | None = None):
        self.endpoint = endpoint
        self.accept = accept
        self.explain_ping_failure = explain_ping_failure
        self.config = config if config is not None else Config()
        self.tls = tls if tls is not None else for_endpoint(endpoint, self.config)
        # Enough pooled connections for every layer at once, each over its ranges.
        pool_size = max(10, self.config.max_concurrent_downloads * self.config.max_connections_per_download + 2)
        self.session = session or make_session(tls=self.tls, pool_size=pool_size)
        self.auth = Authenticator(endpoint.registry, self.session, credentials,
                                  plain_http_allowed=self.plain_http_allowed,
                                  deadline=self.config.request_deadline)
        self.confirmed_v2 = False
        self.pinged = False
        self.ping_explained = False

    def url(self, path: str) -> str:
        return urljoin(self.endpoint.url + "/", path.lstrip("/"))

    def close(self) -> None:
        self.session.close()

    def deadline(self, what: str) -> Deadline:
        """The configured overall deadline for one request (see :class:`Deadline`)."""
        return Deadline(self.config.request_deadline, what)

    def transfer_rate(self, what: str) -> MinimumRate | None:
        """The configured minimum rate for a blob body, or ``None`` when disabled."""
        if self.config.min_transfer_rate <= 0:
            return None
        return MinimumRate(self.config.min_transfer_rate, self.config.transfer_rate_window, what)

    def plain_http_allowed(self, host: str) -> bool:
        """Whether credentials may go to ``host`` (``name[:port]``) over plain HTTP: a
        loopback address, a host marked ``insecure``, or this endpoint's own host when
        the endpoint itself is plain HTTP (which only those, or a mirror configured as
        http://, are)."""
        hostname = urlsplit(f"//{host}").hostname or host
        return (is_loopback(hostname) or self.config.registry(host).insecure
                or self.config.registry(hostname).insecure
                or (host.lower() == self.endpoint.host.lower() and self.endpoint.scheme == "http"))

    # -- requests ------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: learn how to authenticate, and that this is a v2 registry."""
        what = f"{self.endpoint.url}/v2/"
        with self.deadline(f"{self.endpoint.registry}: ping of {what}"):
            self._ping(what)

    def _ping(self, what: str) -> None:
        try:
            # Few retries: an endpoint that is down is soon passed over for the next.
            with make_session(tls=self.tls, retries=PING_RETRIES) as session:
                response = session.get(self.url("/v2/"), timeout=TIMEOUT, stream=True)
        except requests.RequestException as exc:
            raise unreachable(exc, self.endpoint.registry) from None
        with response:
            # As Docker: the API version header confirms v2, after which no fallback to
            # another protocol is allowed.
            versions = response.headers.get("Docker-Distribution-API-Version", "")
            self.confirmed_v2 = "registry/2.0" in [v.strip() for v in versions.split(",")]
            if response.status_code == 200 or (response.status_code == 401 and self.auth.learn(response)):
                self.pinged = True
                return
            if response.status_code == 407:  # a proxy's answer, not the registry's
                raise RegistryUnreachable(proxy_refusal(self.endpoint.registry, proxy_for(response.url)),
                                          status=407, url=what)
            explained = None
            if self.explain_ping_failure is not None:
                explained = self.explain_ping_failure(self.endpoint, response, self.session)
            if explained is not None:
                self.ping_explained = True
                raise explained
            raise NotV2Registry(
                f"{self.endpoint.url} does not speak the registry v2 API ({what} answered "
                f"{response.status_code} {response.reason})", status=response.status_code, url=what)

    def request(self, method: str, path: str, scope: str, what: str, headers: dict | None = None,
                stream: bool = False, expect: tuple[int, ...] = (200,), data=None,
                timeout=TIMEOUT) -> requests.Response:
        """Send an authenticated request; on 401 learn the challenge and retry once.

        :param path: a path on the endpoint, or an absolute URL (an upload ``Location``);
            credentials are only ever sent to the endpoint's own host.
        :param data: a body: bytes, or a file object (rewound for the retry).
        """
        headers = dict(headers or {})
        url = path if "://" in path else self.url(path)
        own_host = urlsplit(url).netloc == urlsplit(self.endpoint.url).netloc
        start = data.tell() if hasattr(data, "tell") else None
        for attempt in (1, 2):
            authorization = self.auth.header(scope) if own_host else None
            if authorization:
                headers["Authorization"] = authorization
            if start is not None:
                data.seek(start)
            try:
                response = self.session.request(method, url, headers=headers, data=data,
                                                stream=stream, timeout=timeout)
            except requests.RequestException as exc:
                raise unreachable(exc, what) from None
            if response.status_code == 401 and attempt == 1 and own_host:
                response.close()
                self.auth.invalidate(scope)
                if self.auth.learn(response):
                    continue
            if response.status_code in expect:
                return response
            try:
                raise_for_status(response, what)
            finally:
                response.close()
            raise RegistryError(f"{what}: unexpected answer {response.status_code} {response.reason}",
                                status=response.status_code, url=response.url)
        raise Unauthorized(f"unauthorized: {what}: authentication required")

    def head_manifest(self, repository: str, reference: str) -> tuple[str | None, str | None]:
        """The digest and media type of a manifest, from a ``HEAD`` (no body fetched)."""
        what = f"{self.endpoint.registry}/{repository}:{reference}"
        with self.deadline(what):
            response = self.request("HEAD", f"/v2/{repository}/manifests/{reference}", scope_for(repository),
                                    what, headers={"Accept": self.accept})
        with response:
            digest = response.headers.get("Docker-Content-Digest")
            media_type = _media_type(response)
        return digest, media_type

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        separator = "@" if reference.startswith(("sha256:", "sha512:")) else ":"
        what = f"{self.endpoint.registry}/{repository}{separator}{reference}"
        with self.deadline(what):
            response = self.request(
                "GET", f"/v2/{repository}/manifests/{reference}", scope_for(repository), what,
                headers={"Accept": self.accept}, stream=True,
            )
            with response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
                    raise ManifestTooLarge(f"{what}: manifest of {length} bytes is over the "
                                           f"{MAX_MANIFEST_SIZE}-byte limit")
                try:
                    # The limit is on the decoded bytes: a gzip Content-Encoding expands.
                    data = read_body(response, MAX_MANIFEST_SIZE, lambda received: ManifestTooLarge(
                        f"{what}: manifest is over the {MAX_MANIFEST_SIZE}-byte limit (cut off after "
                        f"{received} bytes)"))
                except requests.RequestException as exc:
                    raise unreachable(exc, what) from None
                return FetchedManifest(data, _media_type(response), response.headers.get("Docker-Content-Digest"))

    def open_blob(self, repository: str, digest: Digest, offset: int = 0,
                  end: int | None = None) -> requests.Response:
        """A streaming response for a blob, from ``offset`` (to ``end``, exclusive, when
        given) (200 or 206; caller checks).

        The request deadline runs until the headers; the body is the caller's, under
        :meth:`transfer_rate`, whose window is also the read timeout. The blob is asked
        for as its own bytes (``Accept-Encoding: identity``); an answer with another
        ``Content-Encoding`` is refused, since its bytes could expand without limit and
        its ranges would not be the blob's.
        """
        what = f"{self.endpoint.registry}/{repository}@{digest}"
        headers = {"Accept-Encoding": "identity"}
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        timeout = TIMEOUT
        if self.config.min_transfer_rate > 0:
            timeout = (TIMEOUT[0], min(TIMEOUT[1], self.config.transfer_rate_window))
        response = None
        try:
            with self.deadline(what):
                response = self.request("GET", f"/v2/{repository}/blobs/{digest}", scope_for(repository),
                                        what, headers=headers, stream=True, expect=(200, 206), timeout=timeout)
        except BaseException:
            if response is not None:  # it came, but after the deadline
                response.close()
            raise
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise RegistryError(f"{what}: {self.endpoint.url} sent the blob with Content-Encoding "
                                f"{encoding!r} although asked for its own bytes; refused",
                                status=response.status_code, url=response.url)
        return response

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``, following ``Link`` pagination."""
        tags: list[str] = []
        path = f"/v2/{repository}/tags/list"
        read: set[str] = set()
        while path:
            if path in read:
                raise RegistryError(f"{self.endpoint.registry}/{repository}: the tag list's pages loop "
                                    f"({path} again)")
            read.add(path)
            what = f"{self.endpoint.registry}/{repository} tags"
            with self.deadline(what):
                response = self.request("GET", path, scope_for(repository), what)
            with response:
                try:
                    tags += response.json().get("tags") or []
                except ValueError:
                    raise RegistryError(f"{self.endpoint.registry}/{repository}: tag list is not JSON") from None
                link = response.headers.get("Link", "")
            match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", link)
            path = match.group(1) if match else ""
        return tags


    # -- push ------------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str, scope: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", scope,
                                f"{self.endpoint.registry}/{repository}@{digest}", expect=(200, 404))
        with response:
            return response.status_code == 200

    def mount_blob(self, repository: str, digest: str, source: str, scope: str) -> tuple[bool, str | None]:
        """Ask for a cross-repository mount; return (mounted, upload location if not)."""
        response = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from={source}", scope,
            f"mount of {digest} from {source}", expect=(201, 202))
        with response:
            if response.status_code == 201:
                return True, None
            return False, self._location(response)

    def start_upload(self, repository: str, scope: str) -> str:
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/", scope,
                                f"upload to {self.endpoint.registry}/{repository}", expect=(202,))
        with response:
            return self._location(response)

    def upload_status(self, location: str, scope: str) -> tuple[int, str]:
        """How many bytes the registry holds for an upload, and its current location."""
        response = self.request("GET", location, scope, "upload status", expect=(204,))
        with response:
            return _range_end(response.headers.get("Range")), self._location(response, location)

    def upload_chunk(self, location: str, data, start: int, length: int, scope: str) -> tuple[int, str]:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length),
                   "Content-Range": f"{start}-{start + length - 1}"}
        response = self.request("PATCH", location, scope, "blob upload", headers=headers, data=data,
                                expect=(202,))
        with response:
            return _range_end(response.headers.get("Range")), self._location(response, location)

    def finish_upload(self, location: str, digest: str, scope: str, data=None, length: int = 0) -> str:
        """Close an upload (with the whole body for a monolithic one); return the digest."""
        separator = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        response = self.request("PUT", f"{location}{separator}digest={digest}", scope, f"upload of {digest}",
                                headers=headers, data=data if length else b"", expect=(201, 204))
        with response:
            return response.headers.get("Docker-Content-Digest") or digest

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str, scope: str) -> str | None:
        response = self.request("PUT", f"/v2/{repository}/manifests/{reference}", scope,
                                f"manifest {self.endpoint.registry}/{repository}:{reference}",
                                headers={"Content-Type": media_type}, data=data, expect=(200, 201, 202))
        with response:
            return response.headers.get("Docker-Content-Digest")

    def _location(self, response: requests.Response, default: str | None = None) -> str:
        location = response.headers.get("Location") or default
        if not location:
            raise RegistryError(f"{self.endpoint.registry}: upload answer without a Location",
                                status=response.status_code, url=response.url)
        return urljoin(self.endpoint.url + "/", location)

    # -- remote commands: catalog, delete --------------------------------------------------

    def catalog(self, n: int | None = None, last: str | None = None) -> list[str]:
        """The registry's repositories (``GET /v2/_catalog``), following ``Link`` pages.

        :param n: at most this many, asked for in pages of ``n`` (the registry may send
            fewer a page; the pages are followed until ``n`` came or none is left).
        :param last: start after this repository name (the API's ``last``).
        """
        query = {key: value for key, value in (("n", n), ("last", last)) if value}
        path = "/v2/_catalog" + (f"?{urlencode(query)}" if query else "")
        what = f"{self.endpoint.registry} catalog"
        names: list[str] = []
        read: set[str] = set()
        while path and (n is None or len(names) < n):
            if path in read:
                raise RegistryError(f"{what}: the pages loop ({path} again)")
            read.add(path)
            with self.deadline(what):
                response = self.request("GET", path, CATALOG_SCOPE, what)
            with response:
                try:
                    page = response.json().get("repositories") or []
                except (ValueError, AttributeError):
                    raise RegistryError(f"{what}: the answer is not a JSON catalog") from None
                if not isinstance(page, list) or not all(isinstance(name, str) for name in page):
                    raise RegistryError(f"{what}: the answer is not a list of repository names")
                names += page
                path = _next_page(response.headers.get("Link", ""))
            if not page:
                break  # a Link after an empty page would never end
        return names if n is None else names[:n]

    def delete_manifest(self, repository: str, digest: str) -> None:
        """``DELETE`` a manifest by digest (a registry deletes every tag pointing to it).

        :raises Unsupported: the registry has deletion disabled (distribution's
            ``storage.delete.enabled``) or offers no delete.
        """
        what = f"{self.endpoint.registry}/{repository}@{digest}"
        with self.deadline(what):
            response = self.request("DELETE", f"/v2/{repository}/manifests/{digest}",
                                    scope_for(repository, "delete"), f"delete of {what}",
                                    expect=(200, 202, 204, 405))
        with response:
            if response.status_code != 405:
                return
            codes, message = error_codes(response)
        raise Unsupported(f"delete of {what}: the registry does not allow deleting manifests (405 "
                          f"{message or 'method not allowed'}; on distribution, storage.delete.enabled "
                          f"is false)", status=405, codes=tuple(codes), url=response.url)


#: The token scope for listing a registry's repositories.
CATALOG_SCOPE = "registry:catalog:*"


def _next_page(link: str) -> str:
    """The ``rel="next"`` target of a ``Link`` header, or ``""``."""
    match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", link)
    return match.group(1) if match else ""


def _range_end(value: str | None) -> int:
    """``Range: 0-1023`` -> 1024 bytes held (the header is inclusive)."""
    if not value:
        return 0
    match = re.fullmatch(r"(?:bytes=)?0-(\d+)", value.strip())
    # distribution says "0-0" for an empty upload too; taking it as empty is safe (a
    # wrong guess makes the next chunk fail, and the upload starts again).
    return int(match.group(1)) + 1 if match and match.group(1) != "0" else 0


def _media_type(response: requests.Response) -> str | None:
    content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
    return None if content_type in GENERIC_CONTENT_TYPES else content_type
