"""Images in and out as files: OCI archives and docker-archives (``docker save``/``load``).

- ``export --format oci``: a tar of an OCI image layout holding just that image (its
  index, the manifests and blobs the store has), readable by ``skopeo``'s
  ``oci-archive:``. Docker media types are rewritten to their OCI equivalents (through
  the format plugins), as ``skopeo copy --format oci`` does.
- ``export --format docker``: ``manifest.json``, ``repositories``, the config and
  uncompressed layer tars, as ``docker save`` writes them and ``docker load`` reads them.
- ``import``: either kind (including ``docker save`` output of several images); every
  blob is verified on its way into the store.

Everything streams: layers go from the store to the archive (or back) in chunks, through
a temporary file where a tar header needs a size first.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import lzma
import posixpath
import tarfile
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from contentstore.errors import (
    ArchiveError,
    ContentStoreError,
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    SizeMismatch,
    VerificationError,
)
from contentstore.image.compression import DiffIDHasher, decompressor
from contentstore.local.fsutil import atomic_file, writing
from contentstore.local.interfaces import BlobReader, BlobStore, ReferenceIndex
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.model import mediatypes as mt
from contentstore.model.digest import Digest, is_valid
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.limits import CHUNK_SIZE, MAX_MANIFEST_SIZE
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor, ImageManifest
from contentstore.model.reference import Reference
from contentstore.plugin import NOT_A_TAR
from contentstore.plugin.manager import Plugins

OCI_LAYOUT = json.dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}).encode()


@dataclass(frozen=True)
class ImportedImage:
    reference: str | None
    digest: Digest


# -- export ----------------------------------------------------------------------------------


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _add_blob(tar: tarfile.TarFile, blobs: BlobReader, digest: Digest, name: str, size: int = -1) -> None:
    """Copy a stored blob into the archive, verified as it streams (a blob that changed on
    disk raises CorruptBlob before its last bytes are written)."""
    with blobs.open_verified(digest, size if size >= 0 else None) as blob:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(blob), 0o444, 0
        tar.addfile(info, blob)


def export_oci(top: Descriptor, name: str, path: Path, blobs: BlobReader, manifests: Manifests) -> Descriptor:
    """Write the image ``top`` names (OCI-typed: the store's named entries are, see
    :mod:`contentstore.local.ociview`) as an OCI archive at ``path``, its ``index.json``
    entry named ``name``; return the archived top descriptor."""
    with atomic_file(path) as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", OCI_LAYOUT)
        entry = top.with_annotations(**{REF_NAME_ANNOTATION: name}).to_json()
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
        _add_bytes(tar, "index.json", json.dumps(index, indent=2).encode())
        for descriptor in manifests.reachable([top], strict=False):
            if blobs.exists(descriptor.digest):
                _add_blob(tar, blobs, descriptor.digest, _blob_name(descriptor.digest), descriptor.size)
    return top


def _blob_name(digest: str) -> str:
    d = Digest(digest)
    return f"blobs/{d.algorithm}/{d.hex}"


def export_docker(name: str | None, config: ImageConfig, config_digest: Digest, layers: list[Descriptor],
                  path: Path, blobs: BlobReader, plugins: Plugins,
                  diff_id_verified: Callable[[Digest, Digest], None] | None = None) -> None:
    """Write one image (its config and layers) as a docker-archive at ``path``, tagged
    ``name`` when that is a tag reference. Each layer is decompressed and its diffID
    checked; ``diff_id_verified(layer_digest, diff_id)`` is told of each one that held."""
    diff_ids = config.diff_ids
    if diff_ids is None:
        raise ArchiveError(f"{name or config_digest}: the config has no rootfs.diff_ids; not an image")
    if len(diff_ids) != len(layers):
        raise VerificationError(f"{name or config_digest}: layers from manifest don't match image configuration")
    compressions = [plugins.layer_compression(layer.media_type) for layer in layers]
    for layer, compression in zip(layers, compressions):
        if compression == NOT_A_TAR:
            raise ArchiveError(f"{name or config_digest}: layer {layer.digest} ({layer.media_type}) is a file, "
                               f"not a tar: a docker-archive holds only tar layers (export --format oci)")
    tags = []
    parsed = _parse_reference(name) if name else None
    if parsed and parsed.tag and not parsed.digest:
        tags.append(parsed.familiar())
    with atomic_file(path) as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        config_name = f"{config_digest.hex}.json"
        _add_bytes(tar, config_name, config.raw)
        layer_names = []
        for layer, diff_id, compression in zip(layers, diff_ids, compressions):
            layer_name = f"{diff_id.hex}/layer.tar"
            if layer_name not in layer_names:
                _add_layer_tar(tar, blobs, layer, compression, diff_id, layer_name)
                if diff_id_verified is not None:
                    diff_id_verified(layer.digest, diff_id)
            layer_names.append(layer_name)
        manifest = [{"Config": config_name, "RepoTags": tags, "Layers": layer_names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        if tags:
            repositories = {parsed.familiar_name: {parsed.tag: diff_ids[-1].hex if diff_ids else ""}}
            _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _add_layer_tar(tar: tarfile.TarFile, blobs: BlobReader, layer: Descriptor, compression: str,
                   diff_id: Digest, name: str) -> None:
    """Decompress a layer into a temporary file (a tar header needs its size), check its
    digest (as it streams) and its diffID, and add it."""
    hasher = DiffIDHasher("none")
    size = layer.size if layer.size >= 0 else None
    spooled = f"the uncompressed layer {layer.digest} (a temporary file)"
    with tempfile.TemporaryFile() as spool, blobs.open_verified(layer.digest, size) as blob:
        inflate = decompressor(compression)
        while chunk := blob.read(CHUNK_SIZE):
            data = inflate.decompress(chunk)
            with writing(spooled, tempfile.gettempdir()):
                spool.write(data)
            hasher.update(data)
        tail = inflate.finish()
        with writing(spooled, tempfile.gettempdir()):
            spool.write(tail)
            spool.flush()
        hasher.update(tail)
        if hasher.digest() != diff_id:
            raise DigestMismatch(diff_id, hasher.digest(), f"uncompressed layer {layer.digest}")
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = spool.tell(), 0o644, 0
        spool.seek(0)
        tar.addfile(info, spool)


def _parse_reference(text: str) -> Reference | None:
    try:
        return Reference.parse(text)
    except ValueError:
        return None


# -- import ------------------------------------------------------------------------------------


#: Links followed to find one member: Linux's limit for one path lookup.
MAX_LINKS = 40

#: What reading a damaged tar, or its compression, raises.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def import_archive(path: Path, blobs: BlobStore, references: ReferenceIndex, manifests: Manifests,
                   plugins: Plugins, leases: Leases,
                   verify: Callable[[str, Descriptor], None] | None = None) -> list[ImportedImage]:
    """Load an OCI archive or a docker-archive; return the images (and names) loaded.

    Bad input of any shape ends in one :class:`ContentStoreError` (mostly
    :class:`ArchiveError`) whose message names the archive and the member. Every blob is
    verified on its way in, and names are given only when every image of the archive is
    complete: a failed import adds no reference (blobs already verified stay, for gc).

    :param verify: ``verify(name, descriptor)`` for each image about to be named, once
        every blob is in and before any name is written; what it raises refuses the
        whole import (no name is written).
    """
    try:
        tar = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{path}: not a tar archive ({_one_line(exc)})") from None
    try:
        with tar, leases.lease():
            archive = _Archive(tar, path)
            if archive.has("manifest.json"):
                images = _import_docker(archive, blobs)
            elif archive.has("index.json") and archive.has("oci-layout"):
                images = _import_oci(archive, blobs, manifests, plugins)
            elif archive.has("repositories"):
                raise ArchiveError(f"{path}: a docker-archive without manifest.json (Docker before 1.10 "
                                   f"wrote those) is not supported")
            else:
                raise ArchiveError(f"{path}: neither an OCI archive (oci-layout, index.json) nor a "
                                   f"docker-archive (manifest.json)")
            if verify is not None:
                for name, target in images:
                    if name:
                        verify(name, target)
            _name_all(references, images)
    except _CORRUPT as exc:
        raise ArchiveError(f"{path}: the archive is truncated or corrupt ({_one_line(exc)})") from None
    except RecursionError:
        raise ArchiveError(f"{path}: the archive holds data nested too deeply to read") from None
    except ContentStoreError as exc:
        _prefix(exc, f"{path}: ")
        raise
    return [ImportedImage(name, target.digest) for name, target in images]


class _Archive:
    """An archive's members by name. Links are followed inside the archive, never out of
    it: symbolic ones (``docker save`` writes a layer that two images share once, and a
    symlink to it for the other), absolute ones from the archive's root, and hard links."""

    def __init__(self, tar: tarfile.TarFile, path: Path):
        self.tar = tar
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            name = _member_name(member.name)
            if name is not None:
                self.members[name] = member  # the last of one name wins, as when extracting

    def has(self, name: str) -> bool:
        return name in self.members

    def resolve(self, name: str, what: str | None = None) -> tarfile.TarInfo:
        """The regular file ``name`` leads to; ``what`` says who names it, for errors."""
        label = f"{_show(name)}" + (f" ({what})" if what else "")
        pending = list(reversed(name.split("/")))  # a stack: the next component last
        done: list[str] = []
        links = 0
        via = None
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    raise ArchiveError(f"{self.path}: {label} leads outside the archive")
                done.pop()
                continue
            done.append(part)
            member = self.members.get("/".join(done))
            if member is None or not (member.issym() or member.islnk()):
                continue
            links += 1
            if links > MAX_LINKS:
                raise ArchiveError(f"{self.path}: {label}: too many links to follow (a loop?)")
            done.pop()
            if member.islnk() or member.linkname.startswith("/"):
                done = []  # a hard link names a member from the root; so does an absolute symlink
            via = member.linkname
            pending.extend(reversed(member.linkname.split("/")))
        member = self.members.get("/".join(done)) if done else None
        if member is None:
            if via is not None:
                raise ArchiveError(f"{self.path}: {label} is a link to {_show(via)}, which is not in the archive")
            raise ArchiveError(f"{self.path}: {label} is not in the archive")
        if member.isdir():
            raise ArchiveError(f"{self.path}: {label} is a directory, not a file")
        if not member.isfile():
            raise ArchiveError(f"{self.path}: {label} is not a regular file")
        return member

    def open(self, member: tarfile.TarInfo) -> BinaryIO:
        return self.tar.extractfile(member)

    def read(self, member: tarfile.TarInfo, label: str, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        if member.size > limit:
            raise ArchiveError(f"{self.path}: {label} is too large ({member.size} bytes; at most {limit})")
        return self.open(member).read()

    def load_json(self, name: str):
        """The member ``name`` parsed as JSON, of any shape."""
        label = _show(name)
        data = self.read(self.resolve(name), label)
        try:
            return json.loads(data)
        except RecursionError:
            raise ArchiveError(f"{self.path}: {label} is nested too deeply") from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise ArchiveError(f"{self.path}: {label} is not valid JSON ({exc})") from None


def _member_name(raw: str) -> str | None:
    """A member's name as manifests name it (``./a`` and ``/a`` are ``a``); ``None`` for
    one that no name inside the archive can reach."""
    name = posixpath.normpath(raw.lstrip("/")) if raw.strip("/") else "."
    if name in (".", "..") or name.startswith("../"):
        return None
    return name


def _name_all(references: ReferenceIndex, images: list[tuple[str | None, Descriptor]]) -> None:
    """Give every name or none: when one fails, the names given are put back as they were."""
    named = [(name, target) for name, target in images if name]
    if not named:
        return
    before = references.names()
    done: list[str] = []
    try:
        for name, target in named:
            references.tag(name, target)
            done.append(name)
    except BaseException:
        for name in reversed(done):
            with contextlib.suppress(ContentStoreError, OSError):
                if name in before:
                    references.tag(name, before[name])
                else:
                    references.untag(name)
        raise


def _prefix(exc: ContentStoreError, prefix: str) -> None:
    """Start the message of ``exc`` with ``prefix`` (once), keeping its class."""
    message = str(exc)
    if not message.startswith(prefix):
        exc.args = (prefix + message, *exc.args[1:])


@contextlib.contextmanager
def _verifying(what: str) -> Iterator[None]:
    """Name the member in a digest or size mismatch found while storing it."""
    try:
        yield
    except DigestMismatch as exc:
        raise DigestMismatch(exc.expected, exc.actual, what) from None
    except SizeMismatch as exc:
        raise SizeMismatch(exc.expected, exc.actual, what) from None


def _kind(value) -> str:
    """What a JSON value is, for a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    return "a list" if isinstance(value, list) else "an object"


def _one_line(exc: BaseException) -> str:
    """An error message from elsewhere on one line (tarfile lists each method it tried)."""
    return " ".join(str(exc).split())


def _show(text: str, limit: int = 100) -> str:
    """``text`` quoted on one line, cut when long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _is_tag(text: str) -> bool:
    if any(c in text for c in "/:@"):
        return False
    try:
        return Reference.parse(f"localhost/name:{text}").tag == text
    except InvalidReference:
        return False


def _local_name(name, where: str) -> str:
    """The local name for an index entry's ``org.opencontainers.image.ref.name``: a full
    reference, normalized, or a bare tag (``1.0``, as ``skopeo copy … oci-archive:FILE:1.0``
    writes it) kept as it is. Anything else is refused: it would name nothing to pull or
    run, and other tools take the name for a path (``../../etc/cron.d/x``)."""
    if not isinstance(name, str):
        raise ArchiveError(f"{where}: the name {REF_NAME_ANNOTATION} must be a string, not {_kind(name)}")
    if _is_tag(name):
        return name
    try:
        parsed = Reference.parse(name)
    except InvalidReference:
        raise ArchiveError(f"{where}: the name {_show(name)} is neither a reference nor a tag") from None
    if parsed.digest:
        raise ArchiveError(f"{where}: the name {_show(name)} holds a digest; a local name is a tag")
    return str(parsed)


# -- import: OCI archives


def _import_oci(archive: _Archive, blobs: BlobStore, manifests: Manifests,
                plugins: Plugins) -> list[tuple[str | None, Descriptor]]:
    path = archive.path
    index = archive.load_json("index.json")
    if not isinstance(index, dict):
        raise ArchiveError(f"{path}: index.json must be an object, not {_kind(index)}")
    entries = index.get("manifests", [])
    if not isinstance(entries, list):
        raise ArchiveError(f"{path}: index.json: \"manifests\" must be a list, not {_kind(entries)}")
    # Every entry and name is checked before a blob is stored.
    planned = [_oci_entry(raw, f"{path}: index.json entry {number}") for number, raw in enumerate(entries, 1)]
    stored: list[str] = []
    for name, member in sorted(archive.members.items()):
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "blobs" or member.isdir():
            continue
        digest = f"{parts[1]}:{parts[2]}"
        if not is_valid(digest):
            raise ArchiveError(f"{path}: {_show(name)} is not named by a valid digest")
        member = archive.resolve(name)
        with _verifying(f"member {_show(name)}"):
            blobs.put(archive.open(member), expected=digest, size=member.size)
        stored.append(digest)
    for number, (_, entry) in enumerate(planned, 1):
        _check_complete(blobs, manifests, plugins, entry, f"index.json entry {number}")
    for digest in stored:  # referrers (OCI 1.1) the archive carries, in the subject index
        manifests.index_stored(digest)
    return planned


def _oci_entry(raw, where: str) -> tuple[str | None, Descriptor]:
    """The local name (if any) and the descriptor an ``index.json`` entry gives."""
    if not isinstance(raw, dict):
        raise ArchiveError(f"{where}: a descriptor must be an object, not {_kind(raw)}")
    try:
        entry = Descriptor.from_json(raw, "descriptor")
    except InvalidManifest as exc:
        raise ArchiveError(f"{where}: {exc}") from None
    if not isinstance(entry.media_type, str) or not entry.media_type:
        raise ArchiveError(f"{where}: \"mediaType\" must be a media type, not {_kind(raw.get('mediaType'))}")
    platform = entry.platform
    if platform is not None and not (
            isinstance(platform.os_version, (str, type(None))) and isinstance(platform.variant, (str, type(None)))
            and all(isinstance(f, str) for f in platform.os_features)):
        raise ArchiveError(f"{where}: \"platform\" holds something other than strings")
    name = entry.annotations.get(REF_NAME_ANNOTATION)
    local = _local_name(name, where) if name is not None else None
    return local, Descriptor(entry.media_type, entry.digest, entry.size, platform)


def _check_complete(blobs: BlobReader, manifests: Manifests, plugins: Plugins, entry: Descriptor,
                    what: str) -> None:
    """The archive must hold the entry and, for every image manifest it holds, that
    image's config and layers (an index may name platforms it does not carry); every
    descriptor of what it holds must give the size the blob has."""
    if not blobs.exists(entry.digest):
        raise ArchiveError(f"the archive lacks {entry.digest}, which {what} names")
    try:
        for descriptor in manifests.reachable([entry], strict=True):
            if not blobs.exists(descriptor.digest):
                continue
            # A wrong size is refused, not corrected: the descriptor is what the archive's
            # author signed off on (an index entry may be signed too), the store keeps
            # descriptors as given, and other tools (umoci, containerd) refuse the image.
            if descriptor.size >= 0 and blobs.size(descriptor.digest) != descriptor.size:
                raise SizeMismatch(descriptor.size, blobs.size(descriptor.digest),
                                   f"{descriptor.digest} as {what} describes it")
            if not plugins.is_manifest_type(descriptor.media_type):
                continue
            manifest = manifests.read(descriptor)
            if isinstance(manifest, ImageManifest):
                for blob in manifest.references():
                    if not blobs.exists(blob.digest):
                        raise ArchiveError(f"the archive lacks {blob.digest} of {descriptor.digest}")
    except ContentStoreError as exc:
        if not isinstance(exc, VerificationError):
            _prefix(exc, f"{what}: ")
        raise


# -- import: docker-archives


@dataclass(frozen=True)
class _DockerImage:
    what: str  # "manifest.json entry N", for messages
    config_name: str
    config: tarfile.TarInfo
    layer_names: list[str]
    layers: list[tarfile.TarInfo]
    tags: list[str]


def _import_docker(archive: _Archive, blobs: BlobStore) -> list[tuple[str | None, Descriptor]]:
    manifest = archive.load_json("manifest.json")
    if not isinstance(manifest, list):
        raise ArchiveError(f"{archive.path}: manifest.json must be a list of images, not {_kind(manifest)}")
    # Every entry, name and member is checked before a blob is stored.
    images = [_docker_entry(archive, entry, f"manifest.json entry {number}")
              for number, entry in enumerate(manifest, 1)]
    stored: dict[tuple[str, str], Descriptor] = {}  # a layer two images share is stored once
    loaded: list[tuple[str | None, Descriptor]] = []
    for image in images:
        target = _import_docker_image(archive, blobs, image, stored)
        loaded.extend((tag, target) for tag in image.tags)
        if not image.tags:
            loaded.append((None, target))
    return loaded


def _docker_entry(archive: _Archive, entry, what: str) -> _DockerImage:
    where = f"{archive.path}: {what}"
    if not isinstance(entry, dict):
        raise ArchiveError(f"{where}: an image must be an object, not {_kind(entry)}")
    config = entry.get("Config")
    if not isinstance(config, str) or not config:
        raise ArchiveError(f"{where}: \"Config\" must be a file name, not {_kind(config)}")
    layers = entry.get("Layers")
    if layers is None:
        layers = []
    if not isinstance(layers, list):
        raise ArchiveError(f"{where}: \"Layers\" must be a list of file names, not {_kind(layers)}")
    for layer in layers:
        if not isinstance(layer, str) or not layer:
            raise ArchiveError(f"{where}: \"Layers\" must be a list of file names, not one holding {_kind(layer)}")
    tags = entry.get("RepoTags")
    if tags is None:
        tags = []
    if not isinstance(tags, list):
        raise ArchiveError(f"{where}: \"RepoTags\" must be a list of references, not {_kind(tags)}")
    return _DockerImage(
        what, config, archive.resolve(config, f"the config of {what}"),
        layers, [archive.resolve(layer, f"layer {n} of {what}") for n, layer in enumerate(layers, 1)],
        [_repo_tag(tag, where) for tag in tags],
    )


def _repo_tag(tag, where: str) -> str:
    """A ``RepoTags`` entry as a local name: a reference with a tag, as ``docker load`` wants."""
    if not isinstance(tag, str):
        raise ArchiveError(f"{where}: \"RepoTags\" must hold references, not {_kind(tag)}")
    try:
        parsed = Reference.parse(tag, default_tag=None)
    except InvalidReference:
        raise ArchiveError(f"{where}: RepoTags {_show(tag)} is not a reference") from None
    if parsed.digest or not parsed.tag:
        raise ArchiveError(f"{where}: RepoTags {_show(tag)} is not a reference with a tag")
    return str(parsed)


def _import_docker_image(archive: _Archive, blobs: BlobStore, image: _DockerImage,
                         stored: dict[tuple[str, str], Descriptor]) -> Descriptor:
    where = f"{archive.path}: {image.what}"
    config_label = f"the config {_show(image.config_name)} of {image.what}"
    config_bytes = archive.read(image.config, config_label)
    try:
        config = ImageConfig.parse(config_bytes)
    except RecursionError:
        raise ArchiveError(f"{archive.path}: {config_label} is nested too deeply") from None
    except (InvalidManifest, TypeError, AttributeError) as exc:
        # TypeError, AttributeError: the parser does not check every field's type (os: 5)
        raise ArchiveError(f"{archive.path}: {config_label} is not a valid image config ({exc})") from None
    if config.diff_ids is None:
        raise ArchiveError(f"{archive.path}: {config_label} has no rootfs.diff_ids; not an image")
    if len(config.diff_ids) != len(image.layers):
        raise VerificationError(f"{where}: {len(image.layers)} layers, but the image configuration has "
                                f"{len(config.diff_ids)}")
    stem = posixpath.basename(image.config_name).removesuffix(".json")
    expected = f"sha256:{stem}" if is_valid(f"sha256:{stem}") else None
    with _verifying(config_label):
        config_info = blobs.put(config_bytes, expected=expected)
    layers = []
    for number, (name, member, diff_id) in enumerate(zip(image.layer_names, image.layers, config.diff_ids), 1):
        key = (member.name, diff_id)
        if key not in stored:
            stored[key] = _import_layer(archive, blobs, member, diff_id,
                                        f"layer {number} {_show(name)} of {image.what}")
        layers.append(stored[key])
    body = {
        "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config_info.digest, "size": config_info.size},
        "layers": [layer.to_json() for layer in layers],
    }
    info = blobs.put(json.dumps(body, indent=3).encode())
    return Descriptor(mt.DOCKER_MANIFEST, info.digest, info.size)


def _import_layer(archive: _Archive, blobs: BlobStore, member: tarfile.TarInfo, diff_id: Digest,
                  label: str) -> Descriptor:
    """Store a layer file as it is (plain or gzip tar); it enters the store only if its
    uncompressed content has the diffID the config says."""
    source = archive.open(member)
    head = source.read(2)
    compressed = head == b"\x1f\x8b"
    media_type = mt.DOCKER_LAYER_GZIP if compressed else mt.DOCKER_LAYER
    hasher = DiffIDHasher("gzip" if compressed else "none")
    source.seek(0)
    with blobs.writer(f"import-{uuid.uuid4().hex}", total=member.size) as writer:
        try:
            while chunk := source.read(CHUNK_SIZE):
                hasher.update(chunk)
                writer.write(chunk)
            actual = hasher.digest()
            if actual != diff_id:
                raise DigestMismatch(diff_id, actual, label)
            with _verifying(label):
                info = writer.commit()
        except BaseException:
            writer.abort()  # nothing could resume an ingest of a random name
            raise
    return Descriptor(media_type, info.digest, info.size)
