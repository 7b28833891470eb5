"""TLS the Docker way, against real registries serving HTTPS: one with a certificate
from a test CA, one that also requires client certificates (``http.tls.clientcas``).

Loopback registries are unverified by default (the ``insecure`` policy, as Docker), so
the tests that check verification run with ``-p no:insecure``: only the verified HTTPS
endpoint is left, as for any other host. The user's certs.d is found through
``$XDG_CONFIG_HOME``, as platformdirs finds it for users.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pki import client_cert_dir

from contentstore import Store
from contentstore.config import Config, RegistryConfig
from contentstore.errors import CertificateError, ConfigError
from contentstore.model.endpoint import Endpoint
from contentstore.plugin import manager as pluginmanager
from contentstore.remote import tls
from contentstore.testing import push_test_image

pytestmark = pytest.mark.needs("docker-registry", "skopeo")


def user_certs_d() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "contentstore" / "certs.d"


def cli(*args, root, expect=0, env=None, input=None):
    proc = subprocess.run([sys.executable, "-m", "contentstore", "--root", str(root), *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, input=input)
    assert proc.returncode == expect, (proc.stdout, proc.stderr)
    return proc


def one_error_line(proc) -> str:
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("contentstore: error: "), proc.stderr
    return proc.stderr.strip()


def verified_store(path: Path, config: Config | None = None) -> Store:
    """A store whose pulls check certificates also on loopback."""
    return Store(path, plugins=pluginmanager.create(disabled={"insecure"}), config=config)


# -- where settings come from ------------------------------------------------------------------


def test_certs_d_folders_first_one_with_the_host_wins(tmp_path, pki):
    user, podman, docker = tmp_path / "user", tmp_path / "containers", tmp_path / "docker"
    pki.certs_d(podman, "registry.internal:5000", client=True)
    pki.certs_d(docker, "registry.internal:5000")
    (docker / "registry.internal:5000" / "other.crt").write_bytes(pki.client_ca.read_bytes())
    settings = tls.for_host("registry.internal:5000", dirs=[user, podman, docker])
    assert settings.certs_dir == podman / "registry.internal:5000"  # not merged with docker's
    assert settings.ca_files == (podman / "registry.internal:5000" / "ca.crt",)
    assert settings.client_pair == (podman / "registry.internal:5000" / "client.cert",
                                    podman / "registry.internal:5000" / "client.key")
    # A host is HOST[:PORT] exactly, as Docker names its folders.
    assert tls.for_host("registry.internal", dirs=[user, podman, docker]).ca_files == ()
    # The default search path: the user config directory's certs.d, then /etc.
    assert tls.certs_dirs() == [user_certs_d(), Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d")]


def test_configured_files_override_certs_d(tmp_path, pki):
    pki.certs_d(tmp_path, "registry.internal", client=True)
    config = Config(path=tmp_path / "config.toml", registries={
        "registry.internal": RegistryConfig(ca_file=tmp_path / "internal-ca.pem")})
    settings = tls.for_host("registry.internal", config, dirs=[tmp_path])
    assert settings.ca_files == (tmp_path / "internal-ca.pem",) and settings.ca_from_config
    assert settings.client_cert == tmp_path / "registry.internal" / "client.cert"  # the pair still from certs.d
    config = Config(registries={"registry.internal": RegistryConfig(client_cert=pki.client_cert,
                                                                    client_key=pki.client_key)})
    assert tls.for_host("registry.internal", config, dirs=[tmp_path]).client_pair == (pki.client_cert,
                                                                                       pki.client_key)


def test_docker_hub_endpoint_uses_the_registry_name_too(tmp_path, pki, monkeypatch):
    pki.certs_d(user_certs_d(), "docker.io")
    hub = tls.for_endpoint(Endpoint("https://registry-1.docker.io", "docker.io"))
    assert hub.ca_files == (user_certs_d() / "docker.io" / "ca.crt",)
    mirror = tls.for_endpoint(Endpoint("https://mirror.internal", "docker.io", mirror=True))
    assert mirror.ca_files == ()  # a mirror is its own host


def test_certs_d_mistakes_are_one_line_errors(tmp_path, pki):
    folder = tmp_path / "registry.internal"
    folder.mkdir()
    (folder / "client.cert").write_bytes(pki.client_cert.read_bytes())
    with pytest.raises(ConfigError, match=r"missing key client.key for client certificate .*client.cert "
                                          r"\(CA certificates end in .crt\)"):
        tls.for_host("registry.internal", dirs=[tmp_path])
    (folder / "client.cert").rename(folder / "client.key")
    with pytest.raises(ConfigError, match="missing client certificate client.cert for key"):
        tls.for_host("registry.internal", dirs=[tmp_path])
    (folder / "client.key").unlink()
    (folder / "ca.crt").write_text("not a certificate\n")
    settings = tls.for_host("registry.internal", dirs=[tmp_path])
    with pytest.raises(ConfigError, match=r"registry.internal: cannot load CA certificate .*ca.crt"):
        settings.context()
    encrypted = tls.TLSSettings("registry.internal", client_cert=pki.client_cert, client_key=pki.encrypted_key)
    with pytest.raises(ConfigError, match=r"cannot use client certificate .*client.cert with key "
                                          r".*encrypted.key") as info:
        encrypted.context()  # and no password prompt
    assert "\n" not in str(info.value)
    mismatched = tls.TLSSettings("registry.internal", client_cert=pki.client_cert, client_key=pki.stranger_key)
    with pytest.raises(ConfigError, match="cannot use client certificate"):
        mismatched.context()


# -- a registry with a certificate from the test CA ---------------------------------------------


def test_unknown_ca_fails_in_one_line_saying_what_to_configure(tls_registry, tmp_path):
    ref = push_test_image(tls_registry, "team/app:1.0")
    proc = cli("-p", "no:insecure", "pull", ref, root=tmp_path / "store", expect=1)
    line = one_error_line(proc)
    host = tls_registry.host
    assert f"{host}: TLS certificate not trusted" in line and "unable to get local issuer certificate" in line
    assert f"{user_certs_d() / host}/" in line and f"/etc/docker/certs.d/{host}/" in line
    assert f'ca_file in [registry."{host}"] of {os.environ["CONTENTSTORE_CONFIG"]}' in line
    with pytest.raises(CertificateError):
        verified_store(tmp_path / "api").pull(ref)


def test_certs_d_trusts_the_registry_for_pull_push_copy_and_login(tls_registry, pki, tmp_path):
    ref = push_test_image(tls_registry, "team/app:1.0")
    pki.certs_d(user_certs_d(), tls_registry.host)
    root = tmp_path / "store"
    pulled = cli("-p", "no:insecure", "pull", ref, root=root)
    assert pulled.stdout.splitlines()[-1] == ref and pulled.stderr == ""
    cli("-p", "no:insecure", "push", ref, f"{tls_registry.host}/team/pushed:1", root=root)
    cli("-p", "no:insecure", "copy", ref, f"{tls_registry.host}/team/copied:1", root=tmp_path / "other")
    assert verified_store(tmp_path / "check").pull(f"{tls_registry.host}/team/copied:1").digest == \
        Store(root).image(ref).digest
    login = cli("-p", "no:insecure", "login", tls_registry.host, "-u", "anyone", "--password-stdin",
                root=root, input="pw\n")
    assert "Login Succeeded" in login.stdout  # the registry asks for no credentials


def test_ca_file_in_the_config(tls_registry, pki, tmp_path):
    ref = push_test_image(tls_registry, "team/app:1.0")
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[registry."{tls_registry.host}"]\nca_file = "{pki.ca}"\n')
    cli("-p", "no:insecure", "--config", str(config_file), "pull", ref, root=tmp_path / "store")
    # A wrong ca_file is named in the error: it overrides certs.d and is the one that failed.
    pki.certs_d(user_certs_d(), tls_registry.host)
    config_file.write_text(f'[registry."{tls_registry.host}"]\nca_file = "{pki.client_ca}"\n')
    line = one_error_line(cli("-p", "no:insecure", "--config", str(config_file), "pull", ref,
                              root=tmp_path / "again", expect=1))
    assert f"not signed by the system's CAs nor by {pki.client_ca} (from {config_file})" in line


def test_system_cas_are_trusted_beside_certs_d(tls_registry, pki, tmp_path):
    """As Docker: certs.d's CAs are added to the system's, not put in their place."""
    ref = push_test_image(tls_registry, "team/app:1.0")
    system_bundle = {"SSL_CERT_FILE": str(pki.ca)}  # OpenSSL's default CA file
    cli("-p", "no:insecure", "pull", ref, root=tmp_path / "a", env=system_bundle)
    (user_certs_d() / tls_registry.host).mkdir(parents=True)
    (user_certs_d() / tls_registry.host / "unrelated.crt").write_bytes(pki.client_ca.read_bytes())
    cli("-p", "no:insecure", "pull", ref, root=tmp_path / "b", env=system_bundle)
    cli("-p", "no:insecure", "pull", ref, root=tmp_path / "c", env={"REQUESTS_CA_BUNDLE": str(pki.ca)})


def test_a_name_the_certificate_does_not_hold(tls_registry, pki, tmp_path):
    push_test_image(tls_registry, "team/app:1.0")
    name = f"localhost:{tls_registry.port}"  # the certificate is for 127.0.0.1 only
    pki.certs_d(user_certs_d(), name)
    line = one_error_line(cli("-p", "no:insecure", "pull", f"{name}/team/app:1.0", root=tmp_path / "s", expect=1))
    assert f"{name}: TLS certificate does not match the name 'localhost'" in line
    assert "subject alternative names" in line


def test_the_insecure_policy_still_skips_verification(tls_registry, tmp_path):
    """Loopback (and ``insecure = true``): HTTPS without checks, then HTTP; no warning."""
    ref = push_test_image(tls_registry, "team/app:1.0")
    proc = cli("pull", ref, root=tmp_path / "store")
    assert proc.stderr == "" and proc.stdout.splitlines()[-1] == ref
    name = f"localhost:{tls_registry.port}"
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[registry."{name}"]\ninsecure = true\n')
    proc = cli("-p", "no:insecure", "pull", f"{name}/team/app:1.0", root=tmp_path / "s2", expect=1)
    assert "TLS certificate not trusted" in proc.stderr  # without the policy: verified, and refused
    proc = cli("--config", str(config_file), "pull", f"{name}/team/app:1.0", root=tmp_path / "s3")
    assert proc.stderr == ""


# -- a registry that requires client certificates ----------------------------------------------


def test_client_certificate_required(mtls_registry, pki, tmp_path):
    ref = push_test_image(mtls_registry, "team/app:1.0", None, "--dest-cert-dir",
                          str(client_cert_dir(pki, tmp_path / "skopeo-certs")))
    host = mtls_registry.host
    pki.certs_d(user_certs_d(), host)  # the CA only
    line = one_error_line(cli("-p", "no:insecure", "pull", ref, root=tmp_path / "s", expect=1))
    assert f"{host}: the registry asks for a client certificate" in line
    assert f"put NAME.cert and NAME.key in {user_certs_d() / host}/" in line
    assert f'client_cert and client_key in [registry."{host}"]' in line
    # With the insecure policy (unverified HTTPS, then HTTP) the error is still this one,
    # not the plain-HTTP endpoint's "400 Bad Request".
    line = one_error_line(cli("pull", ref, root=tmp_path / "s", expect=1))
    assert f"{host}: the registry asks for a client certificate" in line


def test_client_pair_from_certs_d(mtls_registry, pki, tmp_path):
    ref = push_test_image(mtls_registry, "team/app:1.0", None, "--dest-cert-dir",
                          str(client_cert_dir(pki, tmp_path / "skopeo-certs")))
    pki.certs_d(user_certs_d(), mtls_registry.host, client=True)
    root = tmp_path / "store"
    cli("-p", "no:insecure", "pull", ref, root=root)
    cli("-p", "no:insecure", "push", ref, f"{mtls_registry.host}/team/pushed:1", root=root)
    # Unverified (the loopback policy), the client certificate is still presented.
    (user_certs_d() / mtls_registry.host / "ca.crt").unlink()
    cli("pull", f"{mtls_registry.host}/team/pushed:1", root=tmp_path / "other")


def test_client_pair_from_the_config(mtls_registry, pki, tmp_path):
    ref = push_test_image(mtls_registry, "team/app:1.0", None, "--dest-cert-dir",
                          str(client_cert_dir(pki, tmp_path / "skopeo-certs")))
    host = mtls_registry.host
    config = Config(path=tmp_path / "config.toml", registries={host: RegistryConfig(
        ca_file=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key)})
    assert verified_store(tmp_path / "store", config).pull(ref).reference == ref
    stranger = Config(path=tmp_path / "config.toml", registries={host: RegistryConfig(
        ca_file=pki.ca, client_cert=pki.stranger_cert, client_key=pki.stranger_key)})
    # Go's server refuses it with an alert, or by closing the connection: either way the
    # error names the certificate and where it was configured.
    with pytest.raises(CertificateError, match=rf"{host}: the registry .* the client certificate "
                                               rf".*stranger.cert \(from .*config.toml\).*: check that"):
        verified_store(tmp_path / "other", stranger).pull(ref)
