"""``Store``: the Python API over one store root (an OCI image layout plus metadata).

It composes the local store's parts (:mod:`contentstore.local`: blobs and ingests,
``index.json`` references, metadata, leases, manifests read through the plugins) and
hands each operation (pull, push, gc, archives, unpack) only the parts it needs. It
holds no HTTP, parsing or file-format logic of its own.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ContextManager

import platformdirs

from contentstore import config as configuration
from contentstore.errors import (
    ArchiveError,
    BlobNotFound,
    ContentStoreError,
    InvalidManifest,
    InvalidReference,
    MetadataError,
    ReferenceNotFound,
)
from contentstore.local import maintenance, summaries
from contentstore.local.content import BlobInfo, ContentStore, IngestWriter
from contentstore.local.layout import Layout
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import Metadata
from contentstore.local.ociview import ORIGINAL_DIGEST_ANNOTATION, OciView
from contentstore.local.summaries import Summary
from contentstore.model.digest import Digest, is_valid
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor, ImageManifest, Manifest, ManifestIndex
from contentstore.model.platform import Platform
from contentstore.model.reference import Reference
from contentstore.plugin import manager as pluginmanager
from contentstore.progress import ProgressCallback, quiet

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
        """The configuration: as given, else loaded from its default place on first use."""
        if not isinstance(self._config, configuration.Config):
            self._config = configuration.load(self._config)
        return self._config

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
             verify_diffids: bool | None = None):
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
        :return: the pulled :class:`Image` (a list of them with ``all_tags``).
        """
        from contentstore.remote.pull import Puller

        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        self._upgrade_once()
        puller = Puller(self.content, self.layout, self.metadata, self.manifests, self.view, self.leases,
                        self._access(progress))
        if verify_diffids is None:
            verify_diffids = self.config.verify_diffids
        results = puller.pull(ref, platform=wanted, all_platforms=all_platforms, all_tags=all_tags,
                              verify_diffids=verify_diffids)
        images = [self._pulled_image(result) for result in results]
        self._remember([result.descriptor for result in results])
        return images if all_tags else images[0]

    def _pulled_image(self, result) -> Image:
        """The :class:`Image` of a pull, from what the pull parsed (nothing read twice)."""
        image = Image(str(result.reference), result.registry_digest, result.manifest.media_type,
                      size=self._size(result.descriptor))
        pulled = result.image
        if pulled is not None:
            image.manifest = pulled.descriptor
            image.config = pulled.manifest.config
            image.layers = list(pulled.manifest.layers)
            image.platform = pulled.descriptor.platform or (pulled.config.platform if pulled.config else None)
        return image

    def push(self, src: str, dest: str | None = None, progress: ProgressCallback | None = None):
        """Push the local image ``src`` (an index with its children) to ``dest`` (default:
        where ``src`` names). Returns a :class:`~contentstore.push.PushResult`."""
        from contentstore.remote.push import Pusher

        pusher = Pusher(self.content, self.metadata, self.manifests, self.leases, self._access(progress))
        return pusher.push(src, self._described(self.resolve(src)), dest)

    def _access(self, progress: ProgressCallback | None):
        from contentstore.remote.access import RegistryAccess

        return RegistryAccess(self.config, self.plugins, progress=progress if progress is not None else quiet)

    def copy(self, src: str, dest: str, progress: ProgressCallback | None = None):
        """Registry to registry through the store (every platform), as ``skopeo copy``."""
        self.pull(src, all_platforms=True, progress=progress)
        source = Reference.parse(src)
        return self.push(str(source), dest, progress=progress)

    def unpack(self, ref: str, directory: str | os.PathLike, platform: str | Platform | None = None,
               rootless: bool | None = None):
        """Write the root filesystem of ``ref`` into ``directory`` (absent or empty).

        Layers are applied in order with whiteouts. Rootless (the default when not root, as
        ``umoci unpack --rootless``), ownership is not changed and device nodes are
        skipped. Returns an :class:`~contentstore.unpack.UnpackReport`.
        """
        from contentstore.image.unpack import unpack_layers

        image = self.image(ref, platform=platform)
        if image.config is None:
            raise BlobNotFound(image.digest)
        layers = []
        for layer in image.layers:
            if not self.exists(layer.digest):
                raise BlobNotFound(layer.digest)
            compression = self.plugins.layer_compression(layer.media_type)
            layers.append((str(layer.digest), lambda d=layer.digest: self.open(d), compression))
        return unpack_layers(layers, Path(directory), rootless=rootless)

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
            archive.export_oci(top, name, Path(path), self.content, self.manifests, self.plugins)
        elif format == "docker":
            image = self.image(ref, platform=platform)
            if image.config is None:
                raise ArchiveError(f"{ref} has no image config to export")
            config = ImageConfig.parse(self.content.read(image.config.digest, MAX_MANIFEST_SIZE))
            archive.export_docker(image.reference, config, image.config.digest, image.layers, Path(path),
                                  self.content, self.plugins)
        else:
            raise ValueError(f"unknown export format {format!r}: oci or docker")

    def import_archive(self, path: str | os.PathLike):
        """Load an OCI archive or a docker-archive, verifying every blob; returns the
        :class:`~contentstore.image.archive.ImportedImage` list."""
        from contentstore.image import archive

        self._upgrade_once()
        with self.lease():  # as a pull: gc keeps what the import is about to name
            loaded = archive.import_archive(Path(path), self.content, self.layout, self.manifests, self.plugins,
                                            self.leases)
            self.view.upgrade(self.layout)  # a docker-archive's images are Docker-typed
        return loaded

    # -- maintenance ---------------------------------------------------------------------

    def lease(self) -> ContextManager[None]:
        """Hold off :meth:`gc` while a multi-step write (blobs, then a tag) is under way."""
        return self.leases.lease()

    def gc(self, dry_run: bool = False, ingests: bool = False) -> maintenance.GcReport:
        """Delete every blob no reference reaches, stray temporary files, and ingests idle
        for 24 h (with ``ingests``: every ingest no running process holds)."""
        return maintenance.collect(self.content, self.layout, self.manifests, self.metadata, self.leases,
                                   dry_run=dry_run, ingests=ingests)

    def verify(self, repair: bool = False) -> maintenance.VerifyReport:
        """Rehash every blob and check every descriptor's size; the report lists corrupt
        blobs, references to missing ones, wrong sizes and damaged files. With ``repair``,
        corrupt blobs are deleted (the next pull fetches them), a damaged metadata
        database is rebuilt and ``index.json`` sizes are corrected."""
        return maintenance.verify(self.content, self.layout, self.manifests, self.metadata, self.leases,
                                  repair=repair)

    def set_label(self, digest: str, key: str, value: str | None) -> None:
        self.metadata.set_label(digest, key, value)

    def labels(self, digest: str) -> dict[str, str]:
        return self.metadata.labels(digest)
