"""contentstore.local.manifests.Manifests: stored manifests read through the real format
plugins, and everything reachable from some roots (gc, images, export, push)."""

import json
import os
from dataclasses import dataclass

import pytest

from contentstore.errors import BlobNotFound, InvalidDigest, InvalidManifest, SizeMismatch, UnsupportedMediaType
from contentstore.local.content import ContentStore
from contentstore.local.manifests import Manifests
from contentstore.local.metadata import GC_REF_LABEL_PREFIX, ORIGINAL_LABEL, Metadata
from contentstore.model import mediatypes as mt
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import Descriptor, ImageManifest, ManifestIndex
from contentstore.model.platform import Platform

OCTET = "application/octet-stream"


@dataclass
class Parts:
    content: ContentStore
    metadata: Metadata
    manifests: Manifests

    def put(self, data: bytes, media_type: str) -> Descriptor:
        info = self.content.put(data)
        return Descriptor(media_type, info.digest, info.size)

    def put_json(self, body: dict, media_type: str) -> Descriptor:
        return self.put(json.dumps(body, indent=2).encode(), media_type)

    def image(self, name: str, shared: Descriptor | None = None, media_type: str = mt.OCI_MANIFEST,
              declare: bool = True) -> "Image":
        config = self.put_json({"architecture": "amd64", "os": "linux", "name": name,
                                "rootfs": {"type": "layers", "diff_ids": []}}, mt.OCI_CONFIG)
        layer = self.put(f"layer of {name}".encode() + os.urandom(16), mt.OCI_LAYER_GZIP)
        layers = [shared, layer] if shared else [layer]
        body = {"schemaVersion": 2, "config": config.to_json(), "layers": [x.to_json() for x in layers]}
        if declare:
            body["mediaType"] = media_type
        return Image(self.put_json(body, media_type), config, layers)

    def index(self, *images: "Image", media_type: str = mt.OCI_INDEX) -> Descriptor:
        entries = []
        for arch, image in zip(("amd64", "arm64", "s390x"), images):
            entries.append({**image.manifest.to_json(), "platform": {"os": "linux", "architecture": arch}})
        return self.put_json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, media_type)


@dataclass
class Image:
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]

    @property
    def blobs(self) -> list[Descriptor]:
        return [self.manifest, self.config, *self.layers]


@pytest.fixture
def parts(tmp_path, plugins):
    content = ContentStore(tmp_path / "root", tmp_path / "state")
    metadata = Metadata(tmp_path / "state" / "metadata.db")
    return Parts(content, metadata, Manifests(content, plugins, metadata))


def digests_of(descriptors) -> list[str]:
    return [d.digest for d in descriptors]


# -- read -------------------------------------------------------------------------------------


def test_read_by_media_type_or_detected(parts):
    image = parts.image("one")
    manifest = parts.manifests.read(image.manifest)
    assert isinstance(manifest, ImageManifest) and manifest.media_type == mt.OCI_MANIFEST
    assert manifest.config == image.config and manifest.layers == image.layers
    assert manifest.raw == parts.content.read(image.manifest.digest)
    undeclared = Descriptor("", image.manifest.digest, image.manifest.size)
    assert parts.manifests.read(undeclared).media_type == mt.OCI_MANIFEST
    index = parts.manifests.read(parts.index(image))
    assert isinstance(index, ManifestIndex)
    assert index.select(Platform.parse("linux/amd64")).digest == image.manifest.digest
    docker = parts.image("docker", media_type=mt.DOCKER_MANIFEST)
    assert parts.manifests.read(docker.manifest).media_type == mt.DOCKER_MANIFEST


def test_read_refuses(parts):
    image = parts.image("one")
    index = parts.index(image)
    with pytest.raises(InvalidManifest, match="body says mediaType"):  # an index said to be a manifest
        parts.manifests.read(Descriptor(mt.OCI_MANIFEST, index.digest, index.size))
    with pytest.raises(UnsupportedMediaType):
        parts.manifests.read(image.config)
    with pytest.raises(BlobNotFound):
        parts.manifests.read(Descriptor(mt.OCI_MANIFEST, "sha256:" + "0" * 64, 10))
    big = parts.put(b"{" + b" " * MAX_MANIFEST_SIZE + b"}", mt.OCI_MANIFEST)
    with pytest.raises(SizeMismatch, match="too large to read whole"):
        parts.manifests.read(big)


# -- descriptor ----------------------------------------------------------------------------------


def test_descriptor_detects_the_media_type(parts):
    image = parts.image("one")
    undeclared = parts.image("two", declare=False)
    docker_list = parts.index(image, media_type=mt.DOCKER_MANIFEST_LIST)
    big = parts.put(os.urandom(MAX_MANIFEST_SIZE + 1), OCTET)
    for digest, media_type in [(image.manifest.digest, mt.OCI_MANIFEST), (undeclared.manifest.digest, mt.OCI_MANIFEST),
                               (parts.index(image).digest, mt.OCI_INDEX),
                               (docker_list.digest, mt.DOCKER_MANIFEST_LIST),
                               (image.config.digest, OCTET), (image.layers[0].digest, OCTET),
                               (big.digest, OCTET)]:
        found = parts.manifests.descriptor(str(digest))
        assert found == Descriptor(media_type, digest, parts.content.size(digest))
    with pytest.raises(BlobNotFound):
        parts.manifests.descriptor("sha256:" + "0" * 64)
    with pytest.raises(InvalidDigest):
        parts.manifests.descriptor("sha256:zz")


# -- parse_if_manifest --------------------------------------------------------------------------------


def test_parse_if_manifest_for_children(parts):
    image = parts.image("one")
    parse = parts.manifests.parse_if_manifest
    assert parse(image.manifest).digest == image.manifest.digest
    assert parse(image.config) is None and parse(image.layers[0]) is None
    assert parse(Descriptor("application/x-unknown", image.manifest.digest, 1)) is None  # said not to be one
    # no media type: the bytes decide
    assert parse(Descriptor("", image.manifest.digest, 1)).media_type == mt.OCI_MANIFEST
    assert parse(Descriptor("", image.config.digest, 1)) is None
    assert parse(parts.put(os.urandom(MAX_MANIFEST_SIZE + 1), "")) is None


def test_parse_if_manifest_for_roots(parts):
    image = parts.image("one")
    parse = parts.manifests.parse_if_manifest
    assert parse(image.manifest, root=True).digest == image.manifest.digest
    # a root with a media type no plugin reads, holding a manifest: detected and read
    odd = Descriptor("application/x-unknown", image.manifest.digest, image.manifest.size)
    assert parse(odd, root=True).media_type == mt.OCI_MANIFEST
    # a root that is no manifest at all is an error, that names it
    with pytest.raises(UnsupportedMediaType) as info:
        parse(image.config, root=True)
    assert str(info.value) == (f"a reference points to {image.config.digest} of media type "
                               f"{mt.OCI_CONFIG!r}, which no installed plugin reads")
    assert info.value.media_type == mt.OCI_CONFIG
    big = parts.put(os.urandom(MAX_MANIFEST_SIZE + 1), "")
    with pytest.raises(UnsupportedMediaType, match=r"of media type 'unknown', which"):
        parse(big, root=True)


# -- reachable ---------------------------------------------------------------------------------------


def test_reachable_through_an_index_once_each(parts):
    first = parts.image("first")
    shared = first.layers[0]
    second = parts.image("second", shared=shared)
    index = parts.index(first, second)
    found = list(parts.manifests.reachable([index, index]))
    assert len(found) == len(set(digests_of(found)))  # once each, duplicate roots too
    assert set(digests_of(found)) == {index.digest, *digests_of(first.blobs), *digests_of(second.blobs)}
    by_digest = {d.digest: d for d in found}
    # each as its parent describes it
    assert by_digest[shared.digest] == shared and by_digest[shared.digest].media_type == mt.OCI_LAYER_GZIP
    assert by_digest[second.config.digest].media_type == mt.OCI_CONFIG
    assert by_digest[first.manifest.digest].platform == Platform("linux", "amd64")
    assert list(parts.manifests.reachable([])) == []


def test_reachable_yields_missing_children_without_following_them(parts):
    first, second = parts.image("first"), parts.image("second")
    index = parts.index(first, second)
    parts.content.delete(second.manifest.digest)
    parts.content.delete(first.layers[0].digest)
    found = digests_of(parts.manifests.reachable([index]))
    assert sorted(found) == sorted([index.digest, *digests_of(first.blobs), second.manifest.digest])
    assert second.config.digest not in found  # behind the missing manifest
    # a missing root is yielded too
    assert digests_of(parts.manifests.reachable([second.manifest])) == [second.manifest.digest]


def test_reachable_follows_gc_ref_labels(parts):
    original = parts.image("original", media_type=mt.DOCKER_MANIFEST)
    converted = parts.image("converted")
    sbom = parts.put(b'{"spdxVersion": "SPDX-2.3"}', "application/spdx+json")
    signature = parts.put(b"signature bytes", OCTET)
    parts.metadata.set_label(converted.manifest.digest, ORIGINAL_LABEL, original.manifest.digest)
    parts.metadata.set_label(converted.layers[0].digest, GC_REF_LABEL_PREFIX + "sbom", sbom.digest)
    parts.metadata.set_label(sbom.digest, GC_REF_LABEL_PREFIX + "sig", signature.digest)
    parts.metadata.set_label(signature.digest, GC_REF_LABEL_PREFIX + "back", converted.manifest.digest)  # a cycle
    parts.metadata.set_label(converted.config.digest, GC_REF_LABEL_PREFIX + "gone", "sha256:" + "e" * 64)
    parts.metadata.set_label(converted.config.digest, "other.label", str(parts.image("not kept").manifest.digest))
    found = list(parts.manifests.reachable([converted.manifest]))
    assert len(found) == len(set(digests_of(found)))
    assert set(digests_of(found)) == {*digests_of(converted.blobs), *digests_of(original.blobs),
                                      sbom.digest, signature.digest, "sha256:" + "e" * 64}
    # a labelled blob is known by digest only; its type is found from its bytes
    labelled = {d.digest: d for d in found}[original.manifest.digest]
    assert labelled == Descriptor("", original.manifest.digest, -1)


def test_reachable_strict_or_not(parts):
    good = parts.image("good")
    broken = parts.put(b'{"schemaVersion": 2, "config": "not a descriptor"}', mt.OCI_MANIFEST)
    index = parts.put_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                            "manifests": [broken.to_json(), good.manifest.to_json()]}, mt.OCI_INDEX)
    with pytest.raises(InvalidManifest, match="no config descriptor"):
        list(parts.manifests.reachable([index]))
    found = digests_of(parts.manifests.reachable([index], strict=False))
    assert sorted(found) == sorted([index.digest, broken.digest, *digests_of(good.blobs)])
    # an unreadable root: raised when strict, else yielded and not followed
    config_root = Descriptor(OCTET, good.config.digest, good.config.size)
    with pytest.raises(UnsupportedMediaType):
        list(parts.manifests.reachable([config_root, good.manifest]))
    found = digests_of(parts.manifests.reachable([config_root, good.manifest], strict=False))
    assert sorted(found) == sorted(digests_of(good.blobs))
