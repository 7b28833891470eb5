"""``Store``: the Python API over one store root (an OCI image layout plus metadata).

It composes the local store's parts (:mod:`contentstore.local`: blobs and ingests,
``index.json`` references, metadata, leases, manifests read through the plugins) and
hands each operation (pull, push, gc, archives, unpack) only the parts it needs. It
holds no HTTP, parsing or file-format logic of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ContextManager

import platformdirs

from contentstore import config as configuration
from contentstore.errors import (
    ArchiveError,
    BlobNotFound,
    ContentStoreError,
    InvalidArtifact,
    InvalidManifest,
    InvalidReference,
    MetadataError,
    ReferenceNotFound,
    UnpackError,
)
from contentstore.local import summaries
from contentstore.local.content import BlobInfo, ContentStore, IngestWriter
from contentstore.local.layout import Layout
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import Metadata
from contentstore.local.ociview import ORIGINAL_DIGEST_ANNOTATION, OciView
from contentstore.local.summaries import Summary
from contentstore.model import artifact as artifacts
from contentstore.model import mediatypes
from contentstore.model.digest import Digest, is_valid
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor, ImageManifest, Manifest, ManifestIndex
from contentstore.model.platform import Platform
from contentstore.model.reference import Reference
from contentstore.plugin import NOT_A_TAR
from contentstore.plugin import manager as pluginmanager
from contentstore.progress import ProgressCallback, quiet

if TYPE_CHECKING:  # pragma: no cover
    from contentstore.local import maintenance

log = logging.getLogger(__name__)

APP_NAME = "contentstore"
ROOT_ENV = "CONTENTSTORE_ROOT"
STATE_DIR = ".contentstore"


def _repository_of(name: str) -> str | None:
    try:
        return Reference.parse(name).name
    except ValueError:
        return None


def default_root() -> Path:
    """``$CONTENTSTORE_ROOT``, else ``platformdirs.user_data_path("contentstore")``."""
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else platformdirs.user_data_path(APP_NAME)


@dataclass
class Image:
    """A local image: what a reference points to, and the selected platform's parts.

    ``digest`` and ``media_type`` are those of what the reference points to (the index,
    for a multi-platform image); ``manifest``, ``config``, ``layers`` and ``platform``
    are those of the selected platform's image manifest (``None``/empty if absent).
    """

    reference: str | None
    digest: Digest
    media_type: str
    size: int = 0
    manifest: Descriptor | None = None
    config: Descriptor | None = None
    layers: list[Descriptor] = field(default_factory=list)
    platform: Platform | None = None
    #: What the artifact is (its ``artifactType``, else its config's media type when that
    #: is no image config); ``None`` for an image.
    artifact_type: str | None = None


class Store:
    """A content store rooted at ``root`` (default: :func:`default_root`)."""

    def __init__(self, root: str | os.PathLike | None = None,
                 plugins: pluginmanager.Plugins | None = None,
                 config: configuration.Config | str | os.PathLike | None = None):
        self.root = Path(root) if root else default_root()
        self.state_dir = self.root / STATE_DIR
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.content = ContentStore(self.root, self.state_dir)
        self.layout = Layout(self.root, self.state_dir)
        self.metadata = Metadata(self.state_dir / "metadata.db")
        self.leases = Leases(self.state_dir)
        self.plugins = plugins if plugins is not None else pluginmanager.create()
        self.manifests = Manifests(self.content, self.plugins, self.metadata)
        self.view = OciView(self.content, self.manifests, self.plugins, self.metadata)
        self._config = config

    @property
    def config(self) -> configuration.Config:
        """The configuration: as given, else loaded from its default place on first use;
        then handed to the plugins (``contentstore_configure``), once."""
        if not isinstance(self._config, configuration.Config):
            self._config = configuration.load(self._config)
        self.plugins.configure(self._config)
        return self._config

    def _plugins_for(self, hook: str) -> pluginmanager.Plugins:
        """The plugins, configured first when one of them implements ``hook`` (and so may
        need its settings); local commands otherwise read no configuration."""
        if self.plugins.implements(hook) and self.plugins.implements("contentstore_configure"):
            self.config  # noqa: B018 - loads it and configures the plugins
        return self.plugins

    def _verifier(self, operation: str):
        """``verify(reference, descriptor)`` for pull, copy and import: the plugins'
        ``contentstore_verify_image``, shown this store."""
        def verify(reference: Reference | None, descriptor: Descriptor) -> None:
            plugins = self._plugins_for("contentstore_verify_image")
            plugins.verify_image(reference=reference, descriptor=descriptor, store=self, operation=operation)
        return verify

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- blobs ---------------------------------------------------------------------------

    def put(self, data: bytes | BinaryIO, expected: str | None = None, size: int | None = None) -> BlobInfo:
        """Store bytes or a binary file object; return its digest and size.

        ``data`` is hashed even when ``expected`` is already stored, and then replaces the
        stored copy (atomically), which repairs a copy that changed on disk.

        :param expected: refuse content with another digest (:class:`DigestMismatch`).
        :param size: refuse content of another length (:class:`SizeMismatch`).
        """
        with self.lease():
            return self.content.put(data, expected=expected, size=size)

    def writer(self, ref: str, expected: str | None = None, size: int | None = None,
               wait: bool = True) -> IngestWriter:
        """A resumable writer for ingest ``ref`` (see :meth:`ContentStore.writer`)."""
        return self.content.writer(ref, expected=expected, total=size, wait=wait)

    def open(self, digest: str) -> BinaryIO:
        """The blob ``digest`` as a binary file object (also a context manager), checked as
        it is read: the read that reaches its end raises :class:`CorruptBlob` if the bytes
        on disk are not what the digest says."""
        return self.content.open_verified(digest)

    def exists(self, digest: str) -> bool:
        return self.content.exists(digest)

    def size(self, digest: str) -> int:
        return self.content.size(digest)

    def delete(self, digest: str) -> None:
        self.content.delete(digest)

    def blobs(self) -> list[BlobInfo]:
        return list(self.content.walk())

    # -- manifests -----------------------------------------------------------------------

    def manifest(self, descriptor: Descriptor | str) -> Manifest:
        """Read and parse a stored manifest or index through the format plugins."""
        if not isinstance(descriptor, Descriptor):
            descriptor = self.descriptor(descriptor)
        return self.manifests.read(descriptor)

    def descriptor(self, digest: str) -> Descriptor:
        """A descriptor for a stored blob, its media type detected from its bytes."""
        return self.manifests.descriptor(digest)

    # -- references ----------------------------------------------------------------------

    def _name(self, ref: str) -> str:
        """The ``index.json`` name for ``ref``: as given if stored so, else normalized."""
        if self.layout.get(ref) is not None:
            return ref
        return str(Reference.parse(ref))

    def resolve(self, ref: str) -> Descriptor:
        """What ``ref`` (a local reference, or a blob digest) points to."""
        if is_valid(ref):
            return self.descriptor(ref)
        found = self.layout.get(ref)
        if found is not None:
            return found
        parsed = Reference.parse(ref)
        found = self.layout.get(str(parsed)) if str(parsed) != ref else None
        if found is not None:
            return found
        if parsed.digest and self.content.exists(parsed.digest):
            return self.descriptor(parsed.digest)
        raise ReferenceNotFound(str(parsed))

    def tag(self, src: str, dest: str) -> str:
        """Make ``dest`` point where ``src`` (a reference or a digest) points.

        A Docker-typed manifest or index is named through its OCI form (made if needed), so
        that every OCI tool reads the new reference; the entry keeps the original's digest.
        It holds the lease a pull holds, from finding the target to writing the name, so
        gc never deletes what the new name is about to point to.
        """
        parsed = Reference.parse(dest)
        if parsed.digest:
            raise InvalidReference(f"refusing to create a tag with a digest reference: {dest}")
        name = str(parsed)
        self._upgrade_once()
        with self.lease():
            target = self.resolve(src)
            if not self.content.exists(target.digest):
                raise BlobNotFound(target.digest)
            entry = self._entry(target, target.annotations.get(ORIGINAL_DIGEST_ANNOTATION))
            self.layout.tag(name, entry)
        return name

    def _entry(self, target: Descriptor, registry_digest: str | None = None) -> Descriptor:
        """The named-entry form of ``target``: OCI-typed, naming the registry's digest."""
        if not self.plugins.is_manifest_type(target.media_type):
            return Descriptor(target.media_type, target.digest, target.size, target.platform)
        return self.view.entry(target, registry_digest=registry_digest)

    def _upgrade_once(self) -> None:
        """Point Docker-typed named entries left by an older contentstore at their OCI
        forms (once per store; registry digests are kept)."""
        marker = self.state_dir / "oci-view"
        if marker.exists():
            return
        with self.lease():
            try:
                self.view.upgrade(self.layout)
            except InvalidManifest:
                return  # a damaged index.json: verify names it; the write at hand may still go on
        marker.touch()

    def untag(self, ref: str) -> list[str]:
        """Remove the local reference ``ref``; return the names removed.

        As ``docker rmi``: when the last tag of a repository that points to an image goes,
        the digest references (``repo@sha256:…``) of that repository to the same image go
        with it. The blobs stay until :meth:`gc`.
        """
        name = self._name(ref)
        removed = self.layout.untag(name)
        names = [name]
        try:
            parsed = Reference.parse(name)
        except ValueError:
            return names
        if not parsed.tag or parsed.digest:
            return names
        same_repo = {n: d for n, d in self.layout.named(removed.digest).items()
                     if _repository_of(n) == parsed.name}
        if any(Reference.parse(n).tag for n in same_repo):
            return names  # another tag of this repository still names the image
        for digest_name in same_repo:
            self.layout.untag(digest_name)
            names.append(digest_name)
        return names

    def references(self) -> dict[str, Descriptor]:
        return self.layout.names()

    # -- images --------------------------------------------------------------------------

    def image(self, ref: str, platform: str | Platform | None = None) -> Image:
        """The local image ``ref``; for an index, the ``platform`` (default: host) child."""
        descriptor = self.resolve(ref)
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        name = descriptor.annotations.get(REF_NAME_ANNOTATION) or (None if is_valid(ref) else ref)
        return self._image(name, descriptor, wanted, strict=True)

    def images(self) -> list[Image]:
        """Every named local image, sorted by reference.

        Each is listed from its summary in the metadata while that still holds (the same
        blobs stored and missing, the same gc labels), else read and summarized again
        (:mod:`contentstore.local.summaries`); the result is the same either way.
        """
        named = sorted(self.layout.names().items())
        try:
            found = self._summaries()
        except MetadataError:  # a damaged database: list what needs no metadata, as before
            return [self._image(name, entry, None, strict=False) for name, entry in named]
        images = [self._listed(name, entry, found.of(entry)) for name, entry in named]
        found.save()
        return images

    def _summaries(self, digests: list[str] | None = None) -> summaries.Summaries:
        return summaries.Summaries(self.metadata, self.content,
                                   lambda entry, labels: self._summarize(entry, None, False, labels),
                                   Platform.host(), [(info.name, info.version) for info in self.plugins.info()],
                                   digests)

    def _remember(self, entries: list[Descriptor]) -> None:
        """Summarize what a pull named (unless a summary holds), so that listing it need
        not read it; a cache, so nothing here stops the pull."""
        with contextlib.suppress(ContentStoreError, OSError):
            found = self._summaries([str(entry.digest) for entry in entries])
            for entry in entries:
                found.of(entry)
            found.save()

    def _described(self, entry: Descriptor) -> Descriptor:
        """The document the registry digest of ``entry`` names: the original a converted
        (OCI) entry was made from, when it is stored under that digest; else the entry."""
        known_as = entry.annotations.get(ORIGINAL_DIGEST_ANNOTATION)
        if not known_as or known_as == entry.digest:
            return entry
        original = self.view.original(entry)
        if original.digest != known_as:
            return entry  # schema1: the registry digest is that of the signed payload
        return Descriptor(original.media_type, original.digest, original.size, entry.platform,
                          dict(entry.annotations))

    def _image(self, name: str | None, entry: Descriptor, wanted: Platform | None,
               strict: bool) -> Image:
        return self._listed(name, entry, self._summarize(entry, wanted, strict))

    def _listed(self, name: str | None, entry: Descriptor, summary: Summary) -> Image:
        """The :class:`Image` ``name`` (pointing to ``entry``) is, from its summary."""
        known_as = Digest(entry.annotations.get(ORIGINAL_DIGEST_ANNOTATION) or entry.digest)
        image = Image(name, known_as, summary.media_type, size=summary.size)
        image.artifact_type = summary.artifact_type
        manifest = summary.manifest_for(entry)
        if manifest is not None:
            image.manifest = manifest
            image.config = summary.config
            image.layers = list(summary.layers)
            image.platform = summary.platform
        return image

    def _summarize(self, entry: Descriptor, wanted: Platform | None, strict: bool,
                   labels: dict[str, dict[str, str]] | None = None) -> Summary:
        """Read what ``entry`` points to: for an index the ``wanted`` platform's image
        (without ``strict``, the host's if it was pulled, else the first pulled); with
        ``labels`` (the gc labels), what the summary depends on is recorded too."""
        size, reached = self._reached(entry)
        summary = Summary(entry.media_type, size, reached=reached,
                          labels={d: labels[d] for d in reached if d in labels} if labels else {})
        if not self.content.exists(entry.digest):
            if strict:
                raise BlobNotFound(entry.digest)
            return summary
        descriptor = self._described(entry)
        if not self.content.exists(descriptor.digest):
            descriptor = entry
        top = self.manifest(descriptor)
        summary.media_type = top.media_type
        chosen, manifest = self._select(descriptor, top, wanted, strict)
        summary.artifact_type = artifacts.artifact_kind(top) or (
            artifacts.artifact_kind(manifest) if manifest is not None else None)
        if isinstance(manifest, ImageManifest):
            if chosen is entry:
                summary.kind = summaries.ENTRY
            elif chosen is descriptor:
                summary.kind = summaries.ORIGINAL
                summary.manifest = Descriptor(chosen.media_type, chosen.digest, chosen.size)
            else:
                summary.kind, summary.manifest = summaries.CHILD, chosen
            summary.config = manifest.config
            summary.layers = list(manifest.layers)
            summary.platform = chosen.platform or self._config_platform(manifest)
        return summary

    def _reached(self, descriptor: Descriptor) -> tuple[int, dict[str, bool]]:
        """Bytes of every stored blob ``descriptor`` reaches, and every blob it reaches
        with whether it is stored."""
        size, reached = 0, {}
        for d in self.manifests.reachable([descriptor], strict=False):
            reached[str(d.digest)] = present = self.content.exists(d.digest)
            if present:
                size += self.content.size(d.digest)
        return size, reached

    def _size(self, descriptor: Descriptor) -> int:
        """Bytes of every stored blob ``descriptor`` reaches."""
        return self._reached(descriptor)[0]

    def _select(self, descriptor: Descriptor, top: Manifest, wanted: Platform | None,
                strict: bool) -> tuple[Descriptor, Manifest | None]:
        if not isinstance(top, ManifestIndex):
            return descriptor, top
        if strict or wanted:
            chosen = top.select(wanted or Platform.host())
            if not self.content.exists(chosen.digest):
                raise BlobNotFound(chosen.digest)
            return chosen, self.manifest(chosen)
        # Listing: the host's platform if it was pulled, else the first one that was.
        present = [m for m in top.manifests if self.content.exists(m.digest)]
        with contextlib.suppress(ContentStoreError):
            chosen = top.select(Platform.host())
            if chosen in present:
                return chosen, self.manifest(chosen)
        return (present[0], self.manifest(present[0])) if present else (descriptor, None)

    def _config_platform(self, manifest: ImageManifest) -> Platform | None:
        config = self._image_config(manifest)
        return config.platform if config else None

    def _image_config(self, manifest: ImageManifest) -> ImageConfig | None:
        """The parsed image config, or ``None`` when absent or not an image config."""
        if manifest.config is None or not self.content.exists(manifest.config.digest):
            return None
        try:
            return ImageConfig.parse(self.content.read(manifest.config.digest, MAX_MANIFEST_SIZE))
        except InvalidManifest:
            return None

    def inspect(self, ref: str, platform: str | None = None) -> dict:
        """A JSON-able summary: digest, media type, platform, config, layers (and the
        platforms an index offers)."""
        entry = self.resolve(ref)
        descriptor = self._described(entry)
        top = self.manifest(descriptor)
        result: dict = {
            "reference": entry.annotations.get(REF_NAME_ANNOTATION),
            "digest": str(entry.annotations.get(ORIGINAL_DIGEST_ANNOTATION) or entry.digest),
            "mediaType": top.media_type,
            "size": self.content.size(descriptor.digest),
        }
        if entry.digest != result["digest"]:
            result["ociDigest"] = str(entry.digest)  # what OCI tools see in index.json
        if isinstance(top, ManifestIndex):
            result["manifests"] = [
                {**m.to_json(), "present": self.content.exists(m.digest)} for m in top.manifests
            ]
        kind = artifacts.artifact_kind(top)
        if kind:
            result["artifactType"] = kind
        subject = artifacts.subject_of(top)
        if subject is not None:
            result["subject"] = subject.to_json()
        with contextlib.suppress(MetadataError):  # as images: what needs no metadata still works
            result["referrers"] = [r.to_json() for r in self._local_referrers([descriptor.digest, entry.digest])]
        try:
            image = self._image(result["reference"], entry,
                                Platform.parse(platform) if platform else None,
                                strict=bool(platform))
        except BlobNotFound:
            return result
        if image.manifest is not None:
            if image.manifest.digest != descriptor.digest:
                result["manifest"] = image.manifest.to_json()
            result["platform"] = str(image.platform) if image.platform else None
            result["config"] = image.config.to_json() if image.config else None
            result["layers"] = [layer.to_json() for layer in image.layers]
        return result

    # -- registries ----------------------------------------------------------------------

    def pull(self, ref: str, platform: str | Platform | None = None, all_platforms: bool = False,
             all_tags: bool = False, progress: ProgressCallback | None = None,
             verify_diffids: bool | None = None, referrers: bool = False, operation: str = "pull"):
        """Pull ``ref`` from its registry into the store, as ``docker pull`` does.

        Every blob's digest is verified as it downloads. A layer's diffID is verified where
        the layer is first decompressed (unpack, export to a docker-archive), or during the
        pull with ``verify_diffids``.

        :param platform: ``os/arch[/variant]`` to select from an index (default: the host's).
        :param all_platforms: keep every platform of an index.
        :param all_tags: pull every tag of the repository ``ref`` names.
        :param progress: called with each :class:`~contentstore.progress.ProgressEvent`.
        :param verify_diffids: inflate each layer during the pull to check its diffID
            (default: ``verify_diffids`` under ``[pull]`` in the configuration).
        :param referrers: also pull the referrers (OCI 1.1: signatures, SBOMs) of what is
            pulled, and theirs, by digest; gc keeps them while it keeps the image.
        :param operation: the command this pull serves, as the plugins are told it
            (``copy`` passes ``"copy"``).
        :return: the pulled :class:`Image` (a list of them with ``all_tags``).
        """
        return self._pull(ref, platform, all_platforms, all_tags, progress, verify_diffids, referrers,
                          operation=operation)

    def _pull(self, ref: str, platform: str | Platform | None = None, all_platforms: bool = False,
              all_tags: bool = False, progress: ProgressCallback | None = None,
              verify_diffids: bool | None = None, referrers: bool = False, artifacts: bool = False,
              operation: str = "pull"):
        """:meth:`pull`; with ``artifacts``, any artifact whatever its config (the ORAS path)."""
        from contentstore.remote.pull import Puller

        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        self._upgrade_once()
        puller = Puller(self.content, self.layout, self.metadata, self.manifests, self.view, self.leases,
                        self._access(progress, operation), verify=self._verifier(operation))
        if verify_diffids is None:
            verify_diffids = self.config.verify_diffids
        results = puller.pull(ref, platform=wanted, all_platforms=all_platforms, all_tags=all_tags,
                              verify_diffids=verify_diffids, artifacts=artifacts, referrers=referrers)
        for result in results:
            self.plugins.image_pulled(reference=result.reference, descriptor=result.document, store=self)
        images = [self._pulled_image(result) for result in results]
        self._remember([result.descriptor for result in results])
        return images if all_tags else images[0]

    def _pulled_image(self, result) -> Image:
        """The :class:`Image` of a pull, from what the pull parsed (nothing read twice)."""
        image = Image(str(result.reference), result.registry_digest, result.manifest.media_type,
                      size=self._size(result.descriptor))
        image.artifact_type = artifacts.artifact_kind(result.manifest)
        pulled = result.image
        if pulled is not None:
            image.manifest = pulled.descriptor
            image.config = pulled.manifest.config
            image.layers = list(pulled.manifest.layers)
            image.platform = pulled.descriptor.platform or (pulled.config.platform if pulled.config else None)
        return image

    def push(self, src: str, dest: str | None = None, progress: ProgressCallback | None = None,
             referrers: bool = False, operation: str = "push"):
        """Push the local image ``src`` (an index with its children) to ``dest`` (default:
        where ``src`` names). Returns a :class:`~contentstore.push.PushResult`.

        A manifest with a ``subject`` is added to the registry's referrers tag of its
        subject when the registry has no referrers API. With ``referrers``, the store's
        referrers of ``src`` (and theirs) are pushed after it, by digest.

        :param operation: the command this push serves, as the plugins are told it.
        """
        from contentstore.remote.push import Pusher

        pusher = Pusher(self.content, self.metadata, self.manifests, self.leases, self._access(progress, operation))
        descriptor = self._described(self.resolve(src))
        result = pusher.push(src, descriptor, dest, referrers=referrers)
        self.plugins.image_pushed(reference=result.reference,
                                  descriptor=Descriptor(descriptor.media_type, result.digest, result.size))
        return result

    def _access(self, progress: ProgressCallback | None, operation: str = "pull"):
        from contentstore.remote.access import RegistryAccess

        return RegistryAccess(self.config, self.plugins, progress=progress if progress is not None else quiet,
                              operation=operation)

    def copy(self, src: str, dest: str, progress: ProgressCallback | None = None,
             platform: str | Platform | list | None = None, all_platforms: bool = False,
             referrers: bool = False):
        """Registry to registry through the store, as ``skopeo copy``; returns a
        :class:`~contentstore.remote.push.PushResult`.

        Every platform by default (``all_platforms`` says so explicitly): the index as
        served, so the destination has the source's digest. ``platform`` (one, a list, or
        ``"linux/amd64,linux/arm64"``) copies those platforms of an index, which is then
        rewritten to list only them (the source's other fields kept; a new digest).

        :param referrers: bring the referrers along (OCI 1.1: signatures, SBOMs), and theirs.
        """
        from contentstore.remote.sync import Platforms, Transfer

        self._upgrade_once()
        transfer = Transfer(self._parts(), self._access(progress, "copy"), Platforms.of(platform, all_platforms),
                            referrers=referrers, verify_diffids=self.config.verify_diffids,
                            verify=self._verifier("copy"), pulled=self._pulled)
        result = transfer.copy(Reference.parse(src), Reference.parse(dest, default_tag=None))
        self.plugins.image_pushed(reference=result.reference, descriptor=self.manifests.descriptor(result.digest))
        return result

    # -- artifacts and referrers (OCI 1.1) ---------------------------------------------------

    def put_artifact(self, ref: str, files, artifact_type: str | None = None, subject: str | None = None,
                     annotations: dict[str, str] | None = None,
                     progress: ProgressCallback | None = None) -> Descriptor:
        """Store files as an OCI 1.1 artifact manifest tagged ``ref``; return its descriptor.

        :param files: paths, or ``(path, media type)`` pairs; each file is a layer titled
            with its base name (``org.opencontainers.image.title``), of its media type or
            ``application/octet-stream``. The config is the empty one.
        :param artifact_type: the ``artifactType`` (default ``application/vnd.unknown.artifact.v1``).
        :param subject: a reference or digest whose manifest this artifact refers to: looked
            up in the store, else on its registry (a ``HEAD``).
        :param annotations: the manifest's annotations.
        """
        parsed = Reference.parse(ref)
        if parsed.digest:
            raise InvalidReference(f"refusing to create a tag with a digest reference: {ref}")
        kind = artifacts.check_media_type(artifact_type or artifacts.DEFAULT_ARTIFACT_TYPE, "artifact type")
        for key, value in (annotations or {}).items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise InvalidArtifact(f"invalid annotation {key!r}: keys and values are strings, keys not empty")
        specs = []
        for item in files:
            path, media_type = item if isinstance(item, tuple) else (item, None)
            path = Path(path)
            if media_type is not None:
                artifacts.check_media_type(media_type, f"media type of {path}")
            if path.is_dir():
                raise InvalidArtifact(f"{path} is a directory: an artifact's files are files")
            path.stat()  # a missing file is an error naming it before anything is stored or asked
            specs.append((path, artifacts.safe_title(path.name), media_type))
        titles = [title for _, title, _ in specs]
        for title in titles:
            if titles.count(title) > 1:
                raise InvalidArtifact(f"two files are titled {title!r}: an artifact's files need distinct names")
        subject_descriptor = self._subject(subject, progress) if subject else None
        self._upgrade_once()
        with self.lease():
            layers = []
            for path, title, media_type in specs:
                with open(path, "rb") as f:
                    info = self.content.put(f)
                layers.append(artifacts.file_layer(title, info.digest, info.size, media_type))
            self.content.put(artifacts.EMPTY_CONFIG, expected=artifacts.EMPTY_DESCRIPTOR.digest)
            raw = artifacts.artifact_manifest(layers, kind, subject_descriptor, annotations)
            info = self.content.put(raw)
            descriptor = Descriptor(mediatypes.OCI_MANIFEST, info.digest, info.size)
            self.manifests.index_referrer(descriptor, self.manifests.read(descriptor))
            self.layout.tag(str(parsed), descriptor)
        return descriptor

    def _subject(self, ref: str, progress: ProgressCallback | None) -> Descriptor:
        """The manifest ``ref`` names, as a ``subject``: the store's (by the registry's
        digest), else the registry's."""
        try:
            entry = self.resolve(ref)
            if self.content.exists(entry.digest):
                described = self._described(entry)
                return Descriptor(described.media_type, described.digest, described.size)
        except (ReferenceNotFound, BlobNotFound):
            pass
        if is_valid(ref):
            raise BlobNotFound(ref)  # a bare digest names no registry to ask
        from contentstore.remote import referrers as remote_referrers

        return remote_referrers.remote_descriptor(self._access(progress), Reference.parse(ref))

    def get_artifact(self, ref: str, directory: str | os.PathLike = ".", remote: bool = True,
                     progress: ProgressCallback | None = None):
        """Write the files of the artifact ``ref`` into ``directory`` (created if absent),
        each under its title; returns a :class:`~contentstore.image.artifacts.WrittenFiles`.

        With ``remote`` (the default) the artifact is pulled first, whatever its config (no
        plugin needed; a tag already complete in the store is not fetched again); without,
        it is read from the store. Every blob is verified as it is read; a title that is
        absolute, holds ``..`` or a ``/`` is refused (:class:`InvalidArtifact`) before any
        file is written.
        """
        from contentstore.image.artifacts import write_files

        if remote:
            if is_valid(ref):
                raise InvalidReference(f"{ref}: a digest alone names no registry; give NAME@{ref}, or "
                                       f"read the store with remote=False")
            self._pull(ref, progress=progress, artifacts=True)
        entry = self.resolve(ref)
        manifest = self.manifest(self._described(entry))
        if not isinstance(manifest, ImageManifest):
            raise InvalidArtifact(f"{ref} is an index ({manifest.media_type}), not an artifact with files")
        return write_files(manifest.layers, Path(directory), self.content)

    def referrers(self, ref: str, artifact_type: str | None = None, remote: bool = True,
                  progress: ProgressCallback | None = None) -> list[Descriptor]:
        """The referrers of the manifest ``ref`` names (OCI 1.1), as descriptors with
        ``artifact_type`` and annotations, optionally only those of ``artifact_type``.

        From its registry (the referrers API, else the referrers tag), or with
        ``remote=False`` from the store's subject index. The list is a
        :class:`~contentstore.model.artifact.Referrers`: also its ``subject`` digest, its
        ``source`` and ``warnings`` (a referrers tag that is no index lists nothing).
        """
        if remote:
            from contentstore.remote import referrers as remote_referrers

            if is_valid(ref):
                raise InvalidReference(f"{ref}: a digest alone names no registry; give NAME@{ref}")
            return remote_referrers.find(self._access(progress), Reference.parse(ref), artifact_type)
        subjects = self._local_subjects(ref)
        return artifacts.Referrers(artifacts.of_type(self._local_referrers(subjects), artifact_type),
                                   subject=subjects[0], source="store")

    def _local_subjects(self, ref: str) -> list[Digest]:
        """The digests referrers of ``ref`` name as their subject: the registry's digest of
        what it points to, and the OCI form's when that differs."""
        try:
            entry = self.resolve(ref)
        except (ReferenceNotFound, BlobNotFound):
            digest = ref if is_valid(ref) else Reference.parse(ref).digest
            if digest is None:
                raise
            return [Digest(digest)]
        return list(dict.fromkeys([self._described(entry).digest, entry.digest]))

    def _local_referrers(self, subjects: list[str]) -> list[Descriptor]:
        found: dict[str, Descriptor] = {}
        for subject in subjects:
            for referrer in self.metadata.referrers(subject):
                if self.content.exists(referrer.digest):
                    found.setdefault(referrer.digest, referrer)
        return list(found.values())

    def _pulled(self, result) -> None:
        """Tell the plugins an image was pulled (``contentstore_image_pulled``)."""
        self.plugins.image_pulled(reference=result.reference, descriptor=result.document, store=self)

    # -- sync ------------------------------------------------------------------------------------

    def _parts(self):
        from contentstore.remote.sync import StoreParts

        return StoreParts(self.content, self.layout, self.metadata, self.manifests, self.view, self.leases)

    def sync(self, src: str, dest: str, tags: str | None = None, latest: int | None = None,
             repos: str | None = None, platform: str | Platform | list | None = None,
             all_platforms: bool = False, referrers: bool = False, dry_run: bool = False,
             jobs: int | None = None, progress: ProgressCallback | None = None):
        """Keep ``dest`` in step with ``src``; returns a :class:`~contentstore.remote.sync.SyncReport`.

        ``src`` is a repository (every tag; or ``repo:tag``, that one) or a registry
        (``host[:port]``: every repository of its catalog, or those ``repos`` matches);
        ``dest`` a registry or ``registry/prefix``, under which each repository keeps its
        path. For each tag a ``HEAD`` on both sides first, and nothing more when the
        digests agree. Blobs pass through the store (verified, kept once), and are
        mounted across repositories at the destination when it has them.

        :param tags: only tags this regular expression matches (the whole tag).
        :param latest: only the ``latest`` highest tags read as semantic versions.
        :param platform: copy those platforms of each index (rewritten); default every one.
        :param dry_run: only the ``HEAD`` requests: say what would be copied.
        :param jobs: images copied at once (default 4).
        :param progress: told one line an image (copied, up to date, failed).
        """
        from contentstore.remote.sync import DEFAULT_JOBS, Platforms, Syncer

        self._upgrade_once()
        syncer = Syncer(self._parts(), self._access(None, "sync"), Platforms.of(platform, all_platforms),
                        referrers=referrers, dry_run=dry_run, jobs=jobs or DEFAULT_JOBS,
                        progress=progress if progress is not None else quiet,
                        verify_diffids=self.config.verify_diffids, verify=self._verifier("sync"))
        return syncer.sync(src, dest, tags=tags, latest=latest, repos=repos)

    # -- looking at registries without pulling, deleting (no store involved) ------------------

    def _inspector(self, progress: ProgressCallback | None = None):
        from contentstore.remote.inspect import RemoteInspector

        return RemoteInspector(self._access(progress))

    def tags(self, repository: str, progress: ProgressCallback | None = None) -> list[str]:
        """Every tag of the remote ``repository`` (``registry/name``), pages followed."""
        return self._inspector(progress).tags(repository)

    def catalog(self, registry: str, n: int | None = None, last: str | None = None,
                progress: ProgressCallback | None = None) -> list[str]:
        """The repositories of ``registry`` (``host[:port]``): all, or at most ``n``,
        starting after ``last`` (the API's ``n`` and ``last``; ``Link`` pages followed)."""
        return self._inspector(progress).catalog(registry, n=n, last=last)

    def remote_manifest(self, ref: str, raw: bool = False, platform: str | Platform | None = None,
                        progress: ProgressCallback | None = None) -> bytes | dict:
        """The manifest ``ref`` names on its registry, nothing stored: with ``raw`` the bytes
        as served (an index's entry for ``platform``, when given), else a summary as
        :meth:`inspect` gives (digest, media type, size, entries, platform, config, layers)."""
        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        found = self._inspector(progress).manifest(ref, platform=wanted, config=not raw)
        if raw:
            return found.child_raw if found.child is not None else found.raw
        return found.to_json()

    def remote_digest(self, ref: str, progress: ProgressCallback | None = None) -> Digest:
        """The digest ``ref`` names on its registry, from a ``HEAD`` (no pull counted)."""
        return self._inspector(progress).digest(ref).digest

    def delete_remote(self, ref: str, progress: ProgressCallback | None = None) -> Digest:
        """Delete the manifest ``ref`` names from its registry (a tag is resolved to its
        digest first, and the registry drops every tag pointing there); return the digest.
        :class:`~contentstore.errors.Unsupported` when the registry has deletion disabled."""
        return self._inspector(progress).delete(ref).digest

    def unpack(self, ref: str, directory: str | os.PathLike, platform: str | Platform | None = None,
               rootless: bool | None = None):
        """Write the root filesystem of ``ref`` into ``directory`` (absent or empty).

        Layers are applied in order with whiteouts, each checked against its digest and
        the config's diffID as it streams. Rootless (the default when not root, as
        ``umoci unpack --rootless``), ownership is not changed and device nodes are
        written as empty files. Returns an :class:`~contentstore.image.unpack.UnpackReport`.
        """
        from contentstore.image.unpack import LayerInput, unpack_layers

        image = self.image(ref, platform=platform)
        if image.config is None:
            raise BlobNotFound(image.digest)
        diff_ids = ImageConfig.parse(self.content.read(image.config.digest, MAX_MANIFEST_SIZE)).diff_ids
        if diff_ids is None:
            diff_ids = [None] * len(image.layers)
        elif len(diff_ids) != len(image.layers):
            raise InvalidManifest(f"the image config does not list one diffID for each of its "
                                  f"{len(image.layers)} layers")
        layers = []
        for layer, diff_id in zip(image.layers, diff_ids):
            if not self.exists(layer.digest):
                raise BlobNotFound(layer.digest)
            compression = self.plugins.layer_compression(layer.media_type)
            if compression == NOT_A_TAR:
                raise UnpackError(f"{ref}: layer {layer.digest} ({layer.media_type}) is a file, not a tar: "
                                  f"there is no file system to unpack (`contentstore blob get {layer.digest}` "
                                  f"writes the file)")
            # unpack hashes each layer (digest and diffID) as it streams: the plain reader
            layers.append(LayerInput(str(layer.digest), lambda d=layer.digest: self.content.open(d), compression,
                                     diff_id))
        report = unpack_layers(layers, Path(directory), rootless=rootless)
        for layer, diff_id in zip(image.layers, diff_ids):
            if diff_id is not None:
                self._diff_id_verified(layer.digest, diff_id)
        return report

    def export(self, ref: str, path: str | os.PathLike, format: str = "oci",
               platform: str | Platform | None = None) -> None:
        """Write ``ref`` to ``path`` as an OCI archive (``format="oci"``, every platform the
        store has) or a docker-archive (``format="docker"``, one platform)."""
        from contentstore.image import archive

        # Every blob is copied through ContentStore.open_verified (and manifests and
        # configs read through ContentStore.read): one that changed on disk stops the
        # export with an error naming it, and no archive is left behind.
        if format == "oci":
            top = self.resolve(ref)
            name = top.annotations.get(REF_NAME_ANNOTATION) or ref
            oci = self.view.converted(top) if self.plugins.is_manifest_type(top.media_type) else top
            archive.export_oci(oci, name, Path(path), self.content, self.manifests)
        elif format == "docker":
            image = self.image(ref, platform=platform)
            if image.config is None:
                raise ArchiveError(f"{ref} has no image config to export")
            config = ImageConfig.parse(self.content.read(image.config.digest, MAX_MANIFEST_SIZE))
            archive.export_docker(image.reference, config, image.config.digest, image.layers, Path(path),
                                  self.content, self.plugins, self._diff_id_verified)
        else:
            raise ValueError(f"unknown export format {format!r}: oci or docker")

    def _diff_id_verified(self, layer_digest: str, diff_id: str) -> None:
        """Record a diffID checked by decompressing the layer here (no source registry),
        so no later pull or export inflates the layer again for it."""
        try:
            if self.metadata.diff_id(layer_digest) != diff_id:
                self.metadata.add_diff_id(diff_id, layer_digest, "", "")
        except (MetadataError, OSError) as exc:  # only a cache: a read-only store still unpacks
            log.debug("diffID of %s not recorded: %s", layer_digest, exc)

    def import_archive(self, path: str | os.PathLike):
        """Load an OCI archive or a docker-archive, verifying every blob; returns the
        :class:`~contentstore.image.archive.ImportedImage` list."""
        from contentstore.image import archive

        self._upgrade_once()
        verify = self._verifier("import")

        def verify_name(name: str, descriptor: Descriptor) -> None:
            try:
                reference = Reference.parse(name)
            except InvalidReference:
                reference = None  # an OCI archive's bare tag
            verify(reference, descriptor)

        with self.lease():  # as a pull: gc keeps what the import is about to name
            loaded = archive.import_archive(Path(path), self.content, self.layout, self.manifests, self.plugins,
                                            self.leases, verify=verify_name)
            self.view.upgrade(self.layout)  # a docker-archive's images are Docker-typed
        return loaded

    # -- maintenance ---------------------------------------------------------------------

    def lease(self) -> ContextManager[None]:
        """Hold off :meth:`gc` while a multi-step write (blobs, then a tag) is under way."""
        return self.leases.lease()

    def gc(self, dry_run: bool = False, ingests: bool = False) -> maintenance.GcReport:
        """Delete every blob no reference reaches, stray temporary files, and ingests idle
        for 24 h (with ``ingests``: every ingest no running process holds)."""
        from contentstore.local import maintenance  # gc and verify only: pulls start without it

        report = maintenance.collect(self.content, self.layout, self.manifests, self.metadata, self.leases,
                                     dry_run=dry_run, ingests=ingests)
        self._plugins_for("contentstore_gc_finished").gc_finished(report=report)
        return report

    def verify(self, repair: bool = False) -> maintenance.VerifyReport:
        """Rehash every blob and check every descriptor's size; the report lists corrupt
        blobs, references to missing ones, wrong sizes and damaged files. With ``repair``,
        corrupt blobs are deleted (the next pull fetches them), a damaged metadata
        database is rebuilt, ``index.json`` sizes are corrected, and Docker-typed named
        entries (an older contentstore's) are pointed at their OCI forms, digests kept."""
        from contentstore.local import maintenance

        report = maintenance.verify(self.content, self.layout, self.manifests, self.metadata, self.leases,
                                    repair=repair)
        if repair:
            with self.lease(), contextlib.suppress(InvalidManifest):  # a damaged index.json: reported
                self.view.upgrade(self.layout)
        return report

    def set_label(self, digest: str, key: str, value: str | None) -> None:
        self.metadata.set_label(digest, key, value)

    def labels(self, digest: str) -> dict[str, str]:
        return self.metadata.labels(digest)
