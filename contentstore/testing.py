"""pytest helpers for contentstore and its plugins: a real registry on loopback.

Enable with ``pytest_plugins = ["contentstore.testing"]`` in a ``conftest.py``. Needs
Debian's ``docker-registry`` (the CNCF distribution registry) and ``skopeo``.

Fixtures:

- ``registry``: a registry shared by the test session, on a free loopback port;
- ``registry_factory``: ``registry_factory(auth=..., schema1=True)`` starts another one
  for the test (stopped, by PID, when the test ends).

Helpers: :func:`build_image` and :func:`build_index` make real OCI images through the
Store API; :func:`push` copies an image to a registry with skopeo, and
:func:`push_test_image` does both.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from contentstore.model import mediatypes as mt
from contentstore.model.manifest import Descriptor

if TYPE_CHECKING:  # pragma: no cover
    from contentstore.store import Store

REGISTRY_BINARY = "docker-registry"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen | None = None, timeout: float = 30) -> None:
    """Wait until ``url`` answers at all (any status), or fail with the process's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before answering {url}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process started by a fixture, by its PID: TERM, then KILL."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Server:
    """A process a test started, listening on ``host_ip:port``; stopped by its PID."""

    port: int
    process: subprocess.Popen
    host_ip: str = "127.0.0.1"

    @property
    def host(self) -> str:
        return f"{self.host_ip}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Registry(Server):
    """A running ``docker-registry`` on ``127.0.0.1:<port>``: plain HTTP, or HTTPS when
    its ``extra`` settings give ``http.tls``."""

    directory: Path = field(kw_only=True)
    auth: dict | None = field(default=None, kw_only=True)
    extra: dict = field(default_factory=dict, kw_only=True)

    @property
    def tls(self) -> bool:
        return "tls" in (self.extra.get("http") or {})

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log(self) -> str:
        return (self.directory / "registry.log").read_text(errors="replace")


def _yaml(value, indent: int = 0) -> str:
    """Enough YAML for a registry config (nested dicts, lists of scalars, scalars)."""
    pad = "  " * indent
    lines = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines.append(_yaml(item, indent + 1))
        elif isinstance(item, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in item)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(item)}")
    return "\n".join(lines)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _merge(base: dict, extra: dict) -> dict:
    """``extra`` merged into ``base``, table by table (``{"http": {"tls": …}}`` keeps the
    address)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def start_registry(directory: Path, auth: dict | None = None, schema1: bool = False,
                   extra: dict | None = None) -> Registry:
    """Start a registry storing under ``directory``.

    :param auth: the registry's ``auth`` section, e.g. ``{"htpasswd": {...}}`` or
        ``{"token": {...}}``.
    :param schema1: accept schema1 manifests (``compatibility.schema1.enabled``).
    :param extra: settings merged into its configuration, table by table: e.g.
        ``{"http": {"tls": {"certificate": CERT, "key": KEY, "clientcas": [CA]}}}`` for
        HTTPS (and client certificates).
    """
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RuntimeError(f"{REGISTRY_BINARY} is not installed (Debian package docker-registry)")
    directory.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for _ in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(directory / "data")},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if schema1:
            config["compatibility"] = {"schema1": {"enabled": True}}
        if auth:
            config["auth"] = auth
        config = _merge(config, extra or {})
        config_path = directory / "config.yml"
        config_path.write_text(_yaml(config) + "\n")
        log = open(directory / "registry.log", "ab")
        process = subprocess.Popen([binary, "serve", str(config_path)], stdout=log, stderr=log,
                                   start_new_session=True)
        log.close()
        try:
            # Plain HTTP also while it serves HTTPS: Go's server answers it with a 400.
            wait_for_http(f"http://127.0.0.1:{port}/v2/", process)
            return Registry(port, process, directory=directory, auth=auth, extra=extra or {})
        except RuntimeError as exc:
            stop_process(process)
            last_error = exc
    raise RuntimeError(f"the registry did not start: {last_error}")


def push(source: str, registry: Registry | str, destination: str, *extra_args: str,
         credentials: tuple[str, str] | None = None) -> str:
    """``skopeo copy`` ``source`` (a transport:reference, e.g. ``oci:DIR:tag``) to
    ``docker://REGISTRY/destination``; return the destination reference."""
    host = registry.host if isinstance(registry, Registry) else registry
    dest = f"{host}/{destination}"
    args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra_args]
    if credentials:
        args.append(f"--dest-creds={credentials[0]}:{credentials[1]}")
    subprocess.run([*args, source, f"docker://{dest}"], check=True, capture_output=True, text=True)
    return dest


# -- test images ----------------------------------------------------------------------------


def make_layer(files: dict[str, bytes | str], compress: bool = True) -> tuple[bytes, str]:
    """A layer blob holding ``files`` (path -> content; a str ending in '/' is a dir).

    Returns the blob and its diffID (the digest of the uncompressed tar).
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mtime = 1_700_000_000
            if path.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            data = content.encode() if isinstance(content, str) else content
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    blob = gzip.compress(tar_bytes, mtime=0) if compress else tar_bytes
    return blob, diff_id


def build_image(store: "Store", ref: str | None, files: dict | None = None, platform=("linux", "amd64", None),
                layers: list[dict] | None = None) -> Descriptor:
    """Put an OCI image (config, layers, manifest) into ``store`` and tag it ``ref``."""
    layer_descriptors, diff_ids = [], []
    for layer_files in layers if layers is not None else [files or {"hello.txt": "hello\n"}]:
        blob, diff_id = make_layer(layer_files)
        info = store.put(blob)
        layer_descriptors.append({"mediaType": mt.OCI_LAYER_GZIP, "digest": info.digest, "size": info.size})
        diff_ids.append(diff_id)
    os_name, arch, variant = platform
    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000)),
        "architecture": arch, "os": os_name,
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "contentstore tests"} for _ in diff_ids],
    }
    if variant:
        config["variant"] = variant
    config_bytes = json.dumps(config).encode()
    config_info = store.put(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": config_info.digest, "size": config_info.size},
        "layers": layer_descriptors,
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    info = store.put(manifest_bytes)
    descriptor = Descriptor(mt.OCI_MANIFEST, info.digest, info.size)
    if ref:
        store.tag(info.digest, ref)
    return descriptor


def build_index(store: "Store", ref: str, platforms: list[tuple]) -> Descriptor:
    """An OCI index with one single-layer image per platform, tagged ``ref``."""
    entries = []
    for platform in platforms:
        desc = build_image(store, None, {f"{'-'.join(p for p in platform if p)}.txt": str(platform)},
                           platform=platform)
        os_name, arch, variant = platform
        entry = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size,
                 "platform": {"os": os_name, "architecture": arch, **({"variant": variant} if variant else {})}}
        entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    info = store.put(json.dumps(index).encode())
    store.tag(info.digest, ref)
    return Descriptor(mt.OCI_INDEX, info.digest, info.size)


def image_from_layers(store: "Store", ref: str | None, layers: list[tuple[bytes, str, str]],
                      platform=("linux", "amd64")) -> Descriptor:
    """Put an OCI image made of ready layer blobs into ``store``; tag it ``ref``.

    :param layers: ``(blob, diff_id, media_type)`` for each layer, bottom first.
    """
    descriptors = []
    for blob, _, media_type in layers:
        info = store.put(blob)
        descriptors.append({"mediaType": media_type, "digest": info.digest, "size": info.size})
    config = json.dumps({"architecture": platform[1], "os": platform[0], "rootfs": {
        "type": "layers", "diff_ids": [diff_id for _, diff_id, _ in layers]}}).encode()
    config_info = store.put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": config_info.digest,
                                      "size": config_info.size},
                           "layers": descriptors}).encode()
    info = store.put(manifest)
    if ref:
        store.tag(info.digest, ref)
    return Descriptor(mt.OCI_MANIFEST, info.digest, info.size)


class ProgressRecorder(list):
    """A progress callback that keeps every line, as the CLI would print them."""

    def __call__(self, event) -> None:
        self.append(event.status if event.id is None else f"{event.id}: {event.status}")


def push_test_image(registry: Registry | str, destination: str, files: dict | None = None,
                    *skopeo_args: str, credentials: tuple[str, str] | None = None) -> str:
    """Build a one-layer image holding ``files`` and push it to ``registry`` as
    ``destination`` (``repo:tag``); extra arguments go to ``skopeo copy``
    (``--format v2s2``, ``--dest-compress-format zstd`` …). Returns the reference."""
    from contentstore.store import Store

    with tempfile.TemporaryDirectory(prefix="contentstore-test-image-") as scratch:
        source = Store(Path(scratch) / "layout")
        build_image(source, "docker.io/library/test-image:latest", files or {"hello.txt": "hello\n"})
        return push(f"oci:{source.root}:docker.io/library/test-image:latest", registry, destination,
                    *skopeo_args, credentials=credentials)


# -- pytest fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A plain-HTTP registry on loopback for the whole session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture
def registry_factory(tmp_path):
    """Start registries with their own settings; each is stopped when the test ends."""
    started: list[Registry] = []

    def start(auth: dict | None = None, schema1: bool = False, extra: dict | None = None) -> Registry:
        reg = start_registry(Path(tempfile.mkdtemp(dir=tmp_path, prefix="registry-")), auth, schema1, extra)
        started.append(reg)
        return reg

    yield start
    for reg in started:
        reg.stop()
