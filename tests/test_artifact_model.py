"""contentstore.model.artifact: OCI 1.1 artifact manifests, titles, subjects, the
referrers tag schema and referrers lists, as pure data (image-spec and distribution-spec 1.1)."""

import json

import pytest

from contentstore.errors import InvalidArtifact, InvalidManifest
from contentstore.model import artifact
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import Descriptor, parse_image_manifest, parse_index

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
SBOM = "application/vnd.example.sbom.v1"


def manifest(**fields):
    body = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": artifact.EMPTY_DESCRIPTOR.digest, "size": 2},
            "layers": [], **fields}
    return parse_image_manifest(mt.OCI_MANIFEST, json.dumps(body).encode(), "OCI image manifest")


def test_referrers_tag_follows_the_spec_table():
    # distribution-spec 1.1, "Referrers Tag Schema": algorithm cut to 32, encoded to 64
    assert artifact.referrers_tag(A) == "sha256-" + "a" * 64
    assert artifact.referrers_tag("sha512:" + "a" * 128) == "sha512-" + "a" * 64


def test_artifact_manifest_is_what_the_spec_asks_for():
    layer = artifact.file_layer("sbom.json", B, 10, "application/spdx+json")
    subject = Descriptor(mt.OCI_MANIFEST, A, 123, annotations={"dropped": "yes"})
    raw = artifact.artifact_manifest([layer], SBOM, subject, {"k": "v"})
    body = json.loads(raw)
    assert body["artifactType"] == SBOM
    assert body["config"] == {"mediaType": mt.OCI_EMPTY, "digest": digests.of_bytes(b"{}"), "size": 2,
                              "data": "e30="}
    assert body["layers"] == [{"mediaType": "application/spdx+json", "digest": B, "size": 10,
                               "annotations": {artifact.TITLE_ANNOTATION: "sbom.json"}}]
    assert body["subject"] == {"mediaType": mt.OCI_MANIFEST, "digest": A, "size": 123}
    assert body["annotations"] == {"k": "v"}
    # no files: the empty descriptor is the one layer (image-spec: layers SHOULD have one)
    empty = json.loads(artifact.artifact_manifest([]))
    assert empty["artifactType"] == artifact.DEFAULT_ARTIFACT_TYPE
    assert [layer["digest"] for layer in empty["layers"]] == [artifact.EMPTY_DESCRIPTOR.digest]


def test_artifact_type_rules_for_referrers_and_for_listings():
    sbom = manifest(artifactType=SBOM)
    assert artifact.artifact_type_of(sbom) == artifact.artifact_kind(sbom) == SBOM
    # distribution-spec: no artifactType -> the config's media type, the empty one too
    bare = manifest()
    assert artifact.artifact_type_of(bare) == mt.OCI_EMPTY
    assert artifact.artifact_kind(bare) == mt.OCI_EMPTY
    helm = manifest(config={"mediaType": mt.HELM_CONFIG, "digest": A, "size": 1})
    assert artifact.artifact_type_of(helm) == artifact.artifact_kind(helm) == mt.HELM_CONFIG
    image = manifest(config={"mediaType": mt.OCI_CONFIG, "digest": A, "size": 1})
    assert artifact.artifact_type_of(image) == mt.OCI_CONFIG   # what a referrers list says
    assert artifact.artifact_kind(image) is None                 # but it is an image
    index = parse_index(mt.OCI_INDEX, json.dumps({"schemaVersion": 2, "manifests": []}).encode(), "index")
    assert artifact.artifact_type_of(index) is None and artifact.artifact_kind(index) is None


def test_subject_of_manifests_and_indexes():
    assert artifact.subject_of(manifest()) is None
    with_subject = manifest(subject={"mediaType": mt.OCI_MANIFEST, "digest": A, "size": 5})
    assert artifact.subject_of(with_subject) == Descriptor(mt.OCI_MANIFEST, A, 5)
    index = parse_index(mt.OCI_INDEX, json.dumps({"schemaVersion": 2, "manifests": [], "subject": {
        "mediaType": mt.OCI_INDEX, "digest": B, "size": 7}}).encode(), "index")
    assert artifact.subject_of(index).digest == B
    broken = parse_index(mt.OCI_INDEX, json.dumps({"schemaVersion": 2, "manifests": [],
                                                   "subject": "sha256:x"}).encode(), "index")
    with pytest.raises(InvalidManifest):
        artifact.subject_of(broken)


def test_referrer_descriptor_carries_type_and_annotations():
    sbom = manifest(artifactType=SBOM, annotations={"org.example": "1"})
    listed = artifact.referrer_descriptor(Descriptor(mt.OCI_MANIFEST, B, 99), sbom)
    assert listed.to_json() == {"mediaType": mt.OCI_MANIFEST, "digest": B, "size": 99,
                                "annotations": {"org.example": "1"}, "artifactType": SBOM}


@pytest.mark.parametrize("title", ["..", ".", "", "../x", "a/b", "/etc/passwd", "a\\b", "x\x00y"])
def test_unsafe_titles_are_refused(title):
    with pytest.raises(InvalidArtifact) as info:
        artifact.safe_title(title)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("title", ["sbom.json", "a..b", ".hidden", "with space", "ünï"])
def test_plain_file_names_are_titles(title):
    assert artifact.safe_title(title) == title


def test_parse_referrers_accepts_indexes_only():
    index = artifact.referrers_index([Descriptor(mt.OCI_MANIFEST, A, 1, artifact_type=SBOM)])
    [listed] = artifact.parse_referrers(index, "x")
    assert listed.digest == A and listed.artifact_type == SBOM
    assert artifact.parse_referrers(json.dumps({"schemaVersion": 2, "manifests": []}).encode(), "x") == []
    bad = [b"not json", b"[]", json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                                           "config": {}, "layers": []}).encode(),
           json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": {"a": 1}}).encode(),
           json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [42]}).encode(),
           json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                       "manifests": [{"digest": "sha256:12", "size": 1}]}).encode(),
           b"{" * 100_000]
    for raw in bad:
        with pytest.raises(InvalidArtifact) as info:
            artifact.parse_referrers(raw, "the referrers tag r:sha256-aa")
        assert "the referrers tag r:sha256-aa" in str(info.value) and "\n" not in str(info.value)


def test_filters_and_merges():
    sbom = Descriptor(mt.OCI_MANIFEST, A, 1, artifact_type=SBOM)
    sig = Descriptor(mt.OCI_MANIFEST, B, 1, artifact_type="application/vnd.example.sig")
    assert artifact.of_type([sbom, sig], SBOM) == [sbom]
    assert artifact.of_type([sbom, sig], None) == [sbom, sig]
    assert artifact.with_referrer([sbom], sig) == [sbom, sig]
    assert artifact.with_referrer([sbom, sig], sig) is None  # no duplicates


def test_file_spec_and_media_types():
    assert artifact.file_spec("sbom.json:application/spdx+json") == ("sbom.json", "application/spdx+json")
    assert artifact.file_spec("sbom.json") == ("sbom.json", None)
    assert artifact.file_spec("dir/with:colon.txt") == ("dir/with:colon.txt", None)
    assert artifact.file_spec("a:b:text/plain") == ("a:b", "text/plain")
    assert artifact.check_media_type(SBOM) == SBOM
    for bad in ("sbom", "", "a/b/c", "text/ plain"):
        with pytest.raises(InvalidArtifact):
            artifact.check_media_type(bad)
