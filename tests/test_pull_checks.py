"""What a pull refuses: mismatched diffIDs, non-image configs, oversized manifests; and
the command line's output."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
from servers import upload

from contentstore import Store
from contentstore.errors import DigestMismatch, ManifestTooLarge, UnsupportedMediaType, VerificationError
from contentstore.model import mediatypes as mt

pytestmark = pytest.mark.needs("docker-registry")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def image_parts(diff_ids=None, config_type=mt.OCI_CONFIG, layer_type=mt.OCI_LAYER_GZIP):
    layer_tar = tar_of("file.txt", b"content\n")
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids or [digest(layer_tar)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": digest(layer), "size": len(layer)}],
    }).encode()
    return [layer, config], manifest


def test_diff_id_mismatch_fails_a_pull_that_verifies_diffids(registry, store):
    blobs, manifest = image_parts(diff_ids=["sha256:" + "1" * 64])
    upload(registry.url, "team/liar", blobs, manifest, mt.OCI_MANIFEST, "1")
    with pytest.raises(VerificationError) as info:
        store.pull(f"{registry.host}/team/liar:1", verify_diffids=True)
    assert "layers from manifest don't match image configuration" in str(info.value)
    assert store.images() == []


def test_diff_ids_are_left_to_the_first_decompression_by_default(registry, store, tmp_path):
    """A plain pull verifies digests only (no layer is inflated), as containerd does; the
    config's diffIDs are checked where a layer is first decompressed."""
    blobs, manifest = image_parts(diff_ids=["sha256:" + "1" * 64])
    upload(registry.url, "team/lazy", blobs, manifest, mt.OCI_MANIFEST, "1")
    ref = f"{registry.host}/team/lazy:1"
    image = store.pull(ref)
    assert store.exists(image.layers[0].digest) and store.metadata.diff_id(image.layers[0].digest) is None
    # the first decompression finds the lie, and writes nothing
    with pytest.raises(DigestMismatch, match=f"uncompressed layer {image.layers[0].digest}"):
        store.unpack(ref, tmp_path / "rootfs")
    assert not (tmp_path / "rootfs").exists()
    # --verify-diffids on the command line, and [pull] verify_diffids in the config
    root = tmp_path / "cli-store"
    cli = subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), "-q", "pull",
                          "--verify-diffids", ref], capture_output=True, text=True)
    assert cli.returncode == 1 and "don't match image configuration" in cli.stderr
    config = tmp_path / "verify.toml"
    config.write_text("[pull]\nverify_diffids = true\n")
    with pytest.raises(VerificationError):
        Store(tmp_path / "configured", config=config).pull(ref)


def test_layer_count_mismatch_fails_the_pull(registry, store):
    blobs, manifest = image_parts(diff_ids=["sha256:" + "1" * 64, "sha256:" + "2" * 64])
    upload(registry.url, "team/count", blobs, manifest, mt.OCI_MANIFEST, "1")
    with pytest.raises(VerificationError, match="don't match image configuration"):
        store.pull(f"{registry.host}/team/count:1")


def test_helm_chart_is_refused_as_not_an_image(registry, store):
    blobs, manifest = image_parts(config_type=mt.HELM_CONFIG,
                                  layer_type="application/vnd.cncf.helm.chart.content.v1.tar+gzip")
    upload(registry.url, "charts/nginx", blobs, manifest, mt.OCI_MANIFEST, "1.0.0")
    with pytest.raises(UnsupportedMediaType) as info:
        store.pull(f"{registry.host}/charts/nginx:1.0.0")
    assert "helm chart" in str(info.value) and "not an image" in str(info.value)
    assert mt.HELM_CONFIG in str(info.value)
    assert store.blobs() == []  # refused before any blob was fetched


def test_oversized_manifest_is_refused(registry, proxy_factory, store):
    blobs, manifest = image_parts()
    upload(registry.url, "team/huge", blobs, manifest, mt.OCI_MANIFEST, "1")
    proxy = proxy_factory(registry.url)
    # the registry itself refuses to store manifests over 4 MiB, so the proxy serves one
    proxy.faults({"match": "GET /v2/team/huge/manifests/", "body_size": 4 * 1024 * 1024 + 1,
                  "content_type": mt.OCI_MANIFEST, "times": -1})
    with pytest.raises(ManifestTooLarge):
        store.pull(f"{proxy.host}/team/huge:1")


def test_cli_pull_output(registry, tmp_path):
    blobs, manifest = image_parts()
    manifest_digest = upload(registry.url, "team/cli", blobs, manifest, mt.OCI_MANIFEST, "2.0")
    root = tmp_path / "root"
    run = lambda *args: subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],  # noqa: E731
                                       capture_output=True, text=True, env=os.environ)
    ref = f"{registry.host}/team/cli:2.0"
    proc = run("pull", ref)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    layer_id = digest(blobs[0]).split(":")[1][:12]
    assert lines[0] == "2.0: Pulling from team/cli"
    assert f"{layer_id}: Pulling fs layer" in lines
    assert f"{layer_id}: Verifying Checksum" in lines
    assert f"{layer_id}: Download complete" in lines
    assert f"{layer_id}: Pull complete" in lines
    assert lines[-3:] == [f"Digest: {manifest_digest}", f"Status: Downloaded newer image for {ref}", ref]
    assert "\x1b[" not in proc.stdout  # no terminal control codes in a pipe
    again = run("pull", ref)
    assert again.stdout.splitlines()[-2] == f"Status: Image is up to date for {ref}"
    assert run("-q", "pull", ref).stdout == f"{ref}\n"
    err = run("pull", f"{registry.host}/team/absent:1")
    assert err.returncode == 1 and err.stderr.count("\n") == 1 and "not found" in err.stderr
    err = run("pull", "127.0.0.1:1/nothing/listens:here")
    assert err.returncode == 1 and err.stderr.startswith("contentstore: error:") and err.stderr.count("\n") == 1
