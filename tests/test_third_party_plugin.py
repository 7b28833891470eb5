"""A third-party plugin, built and pip-installed into a fresh venv, just works."""

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from servers import upload
from tools import require

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).resolve().parent / "plugins" / "contentstore-helm"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


def chart() -> tuple[bytes, bytes]:
    files = {"mychart/Chart.yaml": b"apiVersion: v2\nname: mychart\nversion: 0.1.0\n",
             "mychart/values.yaml": b"replicaCount: 1\n"}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    config = json.dumps({"apiVersion": "v2", "name": "mychart", "version": "0.1.0"}).encode()
    return gzip.compress(raw.getvalue(), mtime=0), config


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtual environment with contentstore and the example plugin installed."""
    path = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(ROOT), str(PLUGIN)], check=True, capture_output=True)
    return path


def test_helm_plugin_from_a_fresh_venv(venv, registry, tmp_path):
    require("docker-registry")
    layer, config = chart()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": HELM_CONFIG, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": HELM_CHART, "digest": digest(layer), "size": len(layer)}],
    }).encode()
    upload(registry.url, "charts/mychart", [layer, config], manifest,
           "application/vnd.oci.image.manifest.v1+json", "0.1.0")
    ref = f"{registry.host}/charts/mychart:0.1.0"
    contentstore = str(venv / "bin" / "contentstore")

    def run(*args):
        return subprocess.run([contentstore, "--root", str(tmp_path / "store"), *args],
                              capture_output=True, text=True)

    listing = run("plugins").stdout.splitlines()
    helm = [line.split() for line in listing if line.startswith("helm ")]
    assert helm == [["helm", "format", "1.0.0", "contentstore-helm"]]

    refused = run("-p", "no:helm", "pull", ref)
    assert refused.returncode == 1
    assert "helm chart" in refused.stderr and "not an image" in refused.stderr
    assert refused.stderr.count("\n") == 1

    pulled = run("pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert f"Status: Downloaded newer image for {ref}" in pulled.stdout
    inspect = json.loads(run("inspect", ref).stdout)
    assert inspect["config"]["mediaType"] == HELM_CONFIG
    assert inspect["layers"][0]["digest"] == digest(layer)
    assert run("verify").returncode == 0
