"""sync and copy --platform against real registries: HEADs only when up to date, identical
digests (skopeo confirms), blobs uploaded once and mounted across repositories, --tags,
--latest, --dry-run, failures named, credentials, and a sync killed with SIGKILL and run
again that sends nothing twice."""

import collections
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from servers import PASSWORD, USER, oci_ref, write_docker_config

from contentstore import Store
from contentstore.errors import PlatformNotFound, RemoteNotFound, Unauthorized, UsageError
from contentstore.testing import build_image, build_index, push, push_test_image

pytestmark = pytest.mark.needs("skopeo", "docker-registry")

BASE = {"base/os-release": "ID=contentstore-test\n", "base/lib.bin": os.urandom(150_000)}


def publish(source, registry, name, files, base=BASE, credentials=None):
    """An image of two layers (the shared ``base`` and its own ``files``) at ``name``."""
    local = "src/" + re.sub(r"[^a-z0-9]+", "-", name)
    build_image(source, local, layers=[base, files])
    return push(oci_ref(source, f"docker.io/{local}:latest"), registry, name, credentials=credentials)


def skopeo_raw(ref: str, *args: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", *args, f"docker://{ref}"],
                          check=True, capture_output=True).stdout


def skopeo_tags(repository: str, *args: str) -> list[str]:
    out = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", *args, f"docker://{repository}"],
                         check=True, capture_output=True, text=True).stdout
    return sorted(json.loads(out)["Tags"])


def cli(root, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],
                          capture_output=True, text=True, **kwargs)


def uploads(proxy) -> collections.Counter:
    """Completed blob uploads by digest (the closing PUT answered 201)."""
    done = collections.Counter()
    for entry in proxy.requests("/blobs/uploads/", "PUT"):
        match = re.search(r"digest=(sha256(?::|%3A)[0-9a-f]{64})", entry["path"])
        if entry["status"] == 201 and match:
            done[match.group(1).replace("%3A", ":")] += 1
    return done


def manifest_puts(proxy) -> collections.Counter:
    return collections.Counter(e["path"] for e in proxy.requests("/manifests/", "PUT") if e["status"] == 201)


def test_sync_a_repository_then_an_up_to_date_sync_sends_heads_only(registry_factory, proxy_factory, source,
                                                                     tmp_path):
    src, dest = registry_factory(), registry_factory()
    for tag in ("1.0", "1.1", "2.0", "latest"):
        publish(source, src, f"team/app:{tag}", {"app.txt": f"app {tag}\n"})
    build_index(source, "src/multi:latest", [("linux", "amd64", None), ("linux", "arm64", "v8")])
    push(oci_ref(source, "docker.io/src/multi:latest"), src, "team/app:multi", "--all")
    src_proxy, dest_proxy = proxy_factory(src.url), proxy_factory(dest.url)
    store = Store(tmp_path / "store")

    lines = []
    report = store.sync(f"{src_proxy.host}/team/app", dest_proxy.host, progress=lambda e: lines.append(e.status))
    assert report.ok and len(report.copied) == 5 and not report.skipped
    assert report.summary() == "5 copied, 0 skipped, 0 failed"
    assert sum(line.startswith("Copied ") for line in lines) == 5
    # identical digests, as skopeo sees them; the same tags
    assert skopeo_tags(f"{dest.host}/team/app") == skopeo_tags(f"{src.host}/team/app")
    for tag in ("1.0", "1.1", "2.0", "latest", "multi"):
        assert skopeo_raw(f"{dest.host}/team/app:{tag}") == skopeo_raw(f"{src.host}/team/app:{tag}")
    assert skopeo_raw(f"{dest.host}/team/app:multi", "--override-arch", "arm64") == \
        skopeo_raw(f"{src.host}/team/app:multi", "--override-arch", "arm64")
    # the shared base layer went once; every blob at most once
    assert max(uploads(dest_proxy).values()) == 1
    # blobs passed through the store, verified, each kept once
    held = [blob.digest for blob in store.blobs()]
    assert len(held) == len(set(held)) and set(uploads(dest_proxy)) <= set(held)

    src_seen, dest_seen = len(src_proxy.log()), len(dest_proxy.log())
    report = store.sync(f"{src_proxy.host}/team/app", dest_proxy.host)
    assert report.ok and len(report.skipped) == 5 and not report.copied
    src_new, dest_new = src_proxy.log()[src_seen:], dest_proxy.log()[dest_seen:]
    # a HEAD on each side for each tag, and nothing else but the ping and the tag list
    assert sorted((e["method"], e["path"]) for e in src_new if "/manifests/" in e["path"]) == sorted(
        ("HEAD", f"/v2/team/app/manifests/{tag}") for tag in ("1.0", "1.1", "2.0", "latest", "multi"))
    assert sorted((e["method"], e["path"]) for e in dest_new if "/manifests/" in e["path"]) == sorted(
        ("HEAD", f"/v2/team/app/manifests/{tag}") for tag in ("1.0", "1.1", "2.0", "latest", "multi"))
    for entry in src_new + dest_new:
        assert entry["path"] == "/v2/" or "/manifests/" in entry["path"] or "/tags/list" in entry["path"], entry
        assert entry["method"] in ("GET", "HEAD")
    assert not [e for e in src_new if e["method"] == "GET" and "/manifests/" in e["path"]]


def test_sync_a_registry_catalog_to_a_prefix(registry_factory, proxy_factory, source, tmp_path):
    src, dest = registry_factory(), registry_factory()
    names = ["team/a:1", "team/b:1", "team/b:2", "tools/c:1", "other/skip:1"]
    for name in names:
        publish(source, src, name, {"own.txt": name})
    dest_proxy = proxy_factory(dest.url)
    store = Store(tmp_path / "store")
    report = store.sync(src.host, f"{dest_proxy.host}/mirror", repos="(team|tools)/.*", jobs=3)
    assert report.ok and len(report.copied) == 4
    assert sorted(item.destination for item in report.copied) == sorted(
        f"{dest_proxy.host}/mirror/{name}" for name in names[:4])
    assert store.catalog(dest.host) == ["mirror/team/a", "mirror/team/b", "mirror/tools/c"]
    for name in names[:4]:
        assert skopeo_raw(f"{dest.host}/mirror/{name}") == skopeo_raw(f"{src.host}/{name}")
    # the base layer: uploaded once to the registry, mounted into the other repositories
    base = json.loads(skopeo_raw(f"{src.host}/team/a:1"))["layers"][0]["digest"]
    assert uploads(dest_proxy)[base] == 1
    mounts = [e for e in dest_proxy.requests("/blobs/uploads/", "POST")
              if f"mount={base}" in e["path"] and e["status"] == 201]
    assert len(mounts) == 2  # team/b and tools/c (team/b's second tag finds it there)
    assert max(uploads(dest_proxy).values()) == 1


def test_tags_latest_and_dry_run(registry_factory, proxy_factory, source, tmp_path):
    src, dest = registry_factory(), registry_factory()
    for tag in ("1.0", "1.1", "1.2", "2.0", "latest", "dev"):
        publish(source, src, f"team/v:{tag}", {"v.txt": tag})
    dest_proxy = proxy_factory(dest.url)
    store = Store(tmp_path / "store")

    report = store.sync(f"{src.host}/team/v", dest_proxy.host, tags=r"1\..*", dry_run=True)
    assert sorted(item.source.rsplit(":", 1)[1] for item in report.would_copy) == ["1.0", "1.1", "1.2"]
    assert report.summary() == "3 to copy (dry run), 0 skipped, 0 failed"
    # a dry run only asks: HEADs, nothing uploaded, nothing stored
    assert {e["method"] for e in dest_proxy.log()} <= {"GET", "HEAD"}
    assert all(e["path"] == "/v2/" or e["method"] == "HEAD" for e in dest_proxy.log())
    assert store.blobs() == []

    report = store.sync(f"{src.host}/team/v", dest_proxy.host, latest=2)
    assert sorted(item.source.rsplit(":", 1)[1] for item in report.copied) == ["1.2", "2.0"]
    report = store.sync(f"{src.host}/team/v", dest_proxy.host, tags=r"1\..*", latest=2)
    assert sorted((i.source.rsplit(":", 1)[1], i.status) for i in report.items) == [("1.1", "copied"),
                                                                                    ("1.2", "skipped")]
    assert skopeo_tags(f"{dest.host}/team/v") == ["1.1", "1.2", "2.0"]
    report = store.sync(f"{src.host}/team/v:dev", dest_proxy.host)
    assert [item.destination for item in report.copied] == [f"{dest_proxy.host}/team/v:dev"]

    root = tmp_path / "cli-root"
    out = cli(root, "sync", f"{src.host}/team/v", dest.host, "--dry-run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sorted(" ".join(line.split()[:2]) for line in lines[:-1]) == ["Up to"] * 4 + ["Would copy"] * 2
    assert lines[-1] == f"Synced {src.host}/team/v to {dest.host}: 2 to copy (dry run), 4 skipped, 0 failed"
    shown = json.loads(cli(root, "sync", f"{src.host}/team/v", dest.host, "--latest", "1", "--format",
                           "json").stdout)
    assert shown["skipped"] == 1 and shown["images"][0]["status"] == "skipped"
    assert cli(root, "sync", f"{src.host}/team/v", dest.host, "--tags", "(").returncode == 2
    assert cli(root, "sync", f"{src.host}/team/v", dest.host, "--repos", "x").returncode == 2
    assert cli(root, "sync", f"{src.host}/team/v", dest.host, "-j", "0").returncode == 2


def test_a_failed_image_is_named_the_others_go_on_and_exit_1(registry_factory, proxy_factory, source, tmp_path):
    src, dest = registry_factory(), registry_factory()
    for tag in ("good1", "bad", "good2"):
        publish(source, src, f"team/f:{tag}", {"f.txt": tag})
    bad_layer = json.loads(skopeo_raw(f"{src.host}/team/f:bad"))["layers"][1]["digest"]
    proxy = proxy_factory(src.url)
    proxy.faults({"match": f"GET /v2/team/f/blobs/{bad_layer}", "times": -1, "flip_byte": 10})
    out = cli(tmp_path / "root", "sync", f"{proxy.host}/team/f", dest.host)
    assert out.returncode == 1
    assert out.stdout.splitlines()[-1] == f"Synced {proxy.host}/team/f to {dest.host}: 2 copied, 0 skipped, 1 failed"
    errors = out.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith(
        f"contentstore: error: {proxy.host}/team/f:bad -> {dest.host}/team/f:bad: ") and bad_layer in errors[0]
    assert skopeo_tags(f"{dest.host}/team/f") == ["good1", "good2"]


def test_sync_with_and_without_credentials(htpasswd_registry, token_registry, source, tmp_path):
    src, dest = htpasswd_registry, token_registry.registry
    publish(source, src, "private/app:1", {"p.txt": "private\n"}, credentials=(USER, PASSWORD))
    store = Store(tmp_path / "store")
    report = store.sync(f"{src.host}/private/app", dest.host)
    assert not report.ok and report.failed[0].error.startswith("cannot list its tags: unauthorized: ")
    with pytest.raises(Unauthorized):
        store.sync(src.host, dest.host)  # the catalog itself
    write_docker_config(tmp_path / "docker-config", src.host)
    report = store.sync(f"{src.host}/private/app", dest.host)
    assert [item.error.split(":")[0] for item in report.failed] == ["unauthorized"]  # the destination's
    config = tmp_path / "docker-config" / "config.json"
    auths = json.loads(config.read_text())["auths"]
    auths[dest.host] = auths[src.host]
    config.write_text(json.dumps({"auths": auths}))
    report = store.sync(src.host, dest.host)
    assert report.ok and len(report.copied) == 1
    creds = f"--creds={USER}:{PASSWORD}"
    assert skopeo_raw(f"{dest.host}/private/app:1", creds) == skopeo_raw(f"{src.host}/private/app:1", creds)
    assert len(store.sync(src.host, dest.host).skipped) == 1


def test_killed_sync_run_again_sends_nothing_twice(registry_factory, proxy_factory, source, tmp_path):
    src, dest = registry_factory(), registry_factory()
    tags = [f"{n}.0" for n in range(6)]
    for tag in tags:
        publish(source, src, f"team/k:{tag}", {"k.bin": os.urandom(300_000)})
    src_proxy, dest_proxy = proxy_factory(src.url), proxy_factory(dest.url)
    src_proxy.faults({"match": "GET /v2/team/k/blobs/", "times": -1, "delay": 0.2})
    root = tmp_path / "root"
    args = [sys.executable, "-m", "contentstore", "--root", str(root), "sync", f"{src_proxy.host}/team/k",
            dest_proxy.host, "-j", "2"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while sum(manifest_puts(dest_proxy).values()) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "the sync ended before it was killed"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    done = {path.rsplit("/", 1)[1] for path in manifest_puts(dest_proxy)}
    assert 2 <= len(done) < len(tags)

    out = cli(root, "sync", f"{src_proxy.host}/team/k", dest_proxy.host, "-j", "2")
    assert out.returncode == 0, out.stderr
    finished = {line.split()[3].rsplit(":", 1)[1] for line in out.stdout.splitlines() if line.startswith("Up to date")}
    assert done <= finished
    assert out.stdout.splitlines()[-1].endswith(f"{len(tags) - len(finished)} copied, {len(finished)} skipped, 0 failed")
    # nothing sent twice: no blob upload completed twice, no manifest put again
    assert max(uploads(dest_proxy).values()) == 1
    assert max(manifest_puts(dest_proxy).values()) == 1
    assert len(manifest_puts(dest_proxy)) == len(tags)
    # the blobs the killed run had stored were not fetched again
    fetched = collections.Counter(e["path"] for e in src_proxy.requests("/blobs/", "GET") if e["status"] == 200
                                  and e.get("range") is None)
    assert max(fetched.values()) == 1
    for tag in tags:
        assert skopeo_raw(f"{dest.host}/team/k:{tag}") == skopeo_raw(f"{src.host}/team/k:{tag}")


def test_copy_some_platforms_rewrites_the_index(registry, registry_factory, source, tmp_path):
    build_index(source, "src/plat:latest", [("linux", "amd64", None), ("linux", "arm64", "v8"),
                                            ("linux", "arm", "v7")])
    push(oci_ref(source, "docker.io/src/plat:latest"), registry, "team/plat:1", "--all")
    dest = registry_factory()
    store = Store(tmp_path / "store")
    original = json.loads(skopeo_raw(f"{registry.host}/team/plat:1"))

    result = store.copy(f"{registry.host}/team/plat:1", f"{dest.host}/team/plat", platform="linux/arm64,linux/amd64")
    served = skopeo_raw(f"{dest.host}/team/plat:1")
    body = json.loads(served)
    # the source's document, less the other entries, in the source's order
    assert body == dict(original, manifests=original["manifests"][:2])
    assert result.digest == "sha256:" + hashlib.sha256(served).hexdigest()
    assert result.digest != store.remote_digest(f"{registry.host}/team/plat:1")
    arm7 = original["manifests"][2]["digest"]
    with pytest.raises(RemoteNotFound):
        store.remote_digest(f"{dest.host}/team/plat@{arm7}")  # not copied
    # every platform asked for: the index as served, its digest kept
    store.copy(f"{registry.host}/team/plat:1", f"{dest.host}/team/all:1",
               platform=["linux/amd64", "linux/arm64", "linux/arm/v7"])
    assert skopeo_raw(f"{dest.host}/team/all:1") == skopeo_raw(f"{registry.host}/team/plat:1")
    with pytest.raises(PlatformNotFound, match="s390x"):
        store.copy(f"{registry.host}/team/plat:1", f"{dest.host}/team/none:1", platform="linux/s390x")
    publish(source, registry, "team/single:1", {"s.txt": "single\n"})
    with pytest.raises(PlatformNotFound, match="wanted linux/arm64"):
        store.copy(f"{registry.host}/team/single:1", f"{dest.host}/team/single:1", platform="linux/arm64")
    store.copy(f"{registry.host}/team/single:1", f"{dest.host}/team/single:1", platform="linux/amd64")
    assert skopeo_raw(f"{dest.host}/team/single:1") == skopeo_raw(f"{registry.host}/team/single:1")
    with pytest.raises(UsageError):
        store.copy(f"{registry.host}/team/single:1", f"{dest.host}/x:1", platform="linux/amd64", all_platforms=True)

    # sync with a platform: the rewritten index is what the destination is compared with
    report = store.sync(f"{registry.host}/team/plat", f"{dest.host}/sub", platform="linux/arm/v7")
    assert len(report.copied) == 1
    assert json.loads(skopeo_raw(f"{dest.host}/sub/team/plat:1"))["manifests"] == original["manifests"][2:]
    assert len(store.sync(f"{registry.host}/team/plat", f"{dest.host}/sub", platform="linux/arm/v7").skipped) == 1

    root = tmp_path / "root"
    out = cli(root, "copy", f"{registry.host}/team/plat:1", f"{dest.host}/cli/plat:1", "--platform", "linux/arm64")
    assert out.returncode == 0, out.stderr
    assert "index rewritten to 1 of 3 platforms (linux/arm64/v8)" in out.stdout
    assert cli(root, "copy", "a/b:1", "c/d:1", "--platform", "linux/amd64", "--all-platforms").returncode == 2
    out = cli(root, "copy", f"{registry.host}/team/plat:1", f"{dest.host}/cli/plat:2", "--referrers")
    assert out.returncode == 0, out.stderr  # no referrers to bring: the image alone, digest kept
    assert skopeo_raw(f"{dest.host}/cli/plat:2") == skopeo_raw(f"{registry.host}/team/plat:1")


def test_sync_copies_artifacts_and_referrers_tags_too(registry, registry_factory, store, tmp_path):
    """A repository holds more than images: an SBOM tagged beside its image, and the
    referrers tag (sha256-<hex>) that lists it on a registry without the referrers API.
    sync copies every tag, as skopeo sync and regsync do, digests kept."""
    ref = push_test_image(registry, "team/withsbom:1", {"a.txt": "a\n"})
    sbom = tmp_path / "sbom.spdx.json"
    sbom.write_text('{"spdxVersion": "SPDX-2.3"}')
    store.pull(ref)
    store.put_artifact(f"{registry.host}/team/withsbom:sbom", [(sbom, "application/spdx+json")],
                       artifact_type="application/spdx+json", subject=ref)
    store.push(f"{registry.host}/team/withsbom:sbom")
    dest = registry_factory()
    fresh = Store(tmp_path / "fresh")
    report = fresh.sync(f"{registry.host}/team/withsbom", dest.host)
    assert report.ok and len(report.copied) == 3, report.summary()  # 1, sbom, sha256-<hex>
    for tag in ("1", "sbom"):
        assert skopeo_raw(f"{dest.host}/team/withsbom:{tag}") == skopeo_raw(f"{registry.host}/team/withsbom:{tag}")
    assert [r.artifact_type for r in fresh.referrers(f"{dest.host}/team/withsbom:1")] == ["application/spdx+json"]
