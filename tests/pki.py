"""A test PKI (a registry CA with a server certificate for 127.0.0.1, a client CA with a
client certificate, a stranger's client certificate) and registries serving HTTPS with
it, with or without client certificates (``http.tls.clientcas``)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key, path: Path, password: bytes | None = None) -> Path:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


def _write_cert(cert, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _validity(builder):
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))


def make_ca(name: str):
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return key, _validity(builder).sign(key, hashes.SHA256())


def make_leaf(ca, name: str, server: bool, names: list | None = None):
    ca_key, ca_cert = ca
    key = _key()
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, _validity(builder).sign(ca_key, hashes.SHA256())


@dataclass
class PKI:
    directory: Path
    ca: Path             # the registry's CA (what a client must trust)
    server_cert: Path    # for IP 127.0.0.1 only (so "localhost" does not match)
    server_key: Path
    client_ca: Path      # what the registry trusts for client certificates
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA the registry does not trust
    stranger_key: Path
    encrypted_key: Path  # client_cert's key, encrypted

    def certs_d(self, base: Path, host: str, ca: bool = True, client: bool = False) -> Path:
        """Fill ``base/HOST`` as Docker's certs.d: ``ca.crt``, ``client.cert``/``client.key``."""
        folder = base / host
        folder.mkdir(parents=True, exist_ok=True)
        if ca:
            (folder / "ca.crt").write_bytes(self.ca.read_bytes())
        if client:
            (folder / "client.cert").write_bytes(self.client_cert.read_bytes())
            (folder / "client.key").write_bytes(self.client_key.read_bytes())
        return folder


def make_pki(directory: Path) -> PKI:
    directory.mkdir(parents=True, exist_ok=True)
    registry_ca = make_ca("contentstore test registry CA")
    server_key, server_cert = make_leaf(registry_ca, "registry", True,
                                        [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_ca = make_ca("contentstore test client CA")
    client_key, client_cert = make_leaf(client_ca, "a client", False)
    stranger_key, stranger_cert = make_leaf(make_ca("someone else's CA"), "a stranger", False)
    return PKI(
        directory=directory,
        ca=_write_cert(registry_ca[1], directory / "ca.crt"),
        server_cert=_write_cert(server_cert, directory / "server.crt"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_ca=_write_cert(client_ca[1], directory / "client-ca.crt"),
        client_cert=_write_cert(client_cert, directory / "client.cert"),
        client_key=_write_key(client_key, directory / "client.key"),
        stranger_cert=_write_cert(stranger_cert, directory / "stranger.cert"),
        stranger_key=_write_key(stranger_key, directory / "stranger.key"),
        encrypted_key=_write_key(client_key, directory / "encrypted.key", b"secret"),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_settings(pki: PKI, client_certificates: bool = False) -> dict:
    """The ``extra`` settings of a registry serving HTTPS with the test PKI."""
    tls = {"certificate": str(pki.server_cert), "key": str(pki.server_key)}
    if client_certificates:
        tls["clientcas"] = [str(pki.client_ca)]
    return {"http": {"tls": tls}}


@pytest.fixture
def tls_registry(registry_factory, pki):
    """A registry serving HTTPS with a certificate from the test CA."""
    return registry_factory(extra=tls_settings(pki))


@pytest.fixture
def mtls_registry(registry_factory, pki):
    """A registry serving HTTPS that requires a client certificate from the client CA."""
    return registry_factory(extra=tls_settings(pki, client_certificates=True))


def client_cert_dir(pki: PKI, directory: Path) -> Path:
    """A folder for ``skopeo --dest-cert-dir``: the client pair."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "client.cert").write_bytes(pki.client_cert.read_bytes())
    (directory / "client.key").write_bytes(pki.client_key.read_bytes())
    return directory
