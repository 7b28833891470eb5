"""The hooks of issue 16 in the core, in-process against a real registry: the operation a
policy is told, the veto before a reference is written (pull, copy, import), the pulled,
pushed and gc events, and layers that are not tars."""

import json

import pytest

from contentstore import Store
from contentstore.config import Config, RegistryConfig
from contentstore.errors import ArchiveError, VerificationError, UnpackError
from contentstore.model import mediatypes as mt
from contentstore.plugin import NOT_A_TAR, hookimpl
from contentstore.plugin import manager as pluginmanager
from contentstore.remote import login
from contentstore.testing import ProgressRecorder, build_image, push_test_image


class Refused(VerificationError):
    """What the test policy raises: a ContentStoreError subclass of its own."""


class Recorder:
    """A policy and event plugin that writes down everything it is told."""

    def __init__(self, refuse=()):
        self.calls = []
        self.refuse = set(refuse)

    @hookimpl
    def contentstore_modify_endpoints(self, reference, endpoints, operation):
        self.calls.append(("endpoints", operation, str(reference)))

    @hookimpl
    def contentstore_continue_on_error(self, endpoint, reference, operation):
        self.calls.append(("continue", operation, str(reference), endpoint.url))

    @hookimpl
    def contentstore_verify_image(self, reference, descriptor, store, operation):
        self.calls.append(("verify", operation, str(reference), descriptor.digest))
        assert store.exists(descriptor.digest)  # every blob is in before the veto
        if reference is not None and reference.repository in self.refuse:
            raise Refused(f"{reference}: refused by the test policy")

    @hookimpl
    def contentstore_image_pulled(self, reference, descriptor, store):
        self.calls.append(("pulled", str(reference), descriptor.digest))

    @hookimpl
    def contentstore_image_pushed(self, reference, descriptor):
        self.calls.append(("pushed", str(reference), descriptor.digest))

    @hookimpl
    def contentstore_gc_finished(self, report):
        self.calls.append(("gc", report.dry_run, len(report.removed)))

    def of(self, kind):
        return [call[1:] for call in self.calls if call[0] == kind]


def store_with(tmp_path, plugin, config=None, name="store"):
    plugins = pluginmanager.create(extra_plugins=[("recorder", plugin)])
    return Store(tmp_path / name, plugins=plugins, config=config or Config())


pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def test_pull_push_copy_and_login_tell_the_policy_their_operation(registry, tmp_path):
    ref = push_test_image(registry, "hooks/ops:1", {"ops.txt": "operations\n"})
    recorder = Recorder()
    store = store_with(tmp_path, recorder)
    image = store.pull(ref)
    store.push(ref, f"{registry.host}/hooks/pushed:1")
    store.copy(ref, f"{registry.host}/hooks/copied:1")
    login.login(registry.host, "someone", "secret", store.config, store.plugins)
    assert recorder.of("endpoints") == [
        ("pull", ref), ("push", f"{registry.host}/hooks/pushed:1"),
        ("copy", ref), ("copy", f"{registry.host}/hooks/copied:1"),
        ("login", f"{registry.host}/login-check")]
    assert recorder.of("verify") == [("pull", ref, image.digest), ("copy", ref, image.digest)]
    assert recorder.of("pulled") == [(ref, image.digest), (ref, image.digest)]
    assert recorder.of("pushed") == [(f"{registry.host}/hooks/pushed:1", image.digest),
                                     (f"{registry.host}/hooks/copied:1", image.digest)]


def test_continue_on_error_is_told_the_reference_and_operation(registry, registry_factory, tmp_path):
    ref = push_test_image(registry, "hooks/onlyupstream:1")
    mirror = registry_factory()  # empty: not found there, so the pull moves on
    recorder = Recorder()
    config = Config(registries={registry.host: RegistryConfig(mirrors=(mirror.url,))})
    store = store_with(tmp_path, recorder, config)
    store.pull(ref)
    assert recorder.of("continue") == [("pull", ref, mirror.url)]


def test_a_veto_leaves_no_reference_and_no_other_endpoint_is_asked(registry, tmp_path):
    """Refused on a mirror: not tried again on the registry itself (the same digest)."""
    ref = push_test_image(registry, "hooks/unsigned:1", {"unsigned.txt": "nobody signed me\n"})
    recorder = Recorder(refuse={"hooks/unsigned"})
    # the registry serves as its own mirror: the first endpoint tried is a mirror
    config = Config(registries={registry.host: RegistryConfig(mirrors=(registry.url,))})
    store = store_with(tmp_path, recorder, config)
    events = ProgressRecorder()
    with pytest.raises(Refused, match="refused by the test policy"):
        store.pull(ref, progress=events)
    assert len(recorder.of("verify")) == 1
    assert not any("trying" in line for line in events)
    assert store.references() == {}
    assert recorder.of("pulled") == []
    manifest = store.manifest(recorder.of("verify")[0][2])  # the blobs stay, for gc
    assert all(store.exists(d.digest) for d in manifest.references())
    report = store.gc()
    assert report.removed and recorder.of("gc") == [(False, len(report.removed))]


def test_a_veto_also_stops_a_pull_of_what_the_store_holds(registry, tmp_path):
    ref = push_test_image(registry, "hooks/later:1")
    recorder = Recorder()
    store = store_with(tmp_path, recorder)
    store.pull(ref)
    recorder.refuse.add("hooks/later")  # a policy that arrived after the first pull
    store.untag(ref)
    with pytest.raises(Refused):
        store.pull(ref)
    assert store.references() == {}
    assert recorder.of("verify")[-1][0] == "pull"


def test_import_is_vetoed_before_any_name_is_written(tmp_path):
    source = Store(tmp_path / "source")
    build_image(source, "example.com/team/keep:1", {"keep.txt": "keep\n"})
    build_image(source, "example.com/team/refused:1", {"refused.txt": "refused\n"})
    source.export("example.com/team/keep:1", tmp_path / "keep.tar", format="docker")
    source.export("example.com/team/refused:1", tmp_path / "refused.tar")
    recorder = Recorder(refuse={"team/refused"})
    store = store_with(tmp_path, recorder)
    [loaded] = store.import_archive(tmp_path / "keep.tar")
    assert loaded.reference == "example.com/team/keep:1"
    [(operation, name, digest)] = recorder.of("verify")
    assert (operation, name) == ("import", "example.com/team/keep:1") and store.exists(digest)
    with pytest.raises(Refused) as info:
        store.import_archive(tmp_path / "refused.tar")
    assert str(info.value) == f"{tmp_path / 'refused.tar'}: example.com/team/refused:1: refused by the test policy"
    assert set(store.references()) == {"example.com/team/keep:1"}


WASM_LAYER = "application/vnd.wasm.content.layer.v1+wasm"


def wasm_image(store, module: bytes = b"\0asm\1\0\0\0") -> str:
    """An image whose one layer is a .wasm module (a file, no tar)."""
    layer = store.put(module)
    config = json.dumps({"architecture": "wasm", "os": "wasip1",
                         "rootfs": {"type": "layers", "diff_ids": [layer.digest]}}).encode()
    config_info = store.put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_info.digest,
                                      "size": config_info.size},
                           "layers": [{"mediaType": WASM_LAYER, "digest": layer.digest,
                                       "size": layer.size}]}).encode()
    store.tag(store.put(manifest).digest, "example.com/wasm/hello:1")
    return layer.digest


class WasmLayers:
    @hookimpl
    def contentstore_layer_compression(self, media_type):
        return NOT_A_TAR if media_type == WASM_LAYER else None


def test_a_layer_that_is_not_a_tar_is_refused_by_unpack_by_name(tmp_path):
    store = store_with(tmp_path, WasmLayers())
    digest = wasm_image(store)
    with pytest.raises(UnpackError) as info:
        store.unpack("example.com/wasm/hello:1", tmp_path / "rootfs")
    assert str(info.value) == (f"example.com/wasm/hello:1: layer {digest} ({WASM_LAYER}) is a file, not a tar: "
                               f"there is no file system to unpack (`contentstore blob get {digest}` writes "
                               f"the file)")
    assert not (tmp_path / "rootfs").exists()
    with pytest.raises(ArchiveError, match=f"layer {digest} .* is a file, not a tar"):
        store.export("example.com/wasm/hello:1", tmp_path / "docker.tar", format="docker")
    store.export("example.com/wasm/hello:1", tmp_path / "oci.tar")  # an OCI archive keeps it as it is
    fresh = store_with(tmp_path, WasmLayers(), name="fresh")
    [loaded] = fresh.import_archive(tmp_path / "oci.tar")
    assert fresh.exists(digest) and loaded.reference == "example.com/wasm/hello:1"


def test_a_wasm_layer_is_pulled_and_its_diffid_checked_as_a_file(registry, tmp_path):
    source = Store(tmp_path / "source")
    digest = wasm_image(source)
    from contentstore.testing import push
    ref = push(f"oci:{source.root}:example.com/wasm/hello:1", registry, "hooks/wasm:1")
    store = store_with(tmp_path, WasmLayers())
    image = store.pull(ref, verify_diffids=True)
    assert [layer.digest for layer in image.layers] == [digest]
    assert store.verify().ok


def test_descriptor_shown_to_the_plugins_is_the_registrys(registry, tmp_path):
    """A Docker-typed image: the reference names the OCI form; the plugins see what the
    registry serves (the digest a signature signs)."""
    ref = push_test_image(registry, "hooks/docker:1", {"d.txt": "docker\n"}, "--format", "v2s2")
    recorder = Recorder()
    store = store_with(tmp_path, recorder)
    image = store.pull(ref)
    [(_, _, digest)] = recorder.of("verify")
    assert digest == image.digest != store.resolve(ref).digest
    assert store.manifest(digest).media_type == mt.DOCKER_MANIFEST
    assert recorder.of("pulled") == [(ref, digest)]
