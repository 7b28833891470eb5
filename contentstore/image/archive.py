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

import io
import json
import os
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from contentstore.errors import ArchiveError, DigestMismatch, InvalidManifest, VerificationError
from contentstore.image.compression import DiffIDHasher, decompressor
from contentstore.local.fsutil import atomic_file, writing
from contentstore.local.interfaces import BlobReader, BlobStore, ReferenceIndex
from contentstore.local.leases import Leases
from contentstore.local.manifests import Manifests
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.digest import Digest, is_valid
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.limits import CHUNK_SIZE, MAX_MANIFEST_SIZE
from contentstore.model.manifest import REF_NAME_ANNOTATION, Descriptor, ImageManifest, ManifestIndex
from contentstore.model.reference import Reference
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


def export_oci(top: Descriptor, name: str, path: Path, blobs: BlobReader, manifests: Manifests,
               plugins: Plugins) -> Descriptor:
    """Write the image ``top`` names as an OCI archive at ``path``, its ``index.json`` entry
    named ``name``; return the archived top descriptor."""
    converter = _OciConverter(blobs, manifests, plugins)
    new_top = converter.convert(top)
    with atomic_file(path) as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", OCI_LAYOUT)
        entry = new_top.with_annotations(**{REF_NAME_ANNOTATION: name}).to_json()
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}
        _add_bytes(tar, "index.json", json.dumps(index, indent=2).encode())
        written: set[str] = set()
        for digest, data in converter.rewritten.items():
            _add_bytes(tar, _blob_name(digest), data)
            written.add(digest)
        for descriptor in manifests.reachable([top], strict=False):
            if descriptor.digest in written or descriptor.digest in converter.replaced:
                continue
            if blobs.exists(descriptor.digest):
                _add_blob(tar, blobs, descriptor.digest, _blob_name(descriptor.digest), descriptor.size)
                written.add(descriptor.digest)
    return new_top


def _blob_name(digest: str) -> str:
    d = Digest(digest)
    return f"blobs/{d.algorithm}/{d.hex}"


class _OciConverter:
    """Rewrites manifests and indexes with OCI media types; new bytes, new digests."""

    def __init__(self, blobs: BlobReader, manifests: Manifests, plugins: Plugins):
        self.blobs = blobs
        self.manifests = manifests
        self.plugins = plugins
        self.rewritten: dict[str, bytes] = {}  # new digest -> bytes
        self.replaced: set[str] = set()         # old digests no longer referenced

    def convert(self, descriptor: Descriptor) -> Descriptor:
        if not self.blobs.exists(descriptor.digest):
            return descriptor  # a platform that was not pulled: left as the index says
        manifest = self.manifests.read(descriptor)
        oci_type = self.plugins.oci_media_type(manifest.media_type)
        if isinstance(manifest, ManifestIndex):
            children = [self.convert(child) for child in manifest.manifests]
            if oci_type == manifest.media_type and children == manifest.manifests:
                return descriptor
            body = dict(manifest.body, mediaType=oci_type)
            body["manifests"] = [c.to_json() for c in children]
        elif isinstance(manifest, ImageManifest):
            if oci_type == manifest.media_type:
                return descriptor
            body = dict(manifest.body, mediaType=oci_type)
            body["config"] = self._retyped(body["config"])
            body["layers"] = [self._retyped(layer) for layer in body.get("layers", [])]
        else:
            return descriptor
        data = json.dumps(body, indent=3).encode()
        info_digest = digests.of_bytes(data)
        self.rewritten[info_digest] = data
        self.replaced.add(descriptor.digest)
        return Descriptor(oci_type, info_digest, len(data), descriptor.platform, dict(descriptor.annotations))

    def _retyped(self, descriptor: dict) -> dict:
        return dict(descriptor, mediaType=self.plugins.oci_media_type(descriptor.get("mediaType", "")))


def export_docker(name: str | None, config: ImageConfig, config_digest: Digest, layers: list[Descriptor],
                  path: Path, blobs: BlobReader, plugins: Plugins) -> None:
    """Write one image (its config and layers) as a docker-archive at ``path``, tagged
    ``name`` when that is a tag reference."""
    diff_ids = config.diff_ids
    if diff_ids is None:
        raise ArchiveError(f"{name or config_digest}: the config has no rootfs.diff_ids; not an image")
    if len(diff_ids) != len(layers):
        raise VerificationError(f"{name or config_digest}: layers from manifest don't match image configuration")
    tags = []
    parsed = _parse_reference(name) if name else None
    if parsed and parsed.tag and not parsed.digest:
        tags.append(parsed.familiar())
    with atomic_file(path) as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        config_name = f"{config_digest.hex}.json"
        _add_bytes(tar, config_name, config.raw)
        layer_names = []
        for layer, diff_id in zip(layers, diff_ids):
            layer_name = f"{diff_id.hex}/layer.tar"
            if layer_name not in layer_names:
                _add_layer_tar(tar, blobs, layer, plugins.layer_compression(layer.media_type), diff_id,
                               layer_name)
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


def import_archive(path: Path, blobs: BlobStore, references: ReferenceIndex, manifests: Manifests,
                   plugins: Plugins, leases: Leases) -> list[ImportedImage]:
    """Load an OCI archive or a docker-archive; return the images (and names) loaded."""
    try:
        tar = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{path}: not a tar archive ({exc})") from None
    with tar, leases.lease():
        names = {_normal(m.name): m for m in tar.getmembers()}
        if "manifest.json" in names:
            return _import_docker(blobs, references, tar, names, path)
        if "index.json" in names and "oci-layout" in names:
            return _import_oci(blobs, references, manifests, plugins, tar, names, path)
        raise ArchiveError(f"{path}: neither an OCI archive (oci-layout, index.json) nor a "
                           f"docker-archive (manifest.json)")


def _normal(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int = MAX_MANIFEST_SIZE) -> bytes:
    if member.size > limit:
        raise ArchiveError(f"{member.name} is too large ({member.size} bytes)")
    return tar.extractfile(member).read()


def _import_oci(blobs: BlobStore, references: ReferenceIndex, manifests: Manifests, plugins: Plugins,
                tar, names, path) -> list[ImportedImage]:
    for name, member in names.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "blobs" and member.isfile():
            digest = f"{parts[1]}:{parts[2]}"
            if not is_valid(digest):
                raise ArchiveError(f"{path}: {name} is not named by a valid digest")
            blobs.put(tar.extractfile(member), expected=digest, size=member.size)
    try:
        index = json.loads(_read_member(tar, names["index.json"]))
        entries = [Descriptor.from_json(e, "index.json entry") for e in index.get("manifests", [])]
    except (ValueError, AttributeError) as exc:
        raise ArchiveError(f"{path}: index.json is not valid: {exc}") from None
    for entry in entries:
        _check_complete(blobs, manifests, plugins, entry, path)
    loaded = []
    for entry in entries:
        name = entry.annotations.get(REF_NAME_ANNOTATION)
        local = _local_name(name) if name else None
        if local:
            references.tag(local, Descriptor(entry.media_type, entry.digest, entry.size, entry.platform))
        loaded.append(ImportedImage(local, entry.digest))
    return loaded


def _check_complete(blobs: BlobReader, manifests: Manifests, plugins: Plugins, entry: Descriptor,
                    path) -> None:
    """The archive must hold the entry and, for every image manifest it holds, that
    image's config and layers (an index may name platforms it does not carry)."""
    if not blobs.exists(entry.digest):
        raise ArchiveError(f"{path}: the archive lacks {entry.digest}, which index.json names")
    for descriptor in manifests.reachable([entry], strict=True):
        if not blobs.exists(descriptor.digest) or not plugins.is_manifest_type(descriptor.media_type):
            continue
        manifest = manifests.read(descriptor)
        if isinstance(manifest, ImageManifest):
            for blob in manifest.references():
                if not blobs.exists(blob.digest):
                    raise ArchiveError(f"{path}: the archive lacks {blob.digest} of {descriptor.digest}")


def _local_name(name: str) -> str:
    """A full reference when the archive's name is one; else the name as it is."""
    if "/" in name or ":" in name:
        try:
            return str(Reference.parse(name))
        except ValueError:
            pass
    return name


def _import_docker(blobs: BlobStore, references: ReferenceIndex, tar, names, path) -> list[ImportedImage]:
    try:
        manifest = json.loads(_read_member(tar, names["manifest.json"]))
        assert isinstance(manifest, list)
    except (ValueError, AssertionError) as exc:
        raise ArchiveError(f"{path}: manifest.json is not valid: {exc}") from None
    loaded = []
    for entry in manifest:
        try:
            config_member = names[_normal(entry["Config"])]
            layer_members = [names[_normal(layer)] for layer in entry["Layers"]]
        except (KeyError, TypeError) as exc:
            raise ArchiveError(f"{path}: manifest.json names a file the archive lacks: {exc}") from None
        config_bytes = _read_member(tar, config_member)
        config_name = os.path.basename(_normal(entry["Config"]))
        expected = None
        stem = config_name.removesuffix(".json")
        if is_valid(f"sha256:{stem}"):
            expected = f"sha256:{stem}"
        config_info = blobs.put(config_bytes, expected=expected)
        try:
            diff_ids = ImageConfig.parse(config_bytes).diff_ids
        except InvalidManifest:
            diff_ids = None
        if diff_ids is None:
            raise InvalidManifest(f"{path}: {entry['Config']} has no valid rootfs.diff_ids")
        if len(diff_ids) != len(layer_members):
            raise VerificationError(f"{path}: layers from manifest don't match image configuration")
        layers = []
        for member, diff_id in zip(layer_members, diff_ids):
            layers.append(_import_layer(blobs, tar, member, diff_id))
        body = {
            "schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
            "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config_info.digest, "size": config_info.size},
            "layers": [layer.to_json() for layer in layers],
        }
        manifest_bytes = json.dumps(body, indent=3).encode()
        info = blobs.put(manifest_bytes)
        target = Descriptor(mt.DOCKER_MANIFEST, info.digest, info.size)
        tags = entry.get("RepoTags") or []
        for tag in tags:
            name = str(Reference.parse(tag))
            references.tag(name, target)
            loaded.append(ImportedImage(name, info.digest))
        if not tags:
            loaded.append(ImportedImage(None, info.digest))
    return loaded


def _import_layer(blobs: BlobStore, tar, member: tarfile.TarInfo, diff_id: Digest) -> Descriptor:
    """Store a layer file as it is (plain or gzip tar); it enters the store only if its
    uncompressed content has the diffID the config says."""
    source = tar.extractfile(member)
    head = source.read(2)
    compressed = head == b"\x1f\x8b"
    media_type = mt.DOCKER_LAYER_GZIP if compressed else mt.DOCKER_LAYER
    hasher = DiffIDHasher("gzip" if compressed else "none")
    source.seek(0)
    with blobs.writer(f"import-{uuid.uuid4().hex}", total=member.size) as writer:
        while chunk := source.read(CHUNK_SIZE):
            hasher.update(chunk)
            writer.write(chunk)
        actual = hasher.digest()
        if actual != diff_id:
            writer.abort()
            raise DigestMismatch(diff_id, actual, f"layer {member.name}")
        info = writer.commit()
    return Descriptor(media_type, info.digest, info.size)
