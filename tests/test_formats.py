"""The built-in format plugins: parsing, detection, platform matching, schema1 digests."""

import base64
import json

import pytest

from contentstore.errors import InvalidManifest, PlatformNotFound, UnsupportedMediaType
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import ImageManifest, ManifestIndex
from contentstore.model.platform import Platform

D = ["sha256:" + c * 64 for c in "0123456789abcdef"]


def image_manifest(media_type=mt.OCI_MANIFEST, config_type=mt.OCI_CONFIG, with_type=True):
    body = {"schemaVersion": 2,
            "config": {"mediaType": config_type, "digest": D[0], "size": 10},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D[1], "size": 20},
                       {"mediaType": mt.OCI_LAYER_ZSTD, "digest": D[2], "size": 30}]}
    if with_type:
        body["mediaType"] = media_type
    return json.dumps(body).encode()


def index(platforms, media_type=mt.OCI_INDEX):
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": D[i], "size": 1,
         "platform": dict(zip(("os", "architecture", "variant"), p))}
        for i, p in enumerate(platforms)]}).encode()


def test_oci_and_schema2_parse(plugins):
    for media_type, config_type in ((mt.OCI_MANIFEST, mt.OCI_CONFIG), (mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG)):
        raw = image_manifest(media_type, config_type)
        manifest = plugins.parse_manifest(media_type, raw)
        assert isinstance(manifest, ImageManifest) and manifest.raw == raw
        assert manifest.digest == digests.of_bytes(raw)
        assert manifest.config.digest == D[0]
        assert [layer.digest for layer in manifest.layers] == D[1:3]
        assert [d.digest for d in manifest.references()] == D[0:3]
        assert plugins.detect_media_type(raw) == media_type


def test_detection_without_media_type_field(plugins):
    assert plugins.detect_media_type(image_manifest(with_type=False)) == mt.OCI_MANIFEST
    body = json.loads(index([("linux", "amd64")]))
    del body["mediaType"]
    assert plugins.detect_media_type(json.dumps(body).encode()) == mt.OCI_INDEX
    assert plugins.detect_media_type(b"not json") is None


def test_body_media_type_must_agree(plugins):
    with pytest.raises(InvalidManifest):
        plugins.parse_manifest(mt.OCI_MANIFEST, image_manifest(mt.DOCKER_MANIFEST))


def test_malformed_manifests_give_one_line_errors(plugins):
    for raw in (b"{", b"[]", b'{"schemaVersion": 2, "mediaType": "%s"}' % mt.OCI_MANIFEST.encode(),
                json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:../x", "size": 1}}).encode()):
        with pytest.raises(InvalidManifest) as info:
            plugins.parse_manifest(mt.OCI_MANIFEST, raw)
        assert "\n" not in str(info.value)
    with pytest.raises(UnsupportedMediaType):
        plugins.parse_manifest("application/x-unknown", b"{}")


@pytest.mark.parametrize("offered, wanted, chosen", [
    ([("linux", "amd64"), ("linux", "arm64", "v8"), ("linux", "arm", "v7")], "linux/arm64", 1),
    ([("linux", "amd64"), ("linux", "arm64"), ("linux", "arm", "v7")], "linux/arm64/v8", 1),
    ([("linux", "arm", "v5"), ("linux", "arm", "v6")], "linux/arm/v7", 1),
    ([("linux", "arm", "v5"), ("linux", "arm", "v7")], "linux/arm/v7", 1),
    ([("linux", "arm", "v5")], "linux/arm/v7", 0),
    ([("linux", "arm", "v7"), ("linux", "arm64")], "linux/aarch64", 1),
    ([("linux", "386"), ("linux", "amd64")], "linux/x86_64", 1),
    ([("linux", "386")], "linux/amd64", 0),
    ([("linux", "arm", "v7")], "linux/armhf", 0),
    # an arm64/v9 host takes arm64/v8 when no v9 image is offered, v9 when it is
    ([("linux", "amd64"), ("linux", "arm64", "v8")], "linux/arm64/v9", 1),
    ([("linux", "arm64", "v8"), ("linux", "arm64", "v9")], "linux/arm64/v9", 1),
    ([("linux", "arm64", "v8"), ("linux", "arm64", "v8.2")], "linux/arm64/v9", 1),
    ([("linux", "arm", "v7"), ("linux", "arm64", "v8.0")], "linux/arm64/v9.0", 1),
    ([("linux", "arm", "v7")], "linux/arm64/v9", 0),
    # armel is arm/v6: an arm/v7 image does not run there
    ([("linux", "arm", "v7"), ("linux", "arm", "v6")], "linux/armel", 1),
])
def test_platform_selection(plugins, offered, wanted, chosen):
    manifest = plugins.parse_manifest(mt.DOCKER_MANIFEST_LIST, index(offered, mt.DOCKER_MANIFEST_LIST))
    assert isinstance(manifest, ManifestIndex)
    assert manifest.select(Platform.parse(wanted)).digest == D[chosen]


# containerd/platforms compare_test.go TestOnly, the arm and arm64 cases: what each
# wanted platform accepts and refuses.
ONLY = {
    "linux/arm64/v9.6": (["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8",
                          "linux/arm64", "linux/arm64/v8"]
                         + [f"linux/arm64/v8.{n}" for n in range(1, 10)]
                         + ["linux/arm64/v9", "linux/arm64/v9.0"] + [f"linux/arm64/v9.{n}" for n in range(1, 7)],
                         ["linux/amd64", "linux/arm/v4", "windows/arm", "linux/arm64/v8.10", "linux/arm64/v9.7"]),
    "linux/arm64/v9": (["linux/arm", "linux/arm/v5", "linux/arm/v8", "linux/arm64", "linux/arm64/v8",
                        "linux/arm64/v8.1", "linux/arm64/v8.5", "linux/arm64/v9", "linux/arm64/v9.0"],
                       ["linux/amd64", "linux/arm/v4", "windows/arm", "linux/arm64/v8.6", "linux/arm64/v9.1"]),
    "linux/arm64/v8.1": (["linux/arm", "linux/arm/v8", "linux/arm64", "linux/arm64/v8", "linux/arm64/v8.1"],
                         ["linux/arm/v9", "linux/arm64/v9", "linux/arm64/v8.2"]),
    "linux/arm64": (["linux/arm", "linux/arm/v5", "linux/arm/v8", "linux/arm64", "linux/arm64/v8"],
                    ["linux/amd64", "linux/arm/v4", "linux/arm/v9", "linux/arm64/v9", "linux/arm64/v8.1"]),
    "linux/arm/v8": (["linux/arm", "linux/arm/v5", "linux/arm/v6", "linux/arm/v7", "linux/arm/v8"],
                     ["linux/arm/v4", "linux/arm64"]),
    "linux/arm/v6": (["linux/arm/v5", "linux/arm/v6"], ["linux/arm", "linux/arm/v7", "linux/arm64"]),
    "linux/armel": (["linux/arm/v5", "linux/arm/v6"], ["linux/arm", "linux/arm/v7"]),
    "linux/amd64/v2": (["linux/amd64", "linux/amd64/v1", "linux/amd64/v2", "linux/386"],
                       ["linux/amd64/v3", "linux/arm64"]),
}


@pytest.mark.parametrize("wanted", sorted(ONLY))
def test_platform_matching_is_containerds(plugins, wanted):
    accepted, refused = ONLY[wanted]
    manifest = plugins.parse_manifest(mt.OCI_INDEX, index([("linux", "amd64")]))
    for text in accepted:
        assert manifest.match_rank(Platform.parse(text), Platform.parse(wanted)) is not None, text
    for text in refused:
        assert manifest.match_rank(Platform.parse(text), Platform.parse(wanted)) is None, text


def test_host_platform_of_32_bit_arm_machines():
    from contentstore.model.platform import _machine_platform
    assert Platform.normalized("linux", *_machine_platform("armv6l")) == Platform.parse("linux/arm/v6")
    assert Platform.normalized("linux", *_machine_platform("armv5tel")) == Platform.parse("linux/arm/v5")
    assert Platform.normalized("linux", *_machine_platform("armv7l")) == Platform.parse("linux/arm/v7")
    assert Platform.normalized("linux", *_machine_platform("aarch64")) == Platform.parse("linux/arm64/v8")


def test_no_matching_platform_lists_what_is_offered(plugins):
    manifest = plugins.parse_manifest(mt.OCI_INDEX, index([("linux", "amd64"), ("linux", "arm", "v7")]))
    with pytest.raises(PlatformNotFound) as info:
        manifest.select(Platform.parse("linux/arm/v6"))
    assert "linux/amd64" in str(info.value) and "linux/arm/v7" in str(info.value)
    with pytest.raises(PlatformNotFound):
        manifest.select(Platform.parse("windows/amd64"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signed_schema1():
    payload = json.dumps({
        "schemaVersion": 1, "name": "team/app", "tag": "1.0", "architecture": "amd64",
        "fsLayers": [{"blobSum": D[3]}, {"blobSum": D[4]}],
        "history": [{"v1Compatibility": json.dumps({"id": "b" * 64, "parent": "a" * 64})},
                    {"v1Compatibility": json.dumps({"id": "a" * 64})}],
    }, indent=3).encode()
    body, tail = payload[:-2], payload[-2:]
    protected = _b64(json.dumps({"formatLength": len(body), "formatTail": _b64(tail)}).encode())
    signatures = b',\n   "signatures": [{"header": {"alg": "ES256"}, "signature": "x", "protected": "%s"}]' % protected.encode()
    return body + signatures + tail, payload


def test_schema1_digest_is_the_canonical_payloads(plugins):
    raw, payload = signed_schema1()
    assert plugins.detect_media_type(raw) == mt.DOCKER_SCHEMA1_SIGNED
    manifest = plugins.parse_manifest(mt.DOCKER_SCHEMA1_SIGNED, raw)
    assert manifest.digest == digests.of_bytes(payload) != digests.of_bytes(raw)
    assert manifest.config is None
    assert [layer.digest for layer in manifest.layers] == [D[4], D[3]]  # oldest first


def test_platform_parsing_and_normalization():
    assert Platform.parse("linux/aarch64") == Platform.parse("linux/arm64/v8")
    assert str(Platform.parse("linux/arm64")) == "linux/arm64/v8"
    assert str(Platform.parse("Linux/x86_64")) == "linux/amd64"
    assert str(Platform.parse("linux/armhf")) == "linux/arm/v7"
    assert str(Platform.parse("linux/arm")) == "linux/arm/v7"
    # containerd's normalizeArch: the alias fixes the variant, v8.0/v9.0 are v8/v9
    assert str(Platform.parse("linux/armel")) == "linux/arm/v6"
    assert str(Platform.parse("linux/armel/v7")) == "linux/arm/v6"
    assert str(Platform.parse("linux/armhf/v6")) == "linux/arm/v7"
    assert str(Platform.parse("linux/i386/v2")) == "linux/386"
    assert Platform.parse("linux/arm64/v8.0") == Platform.parse("linux/arm64")
    assert Platform.parse("linux/arm64/v9.0") == Platform.parse("linux/arm64/9") == Platform.parse("linux/arm64/v9")
    assert str(Platform.parse("linux/arm64/v8.2")) == "linux/arm64/v8.2"
    assert Platform.from_json({"os": "linux", "architecture": "arm64", "variant": "v8.0"}) == Platform.parse("linux/arm64")
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d", ""):
        with pytest.raises(ValueError):
            Platform.parse(bad)


def test_terminal_progress_redraws_layer_lines():
    import io

    from contentstore.progress import PlainOutput, ProgressEvent, TerminalOutput

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    show = TerminalOutput(out)
    show(ProgressEvent(None, "1.0: Pulling from team/app"))
    show(ProgressEvent("aaaaaaaaaaaa", "Pulling fs layer"))
    show(ProgressEvent("bbbbbbbbbbbb", "Pulling fs layer"))
    show(ProgressEvent("aaaaaaaaaaaa", "Downloading", 500_000, 1_000_000))
    text = out.getvalue()
    assert "aaaaaaaaaaaa: Downloading [=========================>" in text
    assert "500kB/1MB" in text and "\x1b[2A" in text  # moved up two lines to redraw the first

    plain = io.StringIO()
    show = PlainOutput(plain)
    for current in (1, 2, 3):
        show(ProgressEvent("aaaaaaaaaaaa", "Downloading", current, 3))
    show(ProgressEvent("aaaaaaaaaaaa", "Download complete"))
    assert plain.getvalue() == "aaaaaaaaaaaa: Downloading\naaaaaaaaaaaa: Download complete\n"
