"""Third-party plugins, built and pip-installed into a fresh venv, just work: the Helm
example of docs/plugins.md, and the two plugins of tests/plugins/contentstore-examples
(Wasm modules; a site policy), which use every hook issue 16 added, against a real
registry and through the installed ``contentstore`` command."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from servers import upload
from tools import require

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).resolve().parent / "plugins" / "contentstore-helm"
EXAMPLES = Path(__file__).resolve().parent / "plugins" / "contentstore-examples"
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
    """A fresh virtual environment with contentstore and the example plugins installed."""
    path = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(ROOT), str(PLUGIN), str(EXAMPLES)], check=True, capture_output=True)
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

    def run(*args):  # the site policy (same venv) would refuse everything: it has no allow-list here
        return subprocess.run([contentstore, "--root", str(tmp_path / "store"), "-p", "no:site", *args],
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


WASM = "application/vnd.wasm.config.v0+json"
MODULE = "application/vnd.wasm.content.layer.v1+wasm"


def test_every_new_hook_from_a_fresh_venv(venv, registry, registry_factory, tmp_path):
    """Accept by artifact type, settings from [plugins.NAME], a subcommand in --help, a
    veto that leaves no reference, pulled and pushed events, the operation a policy sees."""
    require("docker-registry")
    from contentstore.testing import push_artifact, push_image

    team = registry_factory()
    module = push_artifact(registry, "team/hello:1", {"hello.wasm": b"\0asm\1\0\0\0"},
                           artifact_type=WASM, media_type=MODULE)
    large = push_artifact(registry, "team/large:1", {"large.wasm": b"\0asm\1\0\0\0" + bytes(4096)},
                          artifact_type=WASM, media_type=MODULE)
    on_team = push_image(team, "team/tool:1", {"tool.txt": "built by the team\n"})
    outside = push_image(registry, "other/app:1", {"app.txt": "not allowed\n"})
    journal = tmp_path / "journal.jsonl"
    config = tmp_path / "config.toml"
    config.write_text(f'[plugins.wasm]\nmax_module_size = 1024\njournal = "{journal}"\n\n'
                      f'[plugins.site]\nallowed = ["{registry.host}/team/"]\nfallback = "{team.url}"\n')
    contentstore = str(venv / "bin" / "contentstore")

    def run(*args):
        return subprocess.run([contentstore, "--root", str(tmp_path / "store"), "--config", str(config), *args],
                              capture_output=True, text=True,
                              env={**os.environ, "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker")})

    listing = {line.split()[0]: line.split()[1:] for line in run("plugins").stdout.splitlines()[1:]}
    assert listing["wasm"] == ["format+policy+command+events", "1.0.0", "contentstore-examples"]
    assert listing["site"] == ["policy", "1.0.0", "contentstore-examples"]
    assert "wasm-ls" in run("--help").stdout
    assert "wasm-ls" not in run("-p", "no:wasm", "--help").stdout

    # accepted by its artifact type (only while the plugin is on); the journal (a setting)
    # records the event
    off = run("-p", "no:wasm", "pull", module.reference)
    assert off.returncode == 1 and f"artifact of type '{WASM}'" in off.stderr
    pulled = run("pull", module.reference)
    assert pulled.returncode == 0, pulled.stderr
    assert run("wasm-ls").stdout.startswith(f"{module.reference} ")

    # vetoes: nothing is named
    for image, message in ((large, f"{large.reference}: Wasm module of 4104 bytes is over max_module_size (1024)"),
                           (outside, f"pull of {outside.reference} refused: not in [plugins.site] allowed")):
        result = run("pull", image.reference)
        assert (result.returncode, result.stderr) == (1, f"contentstore: error: {message}\n")
        assert image.reference not in run("images").stdout

    # the site policy adds its team endpoint for pulls only
    tool = f"{registry.host}/team/tool:1"
    from_team = run("pull", tool)
    assert from_team.returncode == 0 and f"Pulled from mirror {team.url}" in from_team.stdout
    pushed = run("push", tool, f"{registry.host}/team/tool:2")
    assert pushed.returncode == 0, pushed.stderr
    assert [(url, head(url, "team/tool", "2")) for url in (registry.url, team.url)] == [
        (registry.url, 200), (team.url, 404)]
    copy = run("copy", outside.reference, f"{registry.host}/team/stolen:1")
    assert copy.stderr == f"contentstore: error: copy of {outside.reference} refused: not in [plugins.site] allowed\n"

    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert events == [["pulled", module.reference, module.descriptor.digest],
                      ["pulled", tool, on_team.descriptor.digest],
                      ["pushed", f"{registry.host}/team/tool:2", on_team.descriptor.digest]]

    config.write_text(config.read_text().replace("max_module_size = 1024", 'max_module_size = "big"'))
    bad = run("wasm-ls")
    assert bad.stderr == (f"contentstore: error: {config}:2: [plugins.wasm]: 'max_module_size' must be a "
                          f"positive number of bytes\n")


def head(url: str, repository: str, tag: str) -> int:
    import requests

    return requests.head(f"{url}/v2/{repository}/manifests/{tag}", timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code
