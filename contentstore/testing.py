"""pytest helpers for contentstore and its plugins: a real registry on loopback.

Enable with ``pytest_plugins = ["contentstore.testing"]`` in a ``conftest.py``. Needs
Debian's ``docker-registry`` (the CNCF distribution registry) and ``skopeo``.

Fixtures:

- ``registry``: a registry shared by the test session, on a free loopback port;
- ``registry_factory``: ``registry_factory(auth=..., schema1=True)`` starts another one
  for the test (stopped, by PID, when the test ends).

Helpers: :func:`push` copies an image to a registry with skopeo.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

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
class Registry:
    """A running ``docker-registry`` on ``127.0.0.1:<port>``, plain HTTP."""

    directory: Path
    port: int
    process: subprocess.Popen
    auth: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        stop_process(self.process)

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


def start_registry(directory: Path, auth: dict | None = None, schema1: bool = False,
                   extra: dict | None = None) -> Registry:
    """Start a registry storing under ``directory``.

    :param auth: the registry's ``auth`` section, e.g. ``{"htpasswd": {...}}`` or
        ``{"token": {...}}``.
    :param schema1: accept schema1 manifests (``compatibility.schema1.enabled``).
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
        config.update(extra or {})
        config_path = directory / "config.yml"
        config_path.write_text(_yaml(config) + "\n")
        log = open(directory / "registry.log", "ab")
        process = subprocess.Popen([binary, "serve", str(config_path)], stdout=log, stderr=log,
                                   start_new_session=True)
        log.close()
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v2/", process)
            return Registry(directory, port, process, auth, extra or {})
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
