"""Fixtures for the real servers the pull tests put around a registry: a fault proxy,
a token server, htpasswd; and helpers to put images into a registry."""

import base64
import datetime
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests

from contentstore import Store
from contentstore.testing import Server, build_image, push, stop_process

HERE = Path(__file__).parent


def _start_script(script: str, *args: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, str(HERE / script), *args],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = process.stdout.readline().strip()
    if not line.isdigit():
        stop_process(process)
        raise RuntimeError(f"{script} did not start")
    return process, int(line)


@dataclass
class Proxy(Server):
    """The fault proxy (faultproxy.py) in front of a registry."""

    def faults(self, *rules: dict) -> None:
        requests.post(f"{self.url}/__faults__", data=json.dumps(list(rules)), timeout=10).raise_for_status()

    def log(self) -> list[dict]:
        return requests.get(f"{self.url}/__log__", timeout=10).json()

    def sent(self, match: str, method: str = "GET") -> int:
        return sum(e["sent"] for e in self.log() if e["method"] == method and match in e["path"])

    def requests(self, match: str = "", method: str | None = None) -> list[dict]:
        return [e for e in self.log() if match in e["path"] and (method is None or e["method"] == method)]


@pytest.fixture
def proxy_factory():
    started = []

    def start(upstream: str, host: str = "127.0.0.1", upstream_auth: str | None = None) -> Proxy:
        args = ["--host", host, "--upstream", upstream]
        if upstream_auth:
            args += ["--upstream-auth", upstream_auth]
        process, port = _start_script("faultproxy.py", *args)
        started.append(Proxy(port, process, host))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


# -- auth --------------------------------------------------------------------------------------

USER, PASSWORD = "alice", "s3cret-pw"


def write_docker_config(directory: Path, registry_host: str, user: str = USER, password: str = PASSWORD) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {registry_host: {"auth": auth}}}))


@pytest.fixture
def htpasswd_registry(registry_factory, tmp_path):
    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{USER}:{hashed}\n")
    return registry_factory(auth={"htpasswd": {"realm": "basic-realm", "path": str(path)}})


@dataclass
class TokenRegistry:
    """A registry in ``auth: token`` mode and the token server (tokenserver.py) it trusts."""

    registry: object
    server: Server

    @property
    def token_url(self) -> str:
        return self.server.url

    def log(self) -> list[dict]:
        return requests.get(f"{self.token_url}/__log__", timeout=10).json()


@pytest.fixture
def token_registry(registry_factory, tmp_path):
    key_path, cert_path = _token_issuer(tmp_path)
    process, port = _start_script("tokenserver.py", "--key", str(key_path), "--cert", str(cert_path),
                                  "--user", f"{USER}:{PASSWORD}", "--issuer", "contentstore-test-issuer")
    server = Server(port, process)
    token_url = server.url
    try:
        reg = registry_factory(auth={"token": {
            "realm": f"{token_url}/token", "service": "contentstore-test-registry",
            "issuer": "contentstore-test-issuer", "rootcertbundle": str(cert_path)}})
        yield TokenRegistry(reg, server)
    finally:
        server.stop()


def _token_issuer(directory: Path) -> tuple[Path, Path]:
    """A key and self-signed certificate for a token server; their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contentstore test token issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "token.key", directory / "token.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@dataclass
class RealmTokenRegistry(TokenRegistry):
    """A token registry whose challenge names a realm the test chose, and ``uploader``,
    a second registry on the same storage whose realm is the token server itself on
    loopback: skopeo pushes through it (it cannot reach a made-up realm name)."""

    uploader: object = None


@pytest.fixture
def token_registry_factory(tmp_path):
    """``start(realm_base)``: a token server, and a registry in ``auth: token`` mode
    whose challenge names ``realm_base(token server URL) + "/token"`` as its realm (the
    token server under another host name, or behind a fault proxy). Returns a
    :class:`RealmTokenRegistry`."""
    from contentstore.testing import start_registry

    started = []

    def start(realm_base=lambda url: url) -> RealmTokenRegistry:
        directory = tmp_path / f"realm-registry-{len(started)}"
        key_path, cert_path = _token_issuer(directory / "issuer")
        process, port = _start_script("tokenserver.py", "--key", str(key_path), "--cert", str(cert_path),
                                      "--user", f"{USER}:{PASSWORD}", "--issuer", "contentstore-test-issuer")
        server = Server(port, process)
        started.append(server)

        def auth(realm):
            return {"token": {"realm": f"{realm}/token", "service": "contentstore-test-registry",
                              "issuer": "contentstore-test-issuer", "rootcertbundle": str(cert_path)}}

        uploader = start_registry(directory / "uploader", auth(server.url),
                                  extra={"storage": {"filesystem": {"rootdirectory": str(directory / "data")},
                                                     "delete": {"enabled": True}}})
        started.append(uploader)
        reg = start_registry(directory / "registry", auth(realm_base(server.url)),
                             extra={"storage": {"filesystem": {"rootdirectory": str(directory / "data")},
                                                "delete": {"enabled": True}}})
        started.append(reg)
        return RealmTokenRegistry(reg, server, uploader)

    yield start
    for process in reversed(started):
        process.stop()


# -- images --------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path):
    """A scratch OCI layout (a contentstore root) to build images in before pushing."""
    return Store(tmp_path / "source")


def oci_ref(store: Store, name: str) -> str:
    """skopeo's name for a reference in a contentstore root."""
    return f"oci:{store.root}:{name}"


def upload(registry_url: str, repository: str, blobs: list[bytes], manifest: bytes, media_type: str,
           tag: str, auth=None) -> str:
    """Put blobs and a manifest into a registry with the plain distribution API."""
    import hashlib
    for blob in blobs:
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        start = requests.post(f"{registry_url}/v2/{repository}/blobs/uploads/", auth=auth, timeout=30)
        start.raise_for_status()
        location = start.headers["Location"]
        location = location if location.startswith("http") else registry_url + location
        sep = "&" if "?" in location else "?"
        requests.put(f"{location}{sep}digest={digest}", data=blob, auth=auth, timeout=30,
                     headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    response = requests.put(f"{registry_url}/v2/{repository}/manifests/{tag}", data=manifest, auth=auth,
                            headers={"Content-Type": media_type}, timeout=30)
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


#: The size of ``big_image``'s layer: big enough to cut, throttle and resume.
BIG = 6 << 20


@pytest.fixture
def big_image(registry, source):
    """An image with one ~6 MiB incompressible layer in the registry; returns (repo, layer)."""
    def make(name):
        build_image(source, f"src/{name}", {"big.bin": os.urandom(BIG), "small.txt": "x\n"})
        push(oci_ref(source, f"docker.io/src/{name}:latest"), registry, f"team/{name}:1")
        image = source.image(f"src/{name}")
        return f"team/{name}", image.layers[0]
    return make
