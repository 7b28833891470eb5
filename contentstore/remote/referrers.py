"""OCI 1.1 referrers on a registry (distribution-spec 1.1, "Listing Referrers" and
"Referrers Tag Schema").

Listing: ``GET /v2/<name>/referrers/<digest>`` (``?artifactType=`` to filter, pages
followed through ``Link``; when the answer lacks ``OCI-Filters-Applied: artifactType``
the filter is applied here). A registry that answers 404 has no referrers API (Debian's
distribution 2.8 has none): then the referrers tag ``<alg>-<hex>`` is read, an OCI index
the pushers of referrers keep up to date. A tag holding anything else means "no
referrers" when listing (with a warning) and is an error when pushing.

Pushing a manifest with a ``subject``: the registry's answer carries ``OCI-Subject`` when
its referrers API took note; otherwise the referrers tag is read, the new referrer
added, and the index written back. distribution 2.8 has no conditional writes, so two
pushers may each write an index without the other's referrer: after writing (and a
pause of about two writes' time), the tag is read again and, while the referrer is
missing, added again (a random pause between tries), so of two pushers that race, the
later check puts back what the other wrote.

Every request goes through :meth:`RegistryClient.request`; nothing here parses an image.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote, urljoin

import requests

from contentstore.errors import (
    DigestMismatch,
    InvalidArtifact,
    InvalidReference,
    ManifestTooLarge,
    RegistryError,
    RemoteNotFound,
)
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.artifact import (
    Referrers,
    of_type,
    parse_referrers,
    referrers_index,
    referrers_tag,
    with_referrer,
)
from contentstore.model.digest import Digest, is_valid
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import Descriptor, peek_json
from contentstore.model.reference import Reference
from contentstore.remote import fallback
from contentstore.remote.access import RegistryAccess
from contentstore.remote.auth import scope_for
from contentstore.remote.client import RegistryClient
from contentstore.remote.transport import unreachable

log = logging.getLogger(__name__)

#: Header by which a registry says it recorded a pushed manifest's subject.
SUBJECT_HEADER = "OCI-Subject"
#: Header by which a registry says which filters of a referrers query it applied.
FILTERS_HEADER = "OCI-Filters-Applied"
#: Writes of the referrers tag before giving up on a referrer other pushers keep removing.
UPDATE_ATTEMPTS = 8
#: Seconds to wait after writing the referrers tag before reading it back (at least).
SETTLE = 0.1
#: Pages of one referrers list followed at most (a registry whose ``Link`` never ends).
MAX_PAGES = 1000

API = "the referrers API"


@dataclass(frozen=True)
class FallbackIndex:
    """What the referrers tag holds: its referrers (``None``: the tag does not exist)."""

    tag: str
    referrers: list[Descriptor] | None


# -- listing -------------------------------------------------------------------------------


def list_referrers(client: RegistryClient, repository: str, subject: str,
                   artifact_type: str | None = None) -> Referrers:
    """The referrers of ``subject`` in ``repository``: from the referrers API, or, when the
    registry answers it with 404, from the referrers tag.

    :raises InvalidArtifact: the referrers API answered something that is not an index.
    """
    subject = Digest(subject)
    found = _from_api(client, repository, subject, artifact_type)
    if found is not None:
        return found
    try:
        index = read_fallback(client, repository, subject)
    except InvalidArtifact as exc:
        tag = referrers_tag(subject)
        return Referrers([], subject=subject, source=f"tag {tag}",
                         warnings=[f"{exc}; taken as no referrers"])
    return Referrers(of_type(index.referrers or [], artifact_type), subject=subject, source=f"tag {index.tag}")


def _from_api(client: RegistryClient, repository: str, subject: Digest,
              artifact_type: str | None) -> Referrers | None:
    """Every page of the referrers API's answer, or ``None`` when the registry has no
    such API (a 404 to the first request)."""
    what = f"{client.endpoint.registry}/{repository} referrers of {subject}"
    path = f"/v2/{repository}/referrers/{subject}"
    if artifact_type:
        path += f"?artifactType={quote(artifact_type, safe='')}"
    found: list[Descriptor] = []
    read: set[str] = set()
    for page in range(MAX_PAGES):
        url = path if "://" in path else client.url(path)
        if url in read:
            raise RegistryError(f"{what}: the pages loop ({url} again)")
        read.add(url)
        response = client.request("GET", url, scope_for(repository), what,
                                  headers={"Accept": mt.OCI_INDEX}, stream=True, expect=(200, 404))
        with response:
            if response.status_code == 404:
                if page == 0:
                    return None
                raise RemoteNotFound(f"not found: {what}: the next page {url}", status=404, url=url)
            data = _body(response, what)
            applied = {name.strip() for name in response.headers.get(FILTERS_HEADER, "").split(",")}
            link = response.headers.get("Link", "")
        entries = parse_referrers(data, f"the answer of {API} for {what}")
        found += entries if "artifactType" in applied else of_type(entries, artifact_type)
        following = _next_link(link)
        if following is None:
            return Referrers(found, subject=subject, source=API)
        path = urljoin(url, following)
    raise RegistryError(f"{what}: more than {MAX_PAGES} pages")


def _next_link(header: str) -> str | None:
    match = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", header)
    return match.group(1) if match else None


def _body(response: requests.Response, what: str) -> bytes:
    """A small JSON answer, refused beyond the manifest size limit."""
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(f"{what}: an answer of {length} bytes is over the {MAX_MANIFEST_SIZE}-byte limit")
    data = bytearray()
    try:
        for chunk in response.iter_content(65536):
            data += chunk
            if len(data) > MAX_MANIFEST_SIZE:
                raise ManifestTooLarge(f"{what}: the answer is over the {MAX_MANIFEST_SIZE}-byte limit")
    except requests.RequestException as exc:
        raise unreachable(exc, what) from None
    return bytes(data)


def read_fallback(client: RegistryClient, repository: str, subject: str) -> FallbackIndex:
    """What the referrers tag of ``subject`` holds.

    :raises InvalidArtifact: the tag holds something other than an OCI index.
    """
    tag = referrers_tag(subject)
    try:
        fetched = client.get_manifest(repository, tag)
    except RemoteNotFound:
        return FallbackIndex(tag, None)
    where = f"the referrers tag {client.endpoint.registry}/{repository}:{tag}"
    if fetched.media_type not in (None, mt.OCI_INDEX):
        raise InvalidArtifact(f"{where} holds a {fetched.media_type}, not an OCI image index")
    return FallbackIndex(tag, parse_referrers(fetched.data, where))


# -- pushing -------------------------------------------------------------------------------


def put_manifest(client: RegistryClient, repository: str, reference: str, data: bytes, media_type: str,
                 scope: str) -> tuple[str | None, str | None]:
    """``PUT`` a manifest; return the registry's ``Docker-Content-Digest`` and
    ``OCI-Subject`` (``None`` when it did not send one)."""
    response = client.request("PUT", f"/v2/{repository}/manifests/{reference}", scope,
                              f"manifest {client.endpoint.registry}/{repository}:{reference}",
                              headers={"Content-Type": media_type}, data=data, expect=(200, 201, 202))
    with response:
        return response.headers.get("Docker-Content-Digest"), response.headers.get(SUBJECT_HEADER)


def add_to_fallback(client: RegistryClient, repository: str, subject: str, referrer: Descriptor,
                    scope: str, attempts: int = UPDATE_ATTEMPTS, settle: float = SETTLE) -> bool:
    """Make the referrers tag of ``subject`` list ``referrer``, keeping what it lists;
    return whether it had to be written.

    Read, add, write; then wait a moment (``settle``, or twice as long as the write took)
    and read again, until the referrer is listed: a pusher that read the tag before this
    write lands its own (stale) write within about one write's time, and the read after
    the pause sees what it dropped. Each pusher checks its own referrer, so of two that
    race, the later check puts back what the other wrote. (Without conditional writes,
    which distribution 2.8 lacks, a pusher whose write takes far longer than the other's
    can still drop a referrer after the other checked; a registry with the referrers
    API never needs the tag.)

    :raises InvalidArtifact: the tag holds something other than an OCI index.
    :raises RegistryError: the referrer was still missing after ``attempts`` writes.
    """
    wrote = False
    for attempt in range(attempts + 1):
        index = read_fallback(client, repository, subject)
        updated = with_referrer(index.referrers or [], referrer)
        if updated is None:
            return wrote
        if attempt == attempts:
            break
        if wrote:  # written over by another pusher: a random pause so two do not keep colliding
            log.debug("%s: %s was written over; adding %s again", repository, index.tag, referrer.digest)
            time.sleep(random.uniform(0, settle * attempt))
        started = time.monotonic()
        client.put_manifest(repository, index.tag, referrers_index(updated), mt.OCI_INDEX, scope)
        wrote = True
        time.sleep(max(settle, 2 * (time.monotonic() - started)))
    raise RegistryError(f"{client.endpoint.registry}/{repository}: the referrers tag {referrers_tag(subject)} "
                        f"kept losing {referrer.digest} to other writers ({attempts} tries)")


# -- what a reference names on the registry ----------------------------------------------------------


def describe(client: RegistryClient, repository: str, reference: str) -> Descriptor:
    """The descriptor (media type, digest, size) of the manifest ``reference`` (a tag or a
    digest) names: from a ``HEAD``, else a ``GET`` whose bytes are hashed."""
    expected = Digest(reference) if is_valid(reference) else None
    what = f"{client.endpoint.registry}/{repository}{'@' if expected else ':'}{reference}"
    response = client.request("HEAD", f"/v2/{repository}/manifests/{reference}", scope_for(repository), what,
                              headers={"Accept": client.accept})
    with response:
        digest = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
        length = response.headers.get("Content-Length", "")
    if digest and is_valid(digest) and length.isdigit() and "/" in media_type \
            and media_type != "application/json" and (expected is None or digest == expected):
        return Descriptor(media_type, Digest(digest), int(length))
    fetched = client.get_manifest(repository, reference)
    actual = digests.of_bytes(fetched.data)
    if expected is not None and actual != expected:
        raise DigestMismatch(expected, actual, f"manifest {what}")
    body = peek_json(fetched.data) or {}
    declared = body.get("mediaType") if isinstance(body.get("mediaType"), str) else None
    media_type = fetched.media_type or declared
    if not media_type:
        raise InvalidArtifact(f"{what}: the registry does not say what kind of manifest it is")
    return Descriptor(media_type, actual, len(fetched.data))


def _on_registry(access: RegistryAccess, reference: Reference, work):
    result, _ = fallback.on_each_endpoint(access.endpoints(reference), access.connect, work,
                                          continue_on_error=access.plugins.continue_on_error,
                                          notify=access.say)
    return result


def remote_descriptor(access: RegistryAccess, reference: Reference) -> Descriptor:
    """What ``reference`` names on its registry (``--subject`` when the store lacks it)."""
    target = reference.digest or reference.tag
    if target is None:
        raise InvalidReference(f"{reference}: a tag or a digest is needed")
    return _on_registry(access, reference, lambda client: describe(client, reference.repository, target))


def find(access: RegistryAccess, reference: Reference, artifact_type: str | None = None) -> Referrers:
    """The referrers of what ``reference`` names on its registry (a tag is resolved with
    a ``HEAD``)."""
    def work(client: RegistryClient) -> Referrers:
        subject = reference.digest or describe(client, reference.repository, reference.tag).digest
        return list_referrers(client, reference.repository, subject, artifact_type)

    return _on_registry(access, reference, work)


def walk(client: RegistryClient, repository: str, subjects: list[str],
         visit: Callable[[Digest, Descriptor], bool], warn: Callable[[str], None]) -> int:
    """Visit the referrers of ``subjects`` on the registry, then theirs, and so on (the
    signature of an SBOM), each referrer once; ``visit(subject, referrer)`` fetches one
    and says whether it was taken (then its own referrers are visited too). Returns how
    many were taken."""
    seen = {Digest(subject) for subject in subjects}
    queue = deque(dict.fromkeys(Digest(subject) for subject in subjects))
    taken = 0
    while queue:
        subject = queue.popleft()
        listing = list_referrers(client, repository, subject)
        for warning in listing.warnings:
            warn(warning)
        for referrer in listing:
            if referrer.digest in seen:
                continue
            seen.add(referrer.digest)
            if visit(subject, referrer):
                taken += 1
                queue.append(referrer.digest)
    return taken
