"""Every parser that takes outside bytes, fed with Hypothesis: the only outcomes allowed
are a result or a :class:`ContentStoreError` (a ``ValueError`` subclass of it for bad
input), never another exception.

The seed corpus below holds real documents and the shapes earlier bugs were found with;
Hypothesis mutates around them. The number of examples per parser is
``CONTENTSTORE_FUZZ_EXAMPLES`` (default 300, so CI stays fast; run with 20000 for a long
fuzz). Each test records how many inputs it tried in ``FUZZ_COUNTS``, printed at the end of
the session by the ``fuzz_report`` fixture.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import string
import tarfile
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contentstore import Reference
from contentstore.config import load as load_config
from contentstore.errors import ContentStoreError, PluginError
from contentstore.model import mediatypes as mt
from contentstore.model.imageconfig import ImageConfig
from contentstore.model.manifest import Descriptor
from contentstore.model.platform import Platform
from contentstore.plugin import manager as pluginmanager
from contentstore.remote.auth import parse_challenges
from contentstore.remote.credentials import CredentialStore

EXAMPLES = int(os.environ.get("CONTENTSTORE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_COUNTS: Counter = Counter()

DIGEST = "sha256:" + "a" * 64


@pytest.fixture(scope="module", autouse=True)
def fuzz_report():
    yield
    total = sum(FUZZ_COUNTS.values())
    print(f"\nfuzz: {total} inputs tried: " + ", ".join(f"{k} {v}" for k, v in sorted(FUZZ_COUNTS.items())))


def outcome_is_clean(function, *args, **kwargs):
    """Call ``function``; anything but a result or a ContentStoreError fails the test."""
    try:
        return function(*args, **kwargs)
    except ContentStoreError as exc:
        # A built-in plugin failing is a bug of ours, not a clean refusal of bad input.
        assert not isinstance(exc, PluginError), f"a built-in plugin failed: {exc}"
        assert str(exc), "an error must say what went wrong"
        assert "\n" not in str(exc).strip(), f"one line, not: {exc!r}"
        return exc


# -- JSON documents shaped like manifests, indexes and configs -------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                    st.floats(allow_nan=True), st.text(max_size=30),
                    st.sampled_from([DIGEST, "sha256:xyz", mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST,
                                     mt.DOCKER_MANIFEST_LIST, mt.OCI_CONFIG, "linux", "amd64", "arm64"]))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests", "digest",
                                     "size", "platform", "os", "architecture", "variant", "annotations",
                                     "urls", "subject", "artifactType", "rootfs", "diff_ids", "type",
                                     "fsLayers", "history", "blobSum", "signatures", "name", "tag",
                                     "v1Compatibility", "os.features"]) | st.text(max_size=8),
                    children, max_size=6)), max_leaves=25)


def descriptor_json():
    media_types = st.sampled_from([mt.OCI_MANIFEST, mt.OCI_LAYER_GZIP, ""]) | st.text(max_size=5)
    return st.fixed_dictionaries({"mediaType": media_types,
                                  "digest": st.sampled_from([DIGEST, "sha512:" + "b" * 128]) | scalars,
                                  "size": st.integers(min_value=-5, max_value=2 ** 64) | scalars},
                                 optional={"platform": json_values, "annotations": json_values,
                                           "urls": json_values})


def manifest_like():
    image = st.fixed_dictionaries({"schemaVersion": st.sampled_from([2, 1, "2", None]),
                                   "mediaType": st.sampled_from([mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, None]),
                                   "config": descriptor_json() | json_values,
                                   "layers": st.lists(descriptor_json(), max_size=3) | json_values},
                                  optional={"subject": descriptor_json() | json_values})
    index = st.fixed_dictionaries({"schemaVersion": st.sampled_from([2, 1, None]),
                                   "mediaType": st.sampled_from([mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, None]),
                                   "manifests": st.lists(descriptor_json(), max_size=3) | json_values})
    schema1 = st.fixed_dictionaries({"schemaVersion": st.just(1), "name": json_values, "tag": json_values,
                                     "fsLayers": st.lists(st.fixed_dictionaries({"blobSum": st.just(DIGEST) | scalars}),
                                                          max_size=3) | json_values,
                                     "history": st.lists(st.fixed_dictionaries(
                                         {"v1Compatibility": st.text(max_size=40) | st.just('{"id": "x"}')}),
                                         max_size=3) | json_values},
                                    optional={"signatures": json_values})
    return st.one_of(image, index, schema1, json_values)


def encoded(values):
    return values.map(lambda v: json.dumps(v).encode())


raw_documents = st.one_of(encoded(manifest_like()), st.binary(max_size=300),
                          st.sampled_from([b"", b"{", b"[]", b"null", b'{"schemaVersion": 2}', b"\xff\xfe",
                                           b"[" * 100_000 + b"]" * 100_000,
                                           b'{"a":' * 50_000 + b"1" + b"}" * 50_000]))

MEDIA_TYPES = [None, mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST,
               mt.DOCKER_SCHEMA1_MANIFEST, mt.DOCKER_SCHEMA1_SIGNED, "application/x-unknown"]


@pytest.fixture(scope="module")
def formats():
    return pluginmanager.create()


@FUZZ
@given(data=raw_documents, media_type=st.sampled_from(MEDIA_TYPES))
@example(data=b'{"schemaVersion": 2, "mediaType": "%s", "config": {"digest": "%s", "size": 1}, "layers": [5]}'
         % (mt.OCI_MANIFEST.encode(), DIGEST.encode()), media_type=mt.OCI_MANIFEST)
@example(data=b'{"schemaVersion": 2, "manifests": [{"digest": "%s", "size": true}]}' % DIGEST.encode(),
         media_type=None)
def test_manifests_of_every_type(formats, data, media_type):
    FUZZ_COUNTS["manifests"] += 1
    detected = outcome_is_clean(formats.detect_media_type, data)
    assert detected is None or isinstance(detected, (str, ContentStoreError))
    manifest = outcome_is_clean(formats.parse_manifest, media_type, data)
    if not isinstance(manifest, ContentStoreError):
        for child in manifest.references():
            assert isinstance(child, Descriptor)
        if hasattr(manifest, "select"):
            outcome_is_clean(manifest.select, Platform.parse("linux/arm64"))


@FUZZ
@given(body=json_values | manifest_like())
@example(body={"os": 5, "architecture": "amd64"})
@example(body={"os": "linux", "architecture": ["amd64"]})
@example(body={"os": "linux", "architecture": "arm", "variant": 7, "os.features": 5})
def test_image_configs(body):
    FUZZ_COUNTS["image configs"] += 1
    outcome_is_clean(ImageConfig.parse, json.dumps(body).encode())


@FUZZ
@given(body=json_values)
def test_descriptors(body):
    FUZZ_COUNTS["descriptors"] += 1
    outcome_is_clean(Descriptor.from_json, body)


# -- references and platforms ------------------------------------------------------------------

reference_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=string.ascii_lowercase + string.digits + "._-/:@[]", max_size=300),
    st.builds(lambda a, b, c: f"{a}/{b}:{c}", st.text(max_size=20), st.text(max_size=20), st.text(max_size=20)),
    st.sampled_from(["alpine", "a" * 256, "docker.io/" + "a" * 250, f"x@{DIGEST}", f"x@sha256:{'A' * 64}",
                     "x@sha999:" + "a" * 64, "[::1]:5000/a", "localhost:99999999999999999999/a", "\x00", "a\nb"]))


@FUZZ
@given(text=reference_text)
def test_references(text):
    FUZZ_COUNTS["references"] += 1
    result = outcome_is_clean(Reference.parse, text)
    if isinstance(result, Reference):  # a parsed reference prints as one that parses the same
        assert Reference.parse(str(result)) == result


@FUZZ
@given(text=st.text(max_size=40) | st.sampled_from(["linux/arm64/v9.0", "linux/armel", "windows/amd64/v3", "/",
                                                   "a//b"]))
def test_platforms(text):
    FUZZ_COUNTS["platforms"] += 1
    outcome_is_clean(Platform.parse, text)


# -- configuration and credentials files --------------------------------------------------------

toml_text = st.one_of(
    st.text(max_size=200),
    st.builds(lambda host, key, value: f'[registry."{host}"]\n{key} = {value}\n',
              st.text(max_size=15), st.sampled_from(["mirrors", "insecure", "mirror_fallback", "x"]),
              st.sampled_from(['["https://m.example"]', "true", '"yes"', "1", "[1, 2]", '["ftp://x"]', "{}"])),
    st.builds(lambda key, value: f"{key} = {value}\n",
              st.sampled_from(["max_concurrent_downloads", "max_concurrent_uploads", "upload_chunk_size",
                               "registry", "other"]),
              st.sampled_from(["0", "-1", "3", "true", '"3"', "1e9", "[]", "{}"])))


@FUZZ
@given(text=toml_text)
def test_config_files(tmp_path_factory, text):
    FUZZ_COUNTS["config.toml"] += 1
    path = tmp_path_factory.mktemp("config") / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome_is_clean(load_config, path)


docker_configs = st.one_of(
    json_values,
    st.fixed_dictionaries({"auths": st.dictionaries(st.sampled_from(["127.0.0.1:5000", "https://index.docker.io/v1/"])
                                                    | st.text(max_size=10),
                                                    st.fixed_dictionaries({}, optional={
                                                        "auth": st.text(max_size=20) | scalars,
                                                        "identitytoken": scalars,
                                                        "username": scalars, "password": scalars}) | scalars,
                                                    max_size=3) | scalars},
                          optional={"credHelpers": json_values, "credsStore": scalars}))


@FUZZ
@given(body=docker_configs)
def test_docker_credentials_files(tmp_path_factory, body):
    FUZZ_COUNTS["config.json"] += 1
    path = tmp_path_factory.mktemp("docker") / "config.json"
    path.write_text(json.dumps(body))
    store = CredentialStore(path)
    outcome_is_clean(store.get, "127.0.0.1:5000")
    outcome_is_clean(store.get, "docker.io")


# -- WWW-Authenticate headers --------------------------------------------------------------------

challenge_text = st.one_of(
    st.text(max_size=120),
    st.builds(lambda scheme, params: scheme + " " + ",".join(params),
              st.sampled_from(["Bearer", "Basic", "bearer", "Digest", ""]),
              st.lists(st.builds(lambda k, v: f'{k}="{v}"' if v is not None else k,
                                 st.sampled_from(["realm", "service", "scope", "error", "x"]),
                                 st.none() | st.text(max_size=15)), max_size=4)))


@FUZZ
@given(header=challenge_text)
def test_www_authenticate_headers(header):
    FUZZ_COUNTS["WWW-Authenticate"] += 1
    for challenge in outcome_is_clean(parse_challenges, header):
        assert challenge.scheme == challenge.scheme.lower()


# -- tar headers (layers) and archive manifests go through the Store API --------------------------

def tar_with(entries) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(extra)
                tar.addfile(info, io.BytesIO(extra))
                continue
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = extra.decode(errors="replace")
            tar.addfile(info)
    return out.getvalue()


tar_entries = st.lists(st.tuples(
    st.text(alphabet=string.ascii_lowercase + "./_-", min_size=1, max_size=20) | st.sampled_from(
        [".wh.", ".wh..wh..opq", "a/.wh.b", "./", "..", "/abs"]),
    st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]),
    st.binary(max_size=20) | st.sampled_from([b"/etc", b"../../..", b"a", b"."])), max_size=6)


@FUZZ
@given(entries=tar_entries, corrupt=st.none() | st.tuples(st.integers(0, 1023), st.integers(0, 255)))
def test_layers_through_unpack(tmp_path_factory, entries, corrupt):
    FUZZ_COUNTS["layer tars"] += 1
    from contentstore import Store
    from contentstore.testing import image_from_layers

    raw = bytearray(tar_with(entries))
    if corrupt:
        offset, value = corrupt
        raw[offset % len(raw)] = value
    work = tmp_path_factory.mktemp("unpack")
    store = Store(work / "store")

    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    image_from_layers(store, "example.com/fuzz:1", [(bytes(raw), diff_id, mt.OCI_LAYER)])
    outcome_is_clean(store.unpack, "example.com/fuzz:1", work / "rootfs", rootless=True)
    # Nothing was written outside the target (the work directory holds only these).
    assert {p.name for p in work.iterdir()} <= {"store", "rootfs"}


archive_members = st.lists(st.tuples(
    st.sampled_from(["manifest.json", "index.json", "oci-layout", "repositories", "blobs/sha256/" + "a" * 64,
                     "layer.tar", "config.json"]),
    encoded(json_values) | st.binary(max_size=40)), max_size=5)


@FUZZ
@given(members=archive_members)
def test_archives_through_import(tmp_path_factory, members):
    FUZZ_COUNTS["archives"] += 1
    from contentstore import Store

    work = tmp_path_factory.mktemp("import")
    path = work / "archive.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = Store(work / "store")
    outcome_is_clean(store.import_archive, path)
