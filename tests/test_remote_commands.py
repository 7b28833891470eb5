"""ls, catalog, manifest, digest, delete: a registry looked at without pulling, against
real registries (plain, basic auth, token auth), counted through the fault proxy and
confirmed with skopeo."""

import hashlib
import json
import subprocess
import sys

import pytest
from servers import PASSWORD, USER, oci_ref, write_docker_config

from contentstore import Store
from contentstore.errors import PlatformNotFound, RemoteNotFound, Unauthorized, Unsupported
from contentstore.testing import build_index, push, push_test_image

pytestmark = pytest.mark.needs("skopeo", "docker-registry")


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True).stdout


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          check=True, capture_output=True).stdout


def skopeo_digest(ref: str) -> str:
    return json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))["Digest"]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cli(root, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],
                          capture_output=True, input=stdin)


def test_ls_and_catalog_follow_link_pages_and_honour_n_and_last(registry_factory, proxy_factory, store):
    reg = registry_factory()
    for name in ("team/a:1", "team/a:2", "team/b:1", "other/c:1"):
        push_test_image(reg, name, {"f.txt": name})
    proxy = proxy_factory(reg.url)

    assert sorted(store.tags(f"{proxy.host}/team/a")) == \
        sorted(json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{reg.host}/team/a"))["Tags"])
    assert store.catalog(proxy.host) == ["other/c", "team/a", "team/b"]
    # n: pages of n; last: start after it (the registry's own paging)
    assert store.catalog(proxy.host, n=2) == ["other/c", "team/a"]
    assert store.catalog(proxy.host, n=2, last="team/a") == ["team/b"]
    asked = [e["path"] for e in proxy.requests("/v2/_catalog")]
    assert asked[-2:] == ["/v2/_catalog?n=2", "/v2/_catalog?n=2&last=team%2Fa"]

    # A registry that answers a short page and a Link: the pages are followed, up to n
    page = {"reply": {"status": 200, "body": json.dumps({"repositories": ["other/c"]}),
                      "headers": {"Content-Type": "application/json",
                                  "Link": '</v2/_catalog?last=other%2Fc&n=3>; rel="next"'}}}
    proxy.faults({"match": "GET /v2/_catalog", "times": 1, **page})
    before = len(proxy.requests("/v2/_catalog"))
    assert store.catalog(proxy.host, n=3) == ["other/c", "team/a", "team/b"]
    assert [e["path"] for e in proxy.requests("/v2/_catalog")][before:] == [
        "/v2/_catalog?n=3", "/v2/_catalog?last=other%2Fc&n=3"]
    proxy.faults({"match": "GET /v2/_catalog", "times": 1, **page})
    assert store.catalog(proxy.host) == ["other/c", "team/a", "team/b"]
    # nothing stored by any of it
    assert store.blobs() == [] and store.references() == {}


def test_digest_is_one_head_and_nothing_else(registry, proxy_factory, store):
    push_test_image(registry, "remote/digest:1", {"d.txt": "digest\n"})
    proxy = proxy_factory(registry.url)
    digest = store.remote_digest(f"{proxy.host}/remote/digest:1")
    assert digest == skopeo_digest(f"{registry.host}/remote/digest:1")
    assert [e["method"] for e in proxy.requests("/v2/remote/")] == ["HEAD"]
    # by digest: the HEAD confirms it is there
    assert store.remote_digest(f"{proxy.host}/remote/digest@{digest}") == digest
    assert [e["method"] for e in proxy.requests("/v2/remote/")] == ["HEAD", "HEAD"]
    with pytest.raises(RemoteNotFound):
        store.remote_digest(f"{proxy.host}/remote/digest:absent")
    assert store.blobs() == []


def test_manifest_raw_summary_and_platform(registry, proxy_factory, store, source):
    build_index(source, "src/multi:latest", [("linux", "amd64", None), ("linux", "arm64", "v8")])
    push(oci_ref(source, "docker.io/src/multi:latest"), registry, "remote/multi:1", "--all")
    proxy = proxy_factory(registry.url)
    ref = f"{proxy.host}/remote/multi:1"

    raw = store.remote_manifest(ref, raw=True)
    assert raw == skopeo_raw(f"{registry.host}/remote/multi:1")
    summary = store.remote_manifest(ref)
    assert summary["digest"] == sha256(raw) == skopeo_digest(f"{registry.host}/remote/multi:1")
    assert summary["size"] == len(raw) and len(summary["manifests"]) == 2 and "layers" not in summary

    arm = store.remote_manifest(ref, platform="linux/arm64")
    child = json.loads(raw)["manifests"][1]
    assert arm["manifest"]["digest"] == child["digest"] and arm["platform"] == "linux/arm64/v8"
    arm_raw = skopeo_raw(f"{registry.host}/remote/multi@{child['digest']}")
    assert [layer["digest"] for layer in arm["layers"]] == [l["digest"] for l in json.loads(arm_raw)["layers"]]
    assert store.remote_manifest(ref, raw=True, platform="linux/arm64") == arm_raw
    with pytest.raises(PlatformNotFound, match="linux/s390x"):
        store.remote_manifest(ref, platform="linux/s390x")

    # one image: its platform from its config (verified), and a wrong platform refused
    push_test_image(registry, "remote/single:1", {"s.txt": "single\n"})
    single = store.remote_manifest(f"{proxy.host}/remote/single:1")
    assert single["platform"] == "linux/amd64" and len(single["layers"]) == 1
    with pytest.raises(PlatformNotFound, match="wanted linux/arm64"):
        store.remote_manifest(f"{proxy.host}/remote/single:1", platform="linux/arm64")
    assert store.blobs() == [] and store.references() == {}


def test_delete_resolves_a_tag_to_its_digest(registry, proxy_factory, store):
    push_test_image(registry, "remote/del:1", {"x.txt": "delete me\n"})
    push_test_image(registry, "remote/del:keep", {"x.txt": "keep me\n"})
    proxy = proxy_factory(registry.url)
    digest = store.remote_digest(f"{proxy.host}/remote/del:1")

    assert store.delete_remote(f"{proxy.host}/remote/del:1") == digest
    calls = [(e["method"], e["path"].rsplit("/", 1)[1], e["status"]) for e in proxy.requests("/manifests/")]
    assert calls[-2:] == [("HEAD", "1", 200), ("DELETE", digest, 202)]
    with pytest.raises(RemoteNotFound):
        store.remote_digest(f"{proxy.host}/remote/del:1")
    assert store.tags(f"{proxy.host}/remote/del") == ["keep"]
    with pytest.raises(RemoteNotFound):
        store.delete_remote(f"{proxy.host}/remote/del@{digest}")


def test_delete_on_a_registry_with_deletion_disabled(registry_factory, tmp_path, store):
    reg = registry_factory(extra={"storage": {"filesystem": {"rootdirectory": str(tmp_path / "kept")},
                                              "delete": {"enabled": False}}})
    push_test_image(reg, "remote/kept:1")
    with pytest.raises(Unsupported, match=r"does not allow deleting manifests \(405 The operation is "
                                          r"unsupported.; on distribution, storage.delete.enabled is false\)"):
        store.delete_remote(f"{reg.host}/remote/kept:1")
    out = cli(tmp_path / "root", "delete", f"{reg.host}/remote/kept:1")
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.decode().startswith(f"contentstore: error: delete of {reg.host}/remote/kept@sha256:")
    assert len(out.stderr.decode().splitlines()) == 1
    assert store.tags(f"{reg.host}/remote/kept") == ["1"]


@pytest.mark.parametrize("kind", ["htpasswd", "token"])
def test_every_command_with_and_without_credentials(kind, request, tmp_path):
    reg = request.getfixturevalue("htpasswd_registry") if kind == "htpasswd" else \
        request.getfixturevalue("token_registry").registry
    push_test_image(reg, "private/app:1", {"p.txt": "private\n"}, credentials=(USER, PASSWORD))
    push_test_image(reg, "private/app:2", {"p.txt": "other\n"}, credentials=(USER, PASSWORD))
    store = Store(tmp_path / "store")
    ref = f"{reg.host}/private/app:1"
    calls = {
        "ls": lambda: store.tags(f"{reg.host}/private/app"),
        "catalog": lambda: store.catalog(reg.host),
        "digest": lambda: store.remote_digest(ref),
        "manifest": lambda: store.remote_manifest(ref),
        "delete": lambda: store.delete_remote(ref),
    }
    for name, call in calls.items():
        with pytest.raises(Unauthorized):
            call()
    out = cli(tmp_path / "root", "ls", f"{reg.host}/private/app")
    assert out.returncode == 1 and out.stderr.decode().startswith("contentstore: error: unauthorized: ")

    write_docker_config(tmp_path / "docker-config", reg.host)
    assert sorted(calls["ls"]()) == ["1", "2"]
    assert calls["catalog"]() == ["private/app"]
    digest = calls["digest"]()
    assert digest == json.loads(skopeo("inspect", "--tls-verify=false", f"--creds={USER}:{PASSWORD}",
                                       f"docker://{ref}"))["Digest"]
    assert calls["manifest"]()["digest"] == digest
    assert calls["delete"]() == digest
    assert calls["ls"]() == ["2"]


def test_reads_ask_the_registry_for_the_tag_and_mirrors_for_content(registry, proxy_factory, tmp_path):
    push_test_image(registry, "remote/mirrored:1", {"m.txt": "mirrored\n"})
    upstream, mirror = proxy_factory(registry.url), proxy_factory(registry.url)
    config = tmp_path / "config.toml"
    config.write_text(f'[registry."{upstream.host}"]\nmirrors = ["http://{mirror.host}"]\n')
    store = Store(tmp_path / "store", config=config)
    ref = f"{upstream.host}/remote/mirrored:1"

    digest = store.remote_digest(ref)
    assert [e["method"] for e in upstream.requests("/v2/remote/")] == ["HEAD"]
    assert not mirror.requests("/v2/remote/")
    raw = store.remote_manifest(ref, raw=True)
    assert sha256(raw) == digest
    assert [(e["method"], e["path"].rsplit("/", 1)[1]) for e in mirror.requests("/v2/remote/")] == [("GET", digest)]
    assert store.tags(f"{upstream.host}/remote/mirrored") == ["1"]
    assert not mirror.requests("/tags/")
    # a delete is never sent to a mirror
    store.delete_remote(ref)
    assert [e["method"] for e in upstream.requests("/v2/remote/")].count("DELETE") == 1
    assert not [e for e in mirror.log() if e["method"] == "DELETE"]


def test_cli_remote_commands(registry_factory, source, tmp_path):
    reg = registry_factory()
    push_test_image(reg, "cli/app:1.0", {"a.txt": "1\n"})
    push_test_image(reg, "cli/app:2.0", {"a.txt": "2\n"})
    push_test_image(reg, "cli/tool:1", {"t.txt": "tool\n"})
    root = tmp_path / "root"

    out = cli(root, "ls", f"{reg.host}/cli/app")
    assert out.returncode == 0 and sorted(out.stdout.decode().splitlines()) == ["1.0", "2.0"]
    listed = json.loads(cli(root, "ls", f"{reg.host}/cli/app", "--format", "json").stdout)
    assert listed["repository"] == f"{reg.host}/cli/app" and sorted(listed["tags"]) == ["1.0", "2.0"]
    assert cli(root, "catalog", reg.host).stdout.decode().splitlines() == ["cli/app", "cli/tool"]
    assert cli(root, "catalog", reg.host, "-n", "1").stdout.decode().splitlines() == ["cli/app"]
    assert cli(root, "catalog", reg.host, "--last", "cli/app").stdout.decode().splitlines() == ["cli/tool"]
    assert json.loads(cli(root, "catalog", reg.host, "--format", "json").stdout)["repositories"] == \
        ["cli/app", "cli/tool"]
    assert cli(root, "catalog", reg.host, "-n", "0").returncode == 2

    digest = cli(root, "digest", f"{reg.host}/cli/app:1.0").stdout.decode().strip()
    assert digest == skopeo_digest(f"{reg.host}/cli/app:1.0")
    assert json.loads(cli(root, "digest", f"{reg.host}/cli/app:1.0", "--format", "json").stdout) == {
        "reference": f"{reg.host}/cli/app:1.0", "digest": digest}
    raw = cli(root, "manifest", f"{reg.host}/cli/app:1.0", "--raw").stdout
    assert raw == skopeo_raw(f"{reg.host}/cli/app:1.0") and sha256(raw) == digest
    shown = json.loads(cli(root, "manifest", f"{reg.host}/cli/app:1.0").stdout)
    assert shown["digest"] == digest and shown["platform"] == "linux/amd64"

    out = cli(root, "delete", f"{reg.host}/cli/app:1.0")
    assert out.returncode == 0 and out.stdout.decode() == f"Deleted: {reg.host}/cli/app@{digest}\n"
    out = cli(root, "delete", f"{reg.host}/cli/app:1.0")
    assert out.returncode == 1 and out.stderr.decode().startswith(
        f"contentstore: error: not found: {reg.host}/cli/app:1.0")
    assert cli(root, "ls", f"{reg.host}/cli/app").stdout.decode().split() == ["2.0"]
    assert not (root / "blobs").exists() or not any((root / "blobs").rglob("*"))
