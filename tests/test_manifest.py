"""contentstore.model.manifest (descriptors, image manifests, indexes, peek_json) and
contentstore.model.imageconfig (the one image-config parser)."""

import json

import pytest

from contentstore.errors import InvalidManifest, PlatformNotFound
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.limits import MAX_MANIFEST_SIZE
from contentstore.model.manifest import (Descriptor, ImageManifest, ManifestIndex, parse_image_manifest,
                                         parse_index, peek_json)
from contentstore.model.platform import Platform

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
D = "sha256:" + "d" * 64


def one_line_invalid(call, *args, **kwargs) -> str:
    with pytest.raises(InvalidManifest) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- Descriptor --------------------------------------------------------------------------------


def test_descriptor_round_trip_keeps_every_field():
    data = {
        "mediaType": mt.OCI_MANIFEST, "digest": A, "size": 1234,
        "platform": {"architecture": "arm64", "os": "linux", "variant": "v8", "os.version": "10.0.17763",
                     "os.features": ["win32k"]},
        "annotations": {"org.opencontainers.image.ref.name": "1.0", "x": "y"},
        "urls": ["https://cdn.example.com/blob", "https://mirror.example.com/blob"],
        "artifactType": "application/vnd.example.sbom+json",
    }
    descriptor = Descriptor.from_json(data)
    assert descriptor.platform == Platform("linux", "arm64", "v8")
    assert descriptor.platform.os_version == "10.0.17763" and descriptor.platform.os_features == ("win32k",)
    assert descriptor.urls == ("https://cdn.example.com/blob", "https://mirror.example.com/blob")
    assert descriptor.artifact_type == "application/vnd.example.sbom+json"
    assert descriptor.to_json() == data
    assert Descriptor.from_json(descriptor.to_json()) == descriptor
    assert isinstance(descriptor.digest, digests.Digest)


def test_descriptor_minimal_and_normalized():
    descriptor = Descriptor.from_json({"digest": A, "size": 0, "annotations": None, "urls": None})
    assert descriptor == Descriptor("", A, 0)
    assert descriptor.to_json() == {"mediaType": "", "digest": A, "size": 0}
    # the platform is normalized (containerd's rules): aarch64 is arm64/v8
    odd = Descriptor.from_json({"digest": A, "size": 1, "platform": {"os": "Linux", "architecture": "aarch64"}})
    assert odd.to_json()["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}


def test_descriptor_annotations_do_not_count_in_equality_and_are_merged():
    plain = Descriptor(mt.OCI_MANIFEST, A, 10)
    named = plain.with_annotations(**{"org.opencontainers.image.ref.name": "x"}, other="1")
    assert named == plain and plain.annotations == {}
    assert named.with_annotations(other="2").annotations == {"org.opencontainers.image.ref.name": "x", "other": "2"}


@pytest.mark.parametrize("size", [-1, "10", 1.5, True, None])
def test_descriptor_bad_size(size):
    message = one_line_invalid(Descriptor.from_json, {"digest": A, "size": size}, "OCI layer")
    assert message == "invalid OCI layer: size must be a non-negative integer"


@pytest.mark.parametrize("data, detail", [
    ({"digest": "sha256:abc", "size": 1}, "invalid OCI layer: invalid digest 'sha256:abc': sha256 needs 64"),
    ({"digest": "md5:" + "a" * 32, "size": 1}, "invalid OCI layer: invalid digest 'md5:"),
    ({"digest": A.upper().replace("SHA256", "sha256"), "size": 1}, "invalid OCI layer: invalid digest"),
    ({"digest": 5, "size": 1}, "invalid OCI layer: invalid digest 5: not a string"),
    ({"size": 1}, "invalid OCI layer: missing or malformed field 'digest'"),
    ({"digest": A}, "invalid OCI layer: missing or malformed field 'size'"),
    ("sha256:abc", "invalid OCI layer: missing or malformed field"),
    ({"digest": A, "size": 1, "platform": "linux/amd64"}, "invalid OCI layer: missing or malformed field"),
    ({"digest": A, "size": 1, "annotations": ["a", "b"]}, "invalid OCI layer: "),
    ({"digest": A, "size": 1, "urls": "https://cdn.example.com/blob"}, "invalid OCI layer: urls must be a list"),
    ({"digest": A, "size": 1, "urls": [5]}, "invalid OCI layer: urls must be a list"),
])
def test_descriptor_malformed(data, detail):
    assert one_line_invalid(Descriptor.from_json, data, "OCI layer").startswith(detail)


# -- image manifests ---------------------------------------------------------------------------------


def manifest_body(**changes) -> dict:
    body = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": A, "size": 100},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": B, "size": 200},
                       {"mediaType": mt.OCI_LAYER_ZSTD, "digest": C, "size": 300}],
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def raw(body) -> bytes:
    return json.dumps(body, indent=3).encode()


def test_parse_image_manifest():
    data = raw(manifest_body(subject={"mediaType": mt.OCI_MANIFEST, "digest": D, "size": 50}))
    manifest = parse_image_manifest(mt.OCI_MANIFEST, data, "OCI image manifest")
    assert type(manifest) is ImageManifest and manifest.media_type == mt.OCI_MANIFEST
    assert manifest.raw == data and manifest.digest == digests.of_bytes(data)  # never re-serialized
    assert manifest.config == Descriptor(mt.OCI_CONFIG, A, 100)
    assert [(layer.digest, layer.size) for layer in manifest.layers] == [(B, 200), (C, 300)]
    assert manifest.subject == Descriptor(mt.OCI_MANIFEST, D, 50)
    assert [d.digest for d in manifest.references()] == [A, B, C]  # the subject is not a child
    assert manifest.body["annotations"] == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


def test_parse_image_manifest_variants():
    # no mediaType in the body is allowed (early OCI manifests), as are no layers
    bare = parse_image_manifest(mt.OCI_MANIFEST, raw(manifest_body(mediaType=None, layers=None)), "m")
    assert bare.layers == [] and bare.subject is None and bare.references() == [bare.config]
    # a format plugin gives its own class
    class Special(ImageManifest):
        pass
    assert type(parse_image_manifest(mt.OCI_MANIFEST, raw(manifest_body()), "m", Special)) is Special


@pytest.mark.parametrize("data, message", [
    (raw(manifest_body(mediaType=mt.DOCKER_MANIFEST)),
     f"invalid OCI image manifest: body says mediaType {mt.DOCKER_MANIFEST!r}, expected {mt.OCI_MANIFEST!r}"),
    (raw(manifest_body(schemaVersion=1)), "invalid OCI image manifest: schemaVersion must be 2"),
    (raw(manifest_body(schemaVersion="2")), "invalid OCI image manifest: schemaVersion must be 2"),
    (raw(manifest_body(schemaVersion=None)), "invalid OCI image manifest: schemaVersion must be 2"),
    (raw(manifest_body(config=None)), "invalid OCI image manifest: no config descriptor"),
    (raw(manifest_body(config=[A])), "invalid OCI image manifest: no config descriptor"),
    (raw(manifest_body(layers={"digest": B})), "invalid OCI image manifest layer: expected a list"),
    (raw(manifest_body(layers=[{"digest": B, "size": -5}])),
     "invalid OCI image manifest layer: size must be a non-negative integer"),
    (raw(manifest_body(config={"digest": "sha256:1", "size": 1})),
     "invalid OCI image manifest config: invalid digest 'sha256:1'"),
    (raw(manifest_body(subject={"digest": D})), "invalid OCI image manifest subject: missing or malformed field"),
    (b"not json", "invalid OCI image manifest: not JSON ("),
    (b"\xff\xfe{}", "invalid OCI image manifest: not JSON ("),
    (b"[1, 2]", "invalid OCI image manifest: not a JSON object"),
])
def test_parse_image_manifest_refuses(data, message):
    assert one_line_invalid(parse_image_manifest, mt.OCI_MANIFEST, data, "OCI image manifest").startswith(message)


# -- indexes -------------------------------------------------------------------------------------


def entry(digest, os_name=None, arch=None, variant=None, **extra):
    data = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": 500, **extra}
    if os_name:
        data["platform"] = {"os": os_name, "architecture": arch, **({"variant": variant} if variant else {})}
    return data


def index_of(*entries, media_type=mt.OCI_INDEX, **changes) -> ManifestIndex:
    body = {"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries), **changes}
    return parse_index(media_type, raw(body), "OCI image index")


def test_parse_index():
    index = index_of(entry(A, "linux", "amd64"), entry(B, "linux", "arm64"),
                     entry(C, artifactType="application/vnd.example.sig"))
    assert type(index) is ManifestIndex and index.media_type == mt.OCI_INDEX
    assert [d.digest for d in index.references()] == [A, B, C]
    assert index.platforms() == [Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]
    assert index.manifests[2].artifact_type == "application/vnd.example.sig"
    assert index_of().manifests == [] and index_of(manifests=None).manifests == []


def test_select_exact_platform_first_listed_wins():
    index = index_of(entry(C), entry(A, "linux", "amd64"), entry(B, "linux", "arm", "v7"),
                     entry(D, "linux", "amd64"))
    assert index.select(Platform.parse("linux/amd64")).digest == A
    assert index.select(Platform.parse("linux/arm")).digest == B  # arm is arm/v7
    # the core matches exactly; compatible variants are the format plugin's refinement
    with pytest.raises(PlatformNotFound) as info:
        index.select(Platform.parse("linux/arm/v6"))
    assert str(info.value) == ("no matching manifest for linux/arm/v6 in the manifest list entries "
                               "(offered: linux/amd64, linux/arm/v7)")
    with pytest.raises(PlatformNotFound, match=r"\(offered: none\)$"):
        index_of(entry(C)).select(Platform.parse("linux/amd64"))


def test_select_asks_the_match_rank_of_the_class():
    class Nearest(ManifestIndex):
        def match_rank(self, offered, wanted):
            return None if offered.os != wanted.os else (0 if offered == wanted else 1)

    body = {"schemaVersion": 2, "manifests": [entry(A, "linux", "386"), entry(B, "linux", "amd64"),
                                              entry(C, "windows", "amd64")]}
    index = parse_index(mt.OCI_INDEX, raw(body), "index", Nearest)
    assert index.select(Platform.parse("linux/amd64")).digest == B
    assert index.select(Platform.parse("linux/riscv64")).digest == A


@pytest.mark.parametrize("changes, message", [
    ({"mediaType": mt.DOCKER_MANIFEST_LIST}, "invalid OCI image index: body says mediaType"),
    ({"schemaVersion": 3}, "invalid OCI image index: schemaVersion must be 2"),
    ({"manifests": {"a": 1}}, "invalid OCI image index entry: expected a list"),
    ({"manifests": [{"digest": A}]}, "invalid OCI image index entry: missing or malformed field 'size'"),
    ({"manifests": [{"digest": A, "size": 1, "platform": {"os": 5}}]}, "invalid OCI image index entry: "),
])
def test_parse_index_refuses(changes, message):
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [], **changes}
    assert one_line_invalid(parse_index, mt.OCI_INDEX, raw(body), "OCI image index").startswith(message)


# -- peek_json ------------------------------------------------------------------------------------


def test_peek_json():
    assert peek_json(b'{"schemaVersion": 2}') == {"schemaVersion": 2}
    for data in (b"", b"[]", b'"x"', b"not json", b"\xff\xfe", b"{", b"null"):
        assert peek_json(data) is None
    padding = b" " * (MAX_MANIFEST_SIZE - 2)
    assert peek_json(b"{" + padding + b"}") == {}  # at the limit
    assert peek_json(b"{" + padding + b" }") is None  # over it: not even parsed


# -- ImageConfig -----------------------------------------------------------------------------------


def config_bytes(**changes) -> bytes:
    body = {"architecture": "arm", "os": "linux", "variant": "v6", "os.version": "1",
            "config": {"Cmd": ["/bin/sh"]}, "rootfs": {"type": "layers", "diff_ids": [A, B]}}
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_image_config():
    data = config_bytes()
    config = ImageConfig.parse(data)
    assert config.raw == data and config.body["config"] == {"Cmd": ["/bin/sh"]}
    assert config.diff_ids == [A, B] and all(isinstance(d, digests.Digest) for d in config.diff_ids)
    assert config.require_diff_ids("image x") == [A, B]
    assert config.platform == Platform("linux", "arm", "v6") and config.platform.os_version == "1"
    assert ImageConfig.parse(config_bytes(architecture="aarch64", variant=None)).platform == \
        Platform("linux", "arm64", "v8")
    assert ImageConfig.parse(config_bytes(rootfs={"type": "layers"})).diff_ids == []


def test_image_config_without_platform_or_rootfs():
    assert ImageConfig.parse(config_bytes(architecture=None)).platform is None
    assert ImageConfig.parse(config_bytes(os="")).platform is None
    artifact = ImageConfig.parse(b"{}")
    assert artifact.diff_ids is None and artifact.platform is None
    message = one_line_invalid(artifact.require_diff_ids, "example.com/sbom:1")
    assert message == "example.com/sbom:1: the config has no rootfs.diff_ids; not an image"


@pytest.mark.parametrize("rootfs, message", [
    ({"type": "tar", "diff_ids": [A]}, "invalid rootfs in image configuration"),
    ({"diff_ids": [A]}, "invalid rootfs in image configuration"),
    ([A], "invalid rootfs in image configuration"),
    ("layers", "invalid rootfs in image configuration"),
    ({"type": "layers", "diff_ids": A}, "invalid rootfs in image configuration"),
    ({"type": "layers", "diff_ids": ["sha256:123"]}, "invalid rootfs in image configuration: invalid digest"),
    ({"type": "layers", "diff_ids": [7]}, "invalid rootfs in image configuration: invalid digest 7"),
])
def test_image_config_malformed_rootfs(rootfs, message):
    assert one_line_invalid(ImageConfig.parse, config_bytes(rootfs=rootfs)).startswith(message)


def test_image_config_not_json():
    assert one_line_invalid(ImageConfig.parse, b"\x1f\x8b gzip?").startswith("invalid image config: not JSON")
    assert one_line_invalid(ImageConfig.parse, b"[]") == "invalid image config: not a JSON object"
