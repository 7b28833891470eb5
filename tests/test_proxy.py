"""Proxies from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) through a
real forward proxy, Debian's tinyproxy, on loopback; its log shows what went through.

requests bypasses a proxy only for the hosts ``NO_PROXY`` names (nothing by default,
loopback included), so registries on 127.0.0.1 are reached through it."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import PASSWORD, USER, write_docker_config

from contentstore.testing import free_port, push_test_image, stop_process

pytestmark = pytest.mark.needs("tinyproxy", "docker-registry", "skopeo")


@dataclass
class Tinyproxy:
    port: int
    process: subprocess.Popen
    log_file: Path

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def requests(self) -> list[str]:
        """The request lines it handled: ``GET http://…`` or ``CONNECT host:port``."""
        return [line.split("): ", 1)[1] for line in self.log.splitlines() if "Request (file descriptor" in line]


@pytest.fixture
def tinyproxy_factory(tmp_path):
    started = []

    def start(basic_auth: tuple[str, str] | None = None) -> Tinyproxy:
        directory = tmp_path / f"tinyproxy-{len(started)}"
        directory.mkdir()
        port = free_port()
        lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 60", f'LogFile "{directory / "tinyproxy.log"}"',
                 "LogLevel Connect", "MaxClients 50", "Allow 127.0.0.1", "DisableViaHeader Yes"]
        if basic_auth:
            lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        (directory / "tinyproxy.conf").write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(["tinyproxy", "-d", "-c", str(directory / "tinyproxy.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        proxy = Tinyproxy(port, process, directory / "tinyproxy.log")
        started.append(proxy)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proxy
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start: {proxy.log}") from None
                time.sleep(0.05)

    yield start
    for proxy in started:
        stop_process(proxy.process)


def pull(ref, root, proxy_url, *options, no_proxy="", expect=0):
    env = {**os.environ, "HTTPS_PROXY": proxy_url, "HTTP_PROXY": proxy_url, "NO_PROXY": no_proxy}
    proc = subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *options, "pull", ref],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == expect, (proc.stdout, proc.stderr)
    return proc


def test_pull_over_http_goes_through_the_proxy(tinyproxy_factory, registry_factory, tmp_path):
    proxy = tinyproxy_factory()
    registry = registry_factory()
    ref = push_test_image(registry, "team/app:1.0")
    pull(ref, tmp_path / "store", proxy.url())
    seen = proxy.requests()
    assert f"HEAD http://{registry.host}/v2/team/app/manifests/1.0 HTTP/1.1" in seen
    assert any(line.startswith(f"GET http://{registry.host}/v2/team/app/blobs/sha256:") for line in seen)
    # The loopback policy tries HTTPS first: a tunnel, which a plain HTTP registry ends.
    assert any(line.startswith(f"CONNECT {registry.host} ") for line in seen)


def test_pull_over_https_is_tunnelled(tinyproxy_factory, tls_registry, pki, tmp_path):
    proxy = tinyproxy_factory()
    ref = push_test_image(tls_registry, "team/app:1.0")
    pki.certs_d(Path(os.environ["XDG_CONFIG_HOME"]) / "contentstore" / "certs.d", tls_registry.host)
    pull(ref, tmp_path / "store", proxy.url(), "-p", "no:insecure")  # verified, through the tunnel
    seen = proxy.requests()
    assert seen and all(line.startswith(f"CONNECT {tls_registry.host} ") for line in seen)


def test_no_proxy_bypasses_it(tinyproxy_factory, registry_factory, tmp_path):
    proxy = tinyproxy_factory()
    registry = registry_factory()
    ref = push_test_image(registry, "team/app:1.0")
    pull(ref, tmp_path / "store", proxy.url(), no_proxy="127.0.0.1")
    assert proxy.requests() == []


def test_proxy_credentials_come_from_its_url_never_from_the_registry(tinyproxy_factory, htpasswd_registry,
                                                                     tmp_path):
    """The registry's credentials (Docker's config.json) go to the registry in
    ``Authorization``; the proxy gets only what its own URL holds, in
    ``Proxy-Authorization``."""
    ref = push_test_image(htpasswd_registry, "team/app:1.0", credentials=(USER, PASSWORD))
    write_docker_config(Path(os.environ["DOCKER_CONFIG"]), htpasswd_registry.host)
    # A proxy that would accept the registry's credentials, were they offered to it.
    same = tinyproxy_factory(basic_auth=(USER, PASSWORD))
    proc = pull(ref, tmp_path / "refused", same.url(), expect=1)
    assert proc.stderr == (f"contentstore: error: {htpasswd_registry.host}: the proxy {same.url()} refused the "
                           f"request (407 Proxy Authentication Required): give its credentials in its URL "
                           f"(HTTPS_PROXY=http://USER:PASSWORD@HOST:PORT), or exempt the registry with "
                           f"NO_PROXY\n")
    assert f"GET http://{htpasswd_registry.host}/v2/ HTTP/1.1" in same.requests()
    # Its own credentials, in its URL: the pull goes through, and the registry's reach it.
    own = tinyproxy_factory(basic_auth=("proxy-user", "proxy-pw"))
    proc = pull(ref, tmp_path / "store", own.url("proxy-user:proxy-pw"))
    assert proc.stdout.splitlines()[-1] == ref
    assert any(line.startswith(f"GET http://{htpasswd_registry.host}/v2/team/app/blobs/") for line in own.requests())
    # An unreachable proxy is one line naming it, its password hidden.
    proc = pull(ref, tmp_path / "down", f"http://proxy-user:proxy-pw@127.0.0.1:{free_port()}", expect=1)
    assert proc.stderr.count("\n") == 1 and "proxy-pw" not in proc.stderr
    assert "cannot reach the registry through the proxy http://***@127.0.0.1:" in proc.stderr
