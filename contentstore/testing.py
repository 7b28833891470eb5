"""pytest helpers for contentstore and its plugins, as ``pytester`` is for pytest's and
``tox.pytest`` for tox's: a real registry on loopback, the command line run in a private
home, images and OCI 1.1 artifacts pushed to the registry, and plugin managers with the
plugins you choose.

Enable with ``pytest_plugins = ["contentstore.testing"]`` in a ``conftest.py``. The
registry needs Debian's ``docker-registry`` (the CNCF distribution registry);
:func:`push` and :func:`push_test_image` need ``skopeo``.

Fixtures:

- ``registry``: a registry shared by the test session, on a free loopback port;
- ``registry_factory``: ``registry_factory(auth=..., schema1=True)`` starts another one
  for the test (stopped, by PID, when the test ends);
- ``contentstore_cli``: a :class:`CommandLine`: ``contentstore_cli("pull", ref)`` runs
  the command line in-process with a private store root, configuration file and
  ``HOME`` and returns a :class:`RunResult` (``ret``, ``out``, ``err``); in-process
  plugins given to it with ``register`` are loaded besides the installed ones and obey
  ``-p no:NAME`` as they do.

Helpers: :func:`push_image` and :func:`push_artifact` upload an image, or an OCI 1.1
artifact (with a ``subject``, listed under the referrers tag schema), to a registry and
return its reference and descriptor; :func:`plugin_manager` builds the plugins with
chosen ones added or blocked; :func:`build_image` and :func:`build_index` make real OCI
images through the Store API; :func:`push` copies an image to a registry with skopeo,
and :func:`push_test_image` does both.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

import pytest
import requests

from contentstore.model import artifact as artifacts
from contentstore.model import digest as digests
from contentstore.model import mediatypes as mt
from contentstore.model.manifest import Descriptor

if TYPE_CHECKING:  # pragma: no cover
    from contentstore.plugin.manager import Plugins
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


# -- pushing over the registry API -------------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    """What :func:`push_image` and :func:`push_artifact` put in a registry.

    :ivar reference: ``HOST/REPOSITORY:TAG``, or ``HOST/REPOSITORY@DIGEST`` when untagged.
    :ivar descriptor: the manifest's descriptor (a ``subject`` for an artifact).
    """

    reference: str
    descriptor: Descriptor


def _registry_url(registry: "Registry | str") -> tuple[str, str]:
    host = registry.host if isinstance(registry, Registry) else registry
    return host, registry.url if isinstance(registry, Registry) else f"http://{host}"


def upload_blob(registry: "Registry | str", repository: str, data: bytes,
                credentials: tuple[str, str] | None = None) -> Descriptor:
    """Upload ``data`` to ``repository`` (one ``POST`` and one ``PUT``); its descriptor
    (media type ``application/octet-stream``)."""
    _, url = _registry_url(registry)
    digest = digests.of_bytes(data)
    start = requests.post(f"{url}/v2/{repository}/blobs/uploads/", auth=credentials, timeout=30)
    start.raise_for_status()
    location = start.headers["Location"]
    location = location if location.startswith("http") else url + location
    separator = "&" if "?" in location else "?"
    requests.put(f"{location}{separator}digest={digest}", data=data, auth=credentials, timeout=30,
                 headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return Descriptor(artifacts.DEFAULT_FILE_TYPE, digest, len(data))


def upload_manifest(registry: "Registry | str", repository: str, reference: str, data: bytes, media_type: str,
                    credentials: tuple[str, str] | None = None) -> Descriptor:
    """``PUT`` a manifest under ``reference`` (a tag or its digest); its descriptor."""
    _, url = _registry_url(registry)
    response = requests.put(f"{url}/v2/{repository}/manifests/{reference}", data=data, auth=credentials,
                            headers={"Content-Type": media_type}, timeout=30)
    response.raise_for_status()
    return Descriptor(media_type, digests.of_bytes(data), len(data))


def push_image(registry: "Registry | str", destination: str, files: dict | None = None,
               platform=("linux", "amd64", None), credentials: tuple[str, str] | None = None) -> Pushed:
    """Build a one-layer OCI image holding ``files`` and upload it to ``registry`` as
    ``destination`` (``repo:tag``) with the registry API (no skopeo); return its reference
    and descriptor."""
    from contentstore.store import Store

    host, _ = _registry_url(registry)
    repository, _, tag = destination.partition(":")
    with tempfile.TemporaryDirectory(prefix="contentstore-test-image-") as scratch:
        source = Store(Path(scratch) / "layout")
        built = build_image(source, None, files or {"hello.txt": "hello\n"}, platform=platform)
        manifest = source.manifest(built)
        for blob in manifest.references():
            with source.open(blob.digest) as f:
                upload_blob(registry, repository, f.read(), credentials)
        descriptor = upload_manifest(registry, repository, tag or built.digest, manifest.raw, mt.OCI_MANIFEST,
                                     credentials)
    return Pushed(f"{host}/{repository}:{tag}" if tag else f"{host}/{repository}@{descriptor.digest}", descriptor)


def push_artifact(registry: "Registry | str", destination: str, files: Mapping[str, bytes | str] | None = None,
                  artifact_type: str = artifacts.DEFAULT_ARTIFACT_TYPE, media_type: str = artifacts.DEFAULT_FILE_TYPE,
                  subject: Descriptor | None = None, annotations: Mapping[str, str] | None = None,
                  credentials: tuple[str, str] | None = None) -> Pushed:
    """Upload an OCI 1.1 artifact: the empty config, ``artifactType``, one layer per file
    (``name -> content``, titled ``name``, of ``media_type``) and, with ``subject``, the
    manifest it refers to.

    ``destination`` is ``repo`` or ``repo:tag``. With a ``subject`` the artifact is also
    listed in the repository's referrers index under the referrers tag schema
    (``sha256-<hex>`` of the subject), as clients do for registries without the referrers
    API (the distribution registry 2.8), so ``store.pull(f"{repo}:sha256-<hex>",
    all_platforms=True)`` or a referrers client finds it.
    """
    host, url = _registry_url(registry)
    repository, _, tag = destination.partition(":")
    upload_blob(registry, repository, artifacts.EMPTY_CONFIG, credentials)
    layers = []
    for name, content in (files or {}).items():
        blob = upload_blob(registry, repository, content.encode() if isinstance(content, str) else content,
                           credentials)
        layers.append(Descriptor(media_type, blob.digest, blob.size,
                                 annotations={artifacts.TITLE_ANNOTATION: name}))
    if not layers:  # the spec's empty layer
        upload_blob(registry, repository, artifacts.EMPTY_CONFIG, credentials)
    raw = artifacts.artifact_manifest(layers, artifact_type, subject, dict(annotations or {}))
    descriptor = upload_manifest(registry, repository, tag or digests.of_bytes(raw), raw, mt.OCI_MANIFEST,
                                 credentials)
    listed = Descriptor(mt.OCI_MANIFEST, descriptor.digest, descriptor.size,
                        annotations=dict(annotations or {}), artifact_type=artifact_type)
    if subject is not None:
        fallback_tag = artifacts.referrers_tag(subject.digest)
        current = requests.get(f"{url}/v2/{repository}/manifests/{fallback_tag}", auth=credentials, timeout=30,
                               headers={"Accept": mt.OCI_INDEX})
        referrers = []
        if current.status_code == 200:
            referrers = [Descriptor.from_json(entry) for entry in current.json().get("manifests", [])
                         if entry.get("digest") != descriptor.digest]
        elif current.status_code != 404:
            current.raise_for_status()
        upload_manifest(registry, repository, fallback_tag, artifacts.referrers_index([*referrers, listed]),
                        mt.OCI_INDEX, credentials)
    reference = f"{host}/{repository}:{tag}" if tag else f"{host}/{repository}@{descriptor.digest}"
    return Pushed(reference, listed)


# -- plugin managers and the command line ----------------------------------------------------


def plugin_manager(plugins: Mapping[str, object] | Iterable[tuple[str, object]] = (), block: Iterable[str] = (),
                   entry_points: bool = True, warn=None) -> "Plugins":
    """The plugins a store or the command line would use, with ``plugins`` (``name ->
    module or object``) registered besides the installed ones (none with
    ``entry_points=False``) and the names in ``block`` switched off, as ``-p no:NAME``
    does (pluggy's ``set_blocked``: a blocked name is refused, in-process or installed).

    ``warn`` is told about each plugin that fails to load (default: a logging warning);
    ``.failures`` lists them.
    """
    from contentstore.plugin import manager as pluginmanager

    pairs = list(plugins.items()) if isinstance(plugins, Mapping) else list(plugins)
    return pluginmanager.create(disabled=block, load_entry_points=entry_points, extra_plugins=pairs, warn=warn)


@dataclass(frozen=True)
class RunResult:
    """What a command-line run gave: exit status and the text it printed."""

    ret: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class CommandLine:
    """Runs ``contentstore`` in a private place: its own store root (``root``),
    configuration file (``config``, empty until :meth:`write_config`) and ``HOME``
    (``home``, where Docker's ``config.json`` goes, ``$DOCKER_CONFIG`` included).

    Calling it runs the command line in-process (``main``), with the plugins installed
    plus those given to :meth:`register`; :meth:`subprocess` runs ``python -m
    contentstore`` instead, with the installed plugins only, as a user would.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.root = directory / "root"
        self.config = directory / "config.toml"
        self.home = directory / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config.write_text("")
        self.plugins: list[tuple[str, object]] = []

    def register(self, plugin: object, name: str) -> None:
        """Load ``plugin`` (a module or an object with hook functions) as ``name`` in every
        in-process run, besides the installed plugins."""
        self.plugins.append((name, plugin))

    def write_config(self, text: str) -> Path:
        """Write the configuration file every run uses (TOML)."""
        self.config.write_text(text)
        return self.config

    @property
    def environment(self) -> dict[str, str]:
        return {"HOME": str(self.home), "DOCKER_CONFIG": str(self.home / ".docker"),
                "CONTENTSTORE_ROOT": str(self.root), "CONTENTSTORE_CONFIG": str(self.config),
                "XDG_CONFIG_HOME": str(self.home / ".config"), "XDG_DATA_HOME": str(self.home / ".local/share")}

    @contextlib.contextmanager
    def _isolated(self):
        saved = dict(os.environ)
        os.environ.update(self.environment)
        os.environ.pop("CONTENTSTORE_DISABLE_PLUGINS", None)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def __call__(self, *args: str, input: str | bytes | None = None) -> RunResult:
        """Run ``contentstore ARGS`` in-process; ``input`` is its standard input."""
        from contentstore import cli

        data = input.encode() if isinstance(input, str) else (input or b"")
        streams = [io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")]
        streams += [io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2)]
        saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = streams
        try:
            with self._isolated():
                try:
                    ret = cli.main([str(arg) for arg in args], extra_plugins=list(self.plugins))
                except SystemExit as exit:  # usage errors, --help, --version
                    ret = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 2)
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
            for stream in streams[1:]:
                stream.flush()
        out, err = (stream.buffer.getvalue().decode("utf-8", "replace") for stream in streams[1:])
        return RunResult(ret, out, err)

    def subprocess(self, *args: str, input: str | bytes | None = None, timeout: float = 300) -> RunResult:
        """Run ``python -m contentstore ARGS`` (installed plugins only), as a user would."""
        env = {**os.environ, **self.environment}
        env.pop("CONTENTSTORE_DISABLE_PLUGINS", None)
        proc = subprocess.run([sys.executable, "-m", "contentstore", *map(str, args)], env=env, timeout=timeout,
                              input=input.encode() if isinstance(input, str) else input, capture_output=True)
        return RunResult(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                         proc.stderr.decode("utf-8", "replace"))

    def store(self) -> "Store":
        """The store the runs use, with the same plugins and configuration, to look at."""
        from contentstore.store import Store

        return Store(self.root, plugins=plugin_manager(self.plugins), config=self.config)


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


@pytest.fixture
def contentstore_cli(tmp_path):
    """Run the command line in a private root, configuration and home (a :class:`CommandLine`)."""
    return CommandLine(tmp_path / "contentstore-cli")
