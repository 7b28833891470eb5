"""Copy and sync: registry to registry, through the store.

Every blob passes through the store, where it is verified as it arrives and kept once
however many images share it; the destination gets the bytes the source served, so
digests are kept. A copy of some platforms of an index (``platforms``) pushes the index
rewritten to list just those: the document the source served, less the other entries,
under its own new digest, and says so.

``sync`` keeps one registry in step with another, as a mirror for a fleet needs it:

- the source is a repository (every tag, or the one tag given) or a registry (its
  catalog, optionally only the repositories a regular expression matches); the
  destination a registry, or a registry and a repository prefix, under which each
  repository keeps its path (``src/team/app`` to ``dest/prefix/team/app``);
- for each tag, a ``HEAD`` on both sides first, and nothing else when the digests agree:
  no ``GET`` that counts against a pull limit, no upload;
- an image to copy is pulled by the digest the ``HEAD`` gave (so the tag cannot move
  in between), with one client per endpoint for the whole sync (one ping, tokens kept);
  its blobs are found in the store when there (nothing fetched twice), and at the
  destination by ``HEAD`` or a cross-repository mount; two images that share a blob do
  not upload it both: one at a time pushes it, the others then find or mount it;
- images go concurrently, ``jobs`` at a time; each outcome is kept (copied, skipped,
  failed), and a failure does not stop the others;
- a killed sync run again finishes what was left: a tag whose digests agree is done, a
  blob in the store is not fetched again, a blob the destination holds not sent again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from contentstore.errors import (
    ContentStoreError,
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    PlatformNotFound,
    RemoteNotFound,
    UsageError,
)
from contentstore.local.interfaces import BlobStore, ReferenceIndex
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import Metadata
from contentstore.local.ociview import OciView
from contentstore.model import digest as digests
from contentstore.model.digest import Digest
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import Descriptor, ImageManifest, Manifest, ManifestIndex
from contentstore.model.platform import Platform
from contentstore.model.reference import Reference, is_registry_host
from contentstore.model.tagversion import latest as latest_versions
from contentstore.progress import ProgressEvent, quiet
from contentstore.remote import fallback
from contentstore.remote.access import RegistryAccess
from contentstore.remote.client import RegistryClient
from contentstore.remote.inspect import RemoteInspector
from contentstore.remote.login import registry_name
from contentstore.remote.pull import Puller, PullResult
from contentstore.remote.push import Pusher, PushResult

log = logging.getLogger(__name__)

#: Images copied at once by a sync, unless told otherwise.
DEFAULT_JOBS = 4


# -- what to copy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platforms:
    """Which platforms of an index to copy: every one (``wanted`` empty: the index as it
    was served, its digest kept), or those ``wanted`` (the index rewritten to list them)."""

    wanted: tuple[Platform, ...] = ()

    @classmethod
    def of(cls, platform: str | Platform | list | tuple | None = None, all_platforms: bool = False) -> "Platforms":
        """From ``platform`` (one, a list, or a comma-separated string) or ``all_platforms``."""
        items = [] if platform is None else [platform] if isinstance(platform, (str, Platform)) else list(platform)
        wanted: list[Platform] = []
        for item in items:
            for text in ([item] if isinstance(item, Platform) else str(item).split(",")):
                parsed = text if isinstance(text, Platform) else Platform.parse(text.strip())
                if parsed not in wanted:
                    wanted.append(parsed)
        if wanted and all_platforms:
            raise UsageError("give either --platform or --all-platforms")
        return cls(tuple(wanted))

    @property
    def every(self) -> bool:
        return not self.wanted

    def __str__(self) -> str:
        return ", ".join(str(p) for p in self.wanted) or "every platform"


@dataclass
class StoreParts:
    """What copy and sync use of the store: blobs, references, metadata, manifests, the
    OCI view, leases (a pull's parts; a push uses a subset)."""

    blobs: BlobStore
    references: ReferenceIndex
    metadata: Metadata
    manifests: Manifests
    view: OciView
    leases: Leases


def rewrite_index(index: ManifestIndex, keep: list[Descriptor]) -> bytes:
    """``index`` as served, listing only the entries ``keep`` (in the index's order):
    every other field kept; so the same input always gives the same bytes and digest."""
    digests_kept = {str(d.digest) for d in keep}
    entries = [entry for entry in index.body.get("manifests") or [] if entry.get("digest") in digests_kept]
    return json.dumps(dict(index.body, manifests=entries), indent=2).encode()


# -- one image from registry to registry ----------------------------------------------------------


class Transfer:
    """Pulls one image into the store and pushes it on, through the parts it is handed.

    :param referrers: bring the OCI 1.1 referrers (signatures, SBOMs) along, and theirs.
    :param verify: ``verify(reference, descriptor)``, the plugins' veto, asked before a
        pulled image is named in the store.
    :param pulled: told of each image pulled (the plugins' ``image_pulled``).
    """

    def __init__(self, parts: StoreParts, access: RegistryAccess, platforms: Platforms = Platforms(),
                 referrers: bool = False, blob_gate: Callable[[str], object] | None = None,
                 verify_diffids: bool = False, verify: Callable | None = None,
                 pulled: Callable[[PullResult], None] | None = None):
        self.verify = verify
        self.pulled = pulled
        self.verify_diffids = verify_diffids
        self.parts = parts
        self.access = access
        self.plugins = access.plugins
        self.platforms = platforms
        self.referrers = referrers
        self.blob_gate = blob_gate
        self.inspector = RemoteInspector(access)

    def _puller(self) -> Puller:
        p = self.parts
        return Puller(p.blobs, p.references, p.metadata, p.manifests, p.view, p.leases, self.access,
                      verify=self.verify)

    def _pusher(self) -> Pusher:
        p = self.parts
        return Pusher(p.blobs, p.metadata, p.manifests, p.leases, self.access, blob_gate=self.blob_gate)

    # -- the source -----------------------------------------------------------------------------

    def resolve(self, source: Reference) -> Digest:
        """The digest ``source`` names: its own, or the tag's from a ``HEAD`` on the
        registry itself (mirrors only when it cannot be reached)."""
        if source.digest:
            return Digest(source.digest)
        return self.inspector.digest(str(source)).digest

    def top(self, pinned: Reference) -> Manifest:
        """The document ``pinned`` (``name@digest``) names: from the store when there, else
        fetched (mirrors first, as a pull), verified and stored, so the pull reads it there."""
        blobs = self.parts.blobs
        if blobs.exists(pinned.digest):
            return self.plugins.parse_manifest(None, blobs.read(pinned.digest, MAX_MANIFEST_SIZE))
        found = self.inspector.manifest(str(pinned), config=False)
        blobs.put(found.raw, expected=str(found.digest))
        return found.manifest

    def target_digest(self, pinned: Reference) -> Digest:
        """The digest the destination will hold for ``pinned``: the source's, unless some
        platforms of an index are copied (the rewritten index's)."""
        if self.platforms.every:
            return Digest(pinned.digest)
        top = self.top(pinned)
        if isinstance(top, ManifestIndex):
            keep = self._chosen(pinned, top)
            if len(keep) < len(top.manifests):
                return digests.of_bytes(rewrite_index(top, keep))
        return Digest(pinned.digest)

    def _chosen(self, pinned: Reference, index: ManifestIndex) -> list[Descriptor]:
        chosen: list[Descriptor] = []
        for platform in self.platforms.wanted:
            try:
                entry = index.select(platform)
            except PlatformNotFound as error:
                raise PlatformNotFound(f"{pinned.name}@{pinned.digest}: {error}") from None
            if entry not in chosen:
                chosen.append(entry)
        return [entry for entry in index.manifests if entry in chosen]

    # -- pull and push ----------------------------------------------------------------------------

    def pull(self, source: Reference) -> tuple[Descriptor, Digest]:
        """Pull ``source`` (a tag, or ``name@digest``) with the platforms asked for; return
        what to push and the source's digest. With every platform and a tag, the tag is
        recorded in the store as a pull records it; otherwise ``name@digest``."""
        if self.platforms.every:
            result = self._pull_one(str(source), all_platforms=True, verify_diffids=self.verify_diffids,
                                         referrers=self.referrers)[0]
            return self._pushable(result), result.registry_digest
        digest = self.resolve(source)
        pinned = Reference(source.registry, source.repository, None, digest)
        top = self.top(pinned)
        if isinstance(top, ManifestIndex):
            keep = self._chosen(pinned, top)
            result = None
            for platform in self.platforms.wanted:
                result = self._pull_one(str(pinned), platform=platform, verify_diffids=self.verify_diffids,
                                             referrers=self.referrers)[0]
            if len(keep) == len(top.manifests):
                return self._pushable(result), digest
            data = rewrite_index(top, keep)
            info = self.parts.blobs.put(data)
            self.access.say(f"{source.familiar()}: index rewritten to {len(keep)} of {len(top.manifests)} "
                            f"platforms ({', '.join(str(e.platform) for e in keep)}): {info.digest} "
                            f"(the source's is {digest})")
            return Descriptor(top.media_type, info.digest, info.size), digest
        if not isinstance(top, ImageManifest):
            raise InvalidManifest(f"{pinned}: {top.media_type} is neither an image nor an index")
        result = self._pull_one(str(pinned), verify_diffids=self.verify_diffids, referrers=self.referrers)[0]
        actual = result.image.config.platform if result.image and result.image.config else None
        if actual is not None and actual not in self.platforms.wanted:
            raise PlatformNotFound(f"image {source} was found but does not match the specified platform: "
                                   f"wanted {self.platforms}, actual: {actual}")
        return self._pushable(result), digest

    def _pull_one(self, reference: str, **options) -> list[PullResult]:
        # Copy and sync move whatever a repository holds, as skopeo and regsync do: an
        # artifact (an SBOM, a referrers index) is taken as the ORAS path takes it, its
        # blobs verified, whatever its config; images are still checked as a pull checks them.
        results = self._puller().pull(reference, artifacts=True, **options)
        if self.pulled is not None:
            for result in results:
                self.pulled(result)
        return results

    @staticmethod
    def _pushable(result: PullResult) -> Descriptor:
        """The document to push: what the registry served (a schema1 image's converted
        manifest), whose digest the destination then has."""
        manifest = result.manifest
        return Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))

    def push(self, descriptor: Descriptor, source: Reference, dest: Reference) -> PushResult:
        with self.parts.leases.lease():  # a rewritten index is named nowhere: gc keeps it meanwhile
            return self._pusher().push(str(source), descriptor, str(dest), referrers=self.referrers)

    def copy(self, source: Reference, dest: Reference) -> PushResult:
        """Pull ``source`` and push it to ``dest`` (without a tag: the source's, else
        ``latest``)."""
        if dest.tag is None and dest.digest is None:
            dest = Reference(dest.registry, dest.repository, source.tag or "latest", None)
        with self.parts.leases.lease():
            descriptor, _ = self.pull(source)
            return self.push(descriptor, source, dest)


# -- one client per endpoint for a whole sync -------------------------------------------------------


#: Seconds a sync remembers that an endpoint's ping failed (an HTTPS endpoint of a plain
#: HTTP registry), rather than asking it again for every image.
PING_FAILURE_MEMORY = 30.0


class _KeptClient:
    """A client shared by every image of a sync: pinged once, closed at the end. A failed
    ping is remembered for :data:`PING_FAILURE_MEMORY` seconds, so each image does not
    try again an endpoint that was passed over."""

    def __init__(self, client: RegistryClient):
        self.client = client
        self._lock = threading.Lock()
        self._failure: tuple[float, Exception] | None = None

    def ping(self) -> None:
        with self._lock:
            if self.client.pinged:
                return
            if self._failure is not None and time.monotonic() - self._failure[0] < PING_FAILURE_MEMORY:
                raise self._failure[1]
            try:
                self.client.ping()
            except ContentStoreError as error:
                self._failure = (time.monotonic(), error)
                raise

    def close(self) -> None:
        pass  # closed when the sync ends

    def __getattr__(self, name):
        return getattr(self.client, name)


class SharedClients:
    """``connect(endpoint)`` for a sync: one kept client per endpoint."""

    def __init__(self, connect: Callable):
        self._connect = connect
        self._clients: dict = {}
        self._lock = threading.Lock()

    def __call__(self, endpoint) -> _KeptClient:
        with self._lock:
            kept = self._clients.get(endpoint)
            if kept is None:
                kept = self._clients[endpoint] = _KeptClient(self._connect(endpoint))
            return kept

    def close(self) -> None:
        with self._lock:
            for kept in self._clients.values():
                kept.client.close()
            self._clients.clear()


class BlobGate:
    """One image at a time pushes a given blob; the next finds it there (or mounts it)."""

    def __init__(self):
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, digest: str) -> Iterator[None]:
        with self._lock:
            lock = self._locks.setdefault(str(digest), threading.Lock())
        with lock:
            yield


# -- sync ------------------------------------------------------------------------------------------


COPIED, SKIPPED, FAILED, WOULD_COPY = "copied", "skipped", "failed", "would copy"


@dataclass
class SyncItem:
    """One tag of a sync (or a repository whose tags could not be listed: ``tag`` None)."""

    source: str
    destination: str
    status: str = ""
    digest: str | None = None
    error: str | None = None
    pushed: int = 0
    mounted: int = 0
    existed: int = 0


@dataclass
class SyncReport:
    """What a sync did, image by image, in the order they were listed."""

    items: list[SyncItem] = field(default_factory=list)
    dry_run: bool = False

    def _with(self, status: str) -> list[SyncItem]:
        return [item for item in self.items if item.status == status]

    @property
    def copied(self) -> list[SyncItem]:
        return self._with(COPIED)

    @property
    def skipped(self) -> list[SyncItem]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[SyncItem]:
        return self._with(FAILED)

    @property
    def would_copy(self) -> list[SyncItem]:
        return self._with(WOULD_COPY)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        first = f"{len(self.would_copy)} to copy (dry run)" if self.dry_run else f"{len(self.copied)} copied"
        return f"{first}, {len(self.skipped)} skipped, {len(self.failed)} failed"


def _looks_like_registry(text: str) -> bool:
    return is_registry_host(text) and ("." in text or ":" in text or text == "localhost")


def parse_source(text: str) -> tuple[str | None, Reference | None]:
    """SRC of a sync: ``(registry, None)`` for ``host[:port]``, else ``(None, repository)``
    (a tag given stays: that tag only)."""
    bare = text.rstrip("/")
    if "/" not in bare and _looks_like_registry(bare):
        return registry_name(bare), None
    reference = Reference.parse(bare, default_tag=None)
    if reference.digest:
        raise InvalidReference(f"{text}: sync takes a repository or a registry; copy one digest with copy")
    return None, reference


def parse_destination(text: str) -> tuple[str, str]:
    """DEST of a sync: ``host[:port]`` or ``host[:port]/prefix``; ``(registry, prefix)``."""
    bare = text.rstrip("/")
    host, _, prefix = bare.partition("/")
    if not _looks_like_registry(host):
        raise InvalidReference(f"{text}: the destination of a sync is a registry (host[:port]) or a "
                               f"registry and a repository prefix (host[:port]/prefix)")
    if prefix:
        try:
            checked = Reference.parse(f"{host}/{prefix}/x", default_tag=None)
        except InvalidReference:
            raise InvalidReference(f"{text}: {prefix!r} is not a repository prefix") from None
        if checked.tag or checked.digest or not checked.repository.endswith(f"{prefix}/x"):
            raise InvalidReference(f"{text}: {prefix!r} is not a repository prefix")
    return registry_name(host), prefix


def destination_of(source: Reference, registry: str, prefix: str) -> Reference:
    """Where ``source`` (``repo:tag``) goes: the same repository path under ``prefix``."""
    repository = f"{prefix}/{source.repository}" if prefix else source.repository
    try:
        return Reference.parse(f"{registry}/{repository}:{source.tag}")
    except InvalidReference as error:
        raise InvalidReference(f"{source}: no destination name under {registry}/{prefix}: {error}") from None


class Syncer:
    """``sync SRC DEST``, over the store's parts and the registries' access."""

    def __init__(self, parts: StoreParts, access: RegistryAccess, platforms: Platforms = Platforms(),
                 referrers: bool = False, dry_run: bool = False, jobs: int = DEFAULT_JOBS,
                 progress=quiet, verify_diffids: bool = False, verify: Callable | None = None):
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        # With referrers, an image whose digests agree is still skipped whole: its referrers
        # are brought when the image is copied (a later re-sync of new referrers alone is
        # left to `copy --referrers`).
        self.clients = SharedClients(access.connect)
        # Pull and push below report to no one: a sync prints one line an image.
        self.access = RegistryAccess(access.config, access.plugins, access.credentials, progress=quiet,
                                     operation=access.operation)
        self.access.connect = self.clients
        self.transfer = Transfer(parts, self.access, platforms, referrers, blob_gate=BlobGate(),
                                 verify_diffids=verify_diffids, verify=verify)
        self.inspector = RemoteInspector(self.access)
        self.dry_run = dry_run
        self.jobs = jobs
        self.progress = progress

    def sync(self, src: str, dest: str, tags: str | None = None, latest: int | None = None,
             repos: str | None = None) -> SyncReport:
        """Copy every tag of ``src`` (a repository, or every repository of a registry)
        that ``dest`` does not hold at the same digest.

        :param tags: only tags this regular expression matches (whole tag).
        :param latest: only the ``latest`` highest tags read as versions (after ``tags``).
        :param repos: for a registry: only repositories this expression matches (whole name).
        """
        registry, repository = parse_source(src)
        dest_registry, prefix = parse_destination(dest)
        tag_pattern = _compile(tags, "--tags")
        repo_pattern = _compile(repos, "--repos")
        if repo_pattern is not None and registry is None:
            raise UsageError("--repos selects repositories of a registry's catalog: give a registry as SRC")
        if latest is not None and latest < 1:
            raise UsageError("--latest takes a number of at least 1")
        report = SyncReport(dry_run=self.dry_run)
        try:
            if registry is not None:
                names = self.inspector.catalog(registry)
                repositories = [Reference.parse(f"{registry}/{name}", default_tag=None) for name in names
                                if repo_pattern is None or repo_pattern.fullmatch(name)]
            else:
                repositories = [repository]
            work = self._plan(repositories, dest_registry, prefix, tag_pattern, latest, report)
            self._run(work)
        finally:
            self.clients.close()
        return report

    def _plan(self, repositories: list[Reference], registry: str, prefix: str, tag_pattern, latest,
              report: SyncReport) -> list[tuple[SyncItem, Reference, Reference]]:
        work = []
        for repository in repositories:
            try:
                if repository.tag:
                    tags = [repository.tag]
                else:
                    tags = self.inspector.tags(str(repository))
                tags = [t for t in tags if tag_pattern is None or tag_pattern.fullmatch(t)]
                if latest is not None:
                    tags = latest_versions(tags, latest)
                for tag in tags:
                    source = repository.with_tag(tag)
                    target = destination_of(source, registry, prefix)
                    item = SyncItem(str(source), str(target))
                    report.items.append(item)
                    work.append((item, source, target))
            except ContentStoreError as error:
                item = SyncItem(repository.name, f"{registry}/{prefix}".rstrip("/"), FAILED,
                                error=f"cannot list its tags: {error}")
                report.items.append(item)
                self._said(item)
        return work

    def _run(self, work: list[tuple[SyncItem, Reference, Reference]]) -> None:
        if not work:
            return
        with ThreadPoolExecutor(max_workers=min(self.jobs, len(work)), thread_name_prefix="sync") as pool:
            futures = [pool.submit(self._one, *job) for job in work]
            for future in futures:
                future.result()

    def _one(self, item: SyncItem, source: Reference, target: Reference) -> None:
        try:
            digest = self.transfer.resolve(source)  # HEAD on the source
            item.digest = str(digest)
            pinned = Reference(source.registry, source.repository, None, digest)
            present = self._dest_digest(target)  # HEAD on the destination
            wanted = self.transfer.target_digest(pinned) if present is not None else None
            if present is not None and present == wanted:
                item.status = SKIPPED
                item.digest = str(present)
            elif self.dry_run:
                item.status = WOULD_COPY
            else:
                descriptor, _ = self.transfer.pull(pinned)
                result = self.transfer.push(descriptor, pinned, target)
                if wanted is not None and result.digest != wanted:
                    raise DigestMismatch(wanted, result.digest, f"manifest pushed to {target}")
                item.digest = str(result.digest)
                item.pushed, item.mounted, item.existed = result.pushed, result.mounted, result.existed
                item.status = COPIED
        except (ContentStoreError, OSError) as error:
            item.status = FAILED
            item.error = str(error).splitlines()[0] if str(error) else type(error).__name__
            log.debug("sync of %s failed", source, exc_info=True)
        self._said(item)

    def _dest_digest(self, target: Reference) -> Digest | None:
        def head(client: RegistryClient) -> Digest | None:
            try:
                digest, _ = client.head_manifest(target.repository, target.tag)
            except RemoteNotFound:
                return None
            return Digest(digest) if digest else None

        result, _ = fallback.on_each_endpoint(self.access.endpoints(target, mirrors=False), self.access.connect,
                                              head)
        return result

    def _said(self, item: SyncItem) -> None:
        if item.status == COPIED:
            line = (f"Copied {item.source} -> {item.destination} ({item.digest}; {item.pushed} blobs pushed, "
                    f"{item.mounted} mounted, {item.existed} already there)")
        elif item.status == SKIPPED:
            line = f"Up to date {item.destination} ({item.digest})"
        elif item.status == WOULD_COPY:
            line = f"Would copy {item.source} -> {item.destination} ({item.digest})"
        else:
            line = f"Failed {item.source} -> {item.destination}: {item.error}"
        self.progress(ProgressEvent(None, line))


def _compile(pattern: str | None, option: str):
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise UsageError(f"{option}: not a regular expression: {error}") from None


