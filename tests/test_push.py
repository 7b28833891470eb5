"""Push and copy, round trips against a real registry."""

import json
import os
import subprocess
import sys

import pytest
from servers import PASSWORD, USER, oci_ref, write_docker_config

from contentstore import Store
from contentstore.errors import Unauthorized
from contentstore.model import mediatypes as mt
from contentstore.testing import ProgressRecorder, build_image, build_index, push

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def remote(ref: str, *args: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *args, f"docker://{ref}"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def raw_remote(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          check=True, capture_output=True).stdout


def publish(source, registry, name, layers):
    local = "src/" + name.replace(":", "-").replace("/", "-")
    build_image(source, local, layers=layers)
    return push(oci_ref(source, f"docker.io/{local}:latest"), registry, name)


def store_with(tmp_path, text=""):
    config = tmp_path / "config.toml"
    config.write_text(text)
    return Store(tmp_path / "store", config=config)


def test_push_round_trip_mount_and_already_exists(registry, proxy_factory, source, tmp_path):
    publish(source, registry, "team/origin:1", [{"a.txt": "a\n"}, {"b.txt": "b\n"}])
    proxy = proxy_factory(registry.url)
    store = store_with(tmp_path)
    image = store.pull(f"{proxy.host}/team/origin:1")

    events = ProgressRecorder()
    result = store.push(f"{proxy.host}/team/origin:1", f"{proxy.host}/team/copy:1", progress=events)
    assert remote(f"{registry.host}/team/copy:1")["Digest"] == image.digest == result.digest
    assert events[0] == f"The push refers to repository [{proxy.host}/team/copy]"
    assert events[-1] == f"1: digest: {image.digest} size: {store.size(image.digest)}"
    # layers came from team/origin on the same registry: mounted, not uploaded
    mounts = [e for e in proxy.requests("/v2/team/copy/blobs/uploads/", "POST") if "mount=" in e["path"]]
    assert mounts and all(e["status"] == 201 for e in mounts)
    assert not proxy.requests("/v2/team/copy/blobs/uploads/", "PUT")
    assert sum(1 for line in events if ": Mounted from team/origin" in line) == 2
    assert result.mounted == 3  # the config too

    again = ProgressRecorder()
    result = store.push(f"{proxy.host}/team/origin:1", f"{proxy.host}/team/copy:1", progress=again)
    assert sum(1 for line in again if line.endswith(": Layer already exists")) == 2
    assert result.pushed == result.mounted == 0 and result.existed == 3


def test_push_uploads_to_another_registry_monolithic_and_chunked(registry, registry_factory, source, tmp_path):
    publish(source, registry, "team/up:1", [{"small.txt": "small\n"}, {"big.bin": os.urandom(300_000)}])
    other = registry_factory()
    store = store_with(tmp_path, "upload_chunk_size = 65536\n")
    image = store.pull(f"{registry.host}/team/up:1")
    events = ProgressRecorder()
    store.push(f"{registry.host}/team/up:1", f"{other.host}/elsewhere/up", progress=events)
    assert remote(f"{other.host}/elsewhere/up:1")["Digest"] == image.digest  # the tag came along
    assert sum(1 for line in events if line.endswith(": Pushed")) == 2


def test_push_manifest_list_brings_all_platforms(registry, source, tmp_path):
    build_index(source, "src/multi:latest", [("linux", "amd64", None), ("linux", "arm64", "v8")])
    push(oci_ref(source, "docker.io/src/multi:latest"), registry, "team/multi:1", "--all")
    store = store_with(tmp_path)
    store.pull(f"{registry.host}/team/multi:1", all_platforms=True)
    store.push(f"{registry.host}/team/multi:1", f"{registry.host}/team/multi-copy:1")
    assert raw_remote(f"{registry.host}/team/multi-copy:1") == raw_remote(f"{registry.host}/team/multi:1")
    for arch in ("amd64", "arm64"):
        assert remote(f"{registry.host}/team/multi-copy:1", "--override-arch", arch)["Architecture"] == arch


@pytest.mark.parametrize("fault", [{"drop_request": True}, {"cut_request_after": 40_000}])
def test_cut_upload_resumes_or_restarts(registry, registry_factory, proxy_factory, source, tmp_path, fault):
    publish(source, registry, "team/cut:1", [{"big.bin": os.urandom(400_000)}])
    other = registry_factory()
    proxy = proxy_factory(other.url)
    store = store_with(tmp_path, "upload_chunk_size = 100000\nmax_concurrent_uploads = 1\n")
    image = store.pull(f"{registry.host}/team/cut:1")
    proxy.faults({"match": "PATCH /v2/dest/cut/blobs/uploads/", "times": 1, **fault},
                 {"match": "PUT /v2/dest/cut/blobs/uploads/", "times": 1, **fault})
    store.push(f"{registry.host}/team/cut:1", f"{proxy.host}/dest/cut:1")
    assert remote(f"{other.host}/dest/cut:1")["Digest"] == image.digest
    uploads = proxy.requests("/v2/dest/cut/blobs/uploads/")
    faulted = [e for e in uploads if e["method"] == "PATCH" and e["status"] in (None, "cut")]
    assert len(faulted) == 1
    after = uploads[uploads.index(faulted[0]) + 1:]
    # the client asked the registry where the upload stands
    assert after[0]["method"] == "GET" and after[0]["path"].startswith("/v2/dest/cut/blobs/uploads/")
    starts = [e for e in uploads if e["method"] == "POST"]
    if "drop_request" in fault:
        # nothing reached the registry: the same upload went on (one start for the layer,
        # one for the config)
        assert after[0]["status"] == 204 and len(starts) == 2
    else:
        # the registry got part of a chunk and gave that upload up: a new one was started
        assert len(starts) >= 3


def test_push_to_auth_registries(htpasswd_registry, token_registry, registry, source, tmp_path):
    publish(source, registry, "team/authpush:1", [{"x.txt": "x\n"}])
    store = store_with(tmp_path)
    store.pull(f"{registry.host}/team/authpush:1")
    for reg in (htpasswd_registry, token_registry.registry):
        with pytest.raises(Unauthorized):
            store.push(f"{registry.host}/team/authpush:1", f"{reg.host}/team/private:1")
        write_docker_config(tmp_path / "docker-config", reg.host)
        result = store.push(f"{registry.host}/team/authpush:1", f"{reg.host}/team/private:1")
        out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"--creds={USER}:{PASSWORD}",
                              f"docker://{reg.host}/team/private:1"], check=True, capture_output=True, text=True)
        assert json.loads(out.stdout)["Digest"] == result.digest
        (tmp_path / "docker-config" / "config.json").unlink()


def test_schema1_image_is_pushed_in_converted_form(registry_factory, registry, source, tmp_path):
    old = registry_factory(schema1=True)
    build_image(source, "src/old", layers=[{"a": "1\n"}])
    push(oci_ref(source, "docker.io/src/old:latest"), old, "team/old:1", "--format", "v2s1")
    store = store_with(tmp_path)
    image = store.pull(f"{old.host}/team/old:1")
    events = ProgressRecorder()
    store.push(f"{old.host}/team/old:1", f"{registry.host}/team/new:1", progress=events)
    assert any("schema1" in line and "converted" in line for line in events)
    assert json.loads(raw_remote(f"{registry.host}/team/new:1"))["mediaType"] == mt.OCI_MANIFEST
    # the converted manifest went (a schema1 original is not pushed): its digest is the
    # local OCI one, not the schema1 registry digest Image.digest reports
    assert image.digest != store.inspect(f"{old.host}/team/old:1")["ociDigest"]
    assert remote(f"{registry.host}/team/new:1")["Digest"] == store.inspect(f"{old.host}/team/old:1")["ociDigest"]


def test_cli_push_and_copy(registry, registry_factory, source, tmp_path):
    publish(source, registry, "team/cli:1", [{"c.txt": "c\n"}])
    other = registry_factory()
    root = tmp_path / "store"
    run = lambda *args: subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],  # noqa: E731
                                       capture_output=True, text=True)
    assert run("pull", f"{registry.host}/team/cli:1").returncode == 0
    out = run("push", f"{registry.host}/team/cli:1", f"{other.host}/team/cli:2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"The push refers to repository [{other.host}/team/cli]"
    assert any(line.endswith(": Preparing") for line in lines)
    assert any(line.endswith(": Pushed") for line in lines)
    assert lines[-1].startswith("2: digest: sha256:") and " size: " in lines[-1]
    third = registry_factory()
    out = run("copy", f"{registry.host}/team/cli:1", f"{third.host}/copied/cli:1")
    assert out.returncode == 0, out.stderr
    assert remote(f"{third.host}/copied/cli:1")["Digest"] == remote(f"{registry.host}/team/cli:1")["Digest"]
    err = run("push", "nothing/here:1")
    assert err.returncode == 1 and err.stderr == "contentstore: error: no such image: docker.io/nothing/here:1\n"
