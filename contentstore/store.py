"""``Store``: the Python API over one store root (an OCI image layout plus metadata).

It composes small parts: :mod:`.content` (blobs and ingests), :mod:`.layout`
(``index.json`` references), :mod:`.metadata` (diffIDs, labels), :mod:`.gc`, and the
plugins that read manifests. It holds no HTTP, parsing or file-format logic of its own.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import platformdirs

from contentstore.local import maintenance as _gc
from contentstore import config as configuration
from contentstore.plugin import manager as pluginmanager
from contentstore.local.content import BlobInfo, ContentStore, IngestWriter
from contentstore.model.digest import Digest, is_valid
from contentstore.errors import BlobNotFound, ContentStoreError, InvalidManifest, InvalidReference, ReferenceNotFound
from contentstore.local.fsutil import FileLock
from contentstore.local.layout import Layout
from contentstore.model.manifest import (MAX_MANIFEST_SIZE, REF_NAME_ANNOTATION, Descriptor, ImageManifest,
                       Manifest, ManifestIndex, load_json)
from contentstore.local.metadata import Metadata
from contentstore.model.platform import Platform
from contentstore.progress import ProgressCallback
from contentstore.model.reference import Reference

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
        self.plugins = plugins if plugins is not None else pluginmanager.create()
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
        """The blob ``digest`` as a binary file object (also a context manager)."""
        return self.content.open(digest)

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
        data = self.content.read(descriptor.digest, MAX_MANIFEST_SIZE)
        return self.plugins.parse_manifest(descriptor.media_type or None, data)

    def descriptor(self, digest: str) -> Descriptor:
        """A descriptor for a stored blob, its media type detected from its bytes."""
        digest = Digest(digest)
        size = self.content.size(digest)
        media_type = ""
        if size <= MAX_MANIFEST_SIZE:
            media_type = self.plugins.detect_media_type(self.content.read(digest)) or ""
        return Descriptor(media_type or "application/octet-stream", digest, size)

    # -- references ----------------------------------------------------------------------

    def _name(self, ref: str) -> str:
        """The ``index.json`` name for ``ref``: as given if stored so, else normalized."""
        if ref in self.layout.names():
            return ref
        return str(Reference.parse(ref))

    def resolve(self, ref: str) -> Descriptor:
        """What ``ref`` (a local reference, or a blob digest) points to."""
        if is_valid(ref):
            return self.descriptor(ref)
        names = self.layout.names()
        if ref in names:
            return names[ref]
        parsed = Reference.parse(ref)
        if str(parsed) in names:
            return names[str(parsed)]
        if parsed.digest and self.content.exists(parsed.digest):
            return self.descriptor(parsed.digest)
        raise ReferenceNotFound(str(parsed))

    def tag(self, src: str, dest: str) -> str:
        """Make ``dest`` point where ``src`` (a reference or a digest) points."""
        target = self.resolve(src)
        if not self.content.exists(target.digest):
            raise BlobNotFound(target.digest)
        parsed = Reference.parse(dest)
        if parsed.digest:
            raise InvalidReference(f"refusing to create a tag with a digest reference: {dest}")
        name = str(parsed)
        clean = Descriptor(target.media_type, target.digest, target.size, target.platform)
        self.layout.tag(name, clean)
        return name

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
        same_repo = {n: d for n, d in self.layout.names().items()
                     if d.digest == removed.digest and _repository_of(n) == parsed.name}
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
        """Every named local image, sorted by reference."""
        return [
            self._image(name, descriptor, None, strict=False)
            for name, descriptor in sorted(self.layout.names().items())
        ]

    def _image(self, name: str | None, descriptor: Descriptor, wanted: Platform | None,
               strict: bool) -> Image:
        image = Image(name, descriptor.digest, descriptor.media_type)
        image.size = sum(
            self.content.size(d.digest)
            for d in _gc.reachable(self, [descriptor], strict=False)
            if self.content.exists(d.digest)
        )
        if not self.content.exists(descriptor.digest):
            if strict:
                raise BlobNotFound(descriptor.digest)
            return image
        top = self.manifest(descriptor)
        image.media_type = top.media_type
        chosen, manifest = self._select(descriptor, top, wanted, strict)
        if isinstance(manifest, ImageManifest):
            image.manifest = chosen
            image.config = manifest.config
            image.layers = list(manifest.layers)
            image.platform = chosen.platform or self._config_platform(manifest)
        return image

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
        if manifest.config is None or not self.content.exists(manifest.config.digest):
            return None
        try:
            config = load_json(self.content.read(manifest.config.digest, MAX_MANIFEST_SIZE), "image config")
        except InvalidManifest:
            return None
        if config.get("os") and config.get("architecture"):
            return Platform.from_json(config)
        return None

    def inspect(self, ref: str, platform: str | None = None) -> dict:
        """A JSON-able summary: digest, media type, platform, config, layers (and the
        platforms an index offers)."""
        descriptor = self.resolve(ref)
        top = self.manifest(descriptor)
        result: dict = {
            "reference": descriptor.annotations.get(REF_NAME_ANNOTATION),
            "digest": str(descriptor.digest),
            "mediaType": top.media_type,
            "size": self.content.size(descriptor.digest),
        }
        if isinstance(top, ManifestIndex):
            result["manifests"] = [
                {**m.to_json(), "present": self.content.exists(m.digest)} for m in top.manifests
            ]
        try:
            image = self._image(result["reference"], descriptor,
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
             all_tags: bool = False, progress: ProgressCallback | None = None):
        """Pull ``ref`` from its registry into the store, as ``docker pull`` does.

        :param platform: ``os/arch[/variant]`` to select from an index (default: the host's).
        :param all_platforms: keep every platform of an index.
        :param all_tags: pull every tag of the repository ``ref`` names.
        :param progress: called with each :class:`~contentstore.progress.ProgressEvent`.
        :return: the pulled :class:`Image` (a list of them with ``all_tags``).
        """
        from contentstore.remote.pull import Puller

        wanted = Platform.parse(platform) if isinstance(platform, str) else platform
        results = Puller(self, self.config, progress).pull(
            ref, platform=wanted, all_platforms=all_platforms, all_tags=all_tags)
        images = [self._image(str(r.reference), r.descriptor, wanted, strict=not all_platforms or bool(wanted))
                  for r in results]
        return images if all_tags else images[0]

    def push(self, src: str, dest: str | None = None, progress: ProgressCallback | None = None):
        """Push the local image ``src`` (an index with its children) to ``dest`` (default:
        where ``src`` names). Returns a :class:`~contentstore.push.PushResult`."""
        from contentstore.remote.push import Pusher

        return Pusher(self, self.config, progress).push(src, dest)

    def copy(self, src: str, dest: str, progress: ProgressCallback | None = None):
        """Registry to registry through the store (every platform), as ``skopeo copy``."""
        self.pull(src, all_platforms=True, progress=progress)
        source = Reference.parse(src)
        return self.push(str(source), dest, progress=progress)

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
        diff_ids = _diff_ids(self.content.read(image.config.digest, MAX_MANIFEST_SIZE), len(image.layers))
        layers = []
        for layer, diff_id in zip(image.layers, diff_ids):
            if not self.exists(layer.digest):
                raise BlobNotFound(layer.digest)
            compression = self.plugins.layer_compression(layer.media_type)
            layers.append(LayerInput(str(layer.digest), lambda d=layer.digest: self.open(d), compression, diff_id))
        return unpack_layers(layers, Path(directory), rootless=rootless)

    def export(self, ref: str, path: str | os.PathLike, format: str = "oci",
               platform: str | Platform | None = None) -> None:
        """Write ``ref`` to ``path`` as an OCI archive (``format="oci"``, every platform the
        store has) or a docker-archive (``format="docker"``, one platform)."""
        from contentstore.image import archive

        if format == "oci":
            archive.export_oci(self, ref, Path(path))
        elif format == "docker":
            archive.export_docker(self, ref, Path(path), platform=platform)
        else:
            raise ValueError(f"unknown export format {format!r}: oci or docker")

    def import_archive(self, path: str | os.PathLike):
        """Load an OCI archive or a docker-archive, verifying every blob; returns the
        :class:`~contentstore.archive.ImportedImage` list."""
        from contentstore.image import archive

        return archive.import_archive(self, Path(path))

    # -- maintenance ---------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold off :meth:`gc` while a multi-step write (blobs, then a tag) is under way."""
        with FileLock(self.state_dir / "gc.lock", shared=True):
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with FileLock(self.state_dir / "gc.lock"):
            yield

    def gc(self, dry_run: bool = False) -> _gc.GcReport:
        """Delete every blob no reference reaches (and stale ingests); see :mod:`.gc`."""
        return _gc.collect(self, dry_run=dry_run)

    def verify(self) -> _gc.VerifyReport:
        """Rehash every blob; the report lists corrupt blobs and references to missing ones."""
        return _gc.verify(self)

    def set_label(self, digest: str, key: str, value: str | None) -> None:
        self.metadata.set_label(digest, key, value)

    def labels(self, digest: str) -> dict[str, str]:
        return self.metadata.labels(digest)


def _diff_ids(config: bytes, layers: int) -> list[str | None]:
    """An image config's ``rootfs.diff_ids``, one per layer (``None`` each when absent)."""
    import json

    try:
        diff_ids = (json.loads(config).get("rootfs") or {}).get("diff_ids")
        if diff_ids is None:
            return [None] * layers
        if isinstance(diff_ids, list) and len(diff_ids) == layers:
            return [str(Digest(d)) for d in diff_ids]
    except (ValueError, AttributeError, TypeError):
        pass
    raise InvalidManifest(f"the image config does not list one diffID for each of its {layers} layers")
