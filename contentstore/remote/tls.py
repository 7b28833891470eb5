"""TLS to registries the Docker way: ``certs.d`` directories and per-registry files.

For a registry endpoint ``HOST[:PORT]``, as Docker, podman and skopeo do:

- every ``*.crt`` in ``certs.d/HOST[:PORT]/`` is a CA trusted for that host, *besides*
  the system's CAs (Go's system pool plus these, as Docker's ``ReadCertsDirectory``);
- each ``NAME.cert`` with its ``NAME.key`` is a client certificate for mutual TLS (a
  ``.cert`` without its ``.key``, or a ``.key`` without its ``.cert``, is an error, as in
  Docker). Python's ``ssl`` offers one client certificate per connection: with several
  pairs, the first by name is used.

The ``certs.d`` directories are searched in this order, and the first that has a folder
for the host is used (as containers/image does): the user config directory's
(``platformdirs.user_config_path("contentstore") / "certs.d"``, which honours
``$XDG_CONFIG_HOME``), ``/etc/containers/certs.d``, ``/etc/docker/certs.d``.
``ca_file``, ``client_cert`` and ``client_key`` in a ``[registry."HOST"]`` table of the
configuration override them (containerd's ``hosts.toml`` ``ca`` and ``client``).

The system's CAs are OpenSSL's default paths (the OS bundle) and those requests trusts
(``$REQUESTS_CA_BUNDLE`` or ``$CURL_CA_BUNDLE`` when set, else certifi's bundle), so
nothing trusted before is trusted less. An endpoint the ``insecure`` policy made
unverified checks no certificate, but still presents a configured client certificate
(as podman does), so a loopback registry that asks for one works.

As in Docker and containers/image, the settings of an endpoint hold for everything its
client sends: its token realm and the blob storage it redirects to included.
"""

from __future__ import annotations

import os
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import urllib3
from urllib3.util.ssl_ import create_urllib3_context

from contentstore.config import Config, default_path
from contentstore.errors import ConfigError
from contentstore.model.endpoint import Endpoint

#: The system-wide certs.d directories, after the user's (podman's, then Docker's).
SYSTEM_CERTS_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))


def user_certs_dir() -> Path:
    return platformdirs.user_config_path("contentstore") / "certs.d"


def certs_dirs() -> list[Path]:
    """The certs.d directories searched, in order."""
    return [user_certs_dir(), *SYSTEM_CERTS_DIRS]


@dataclass(frozen=True)
class TLSSettings:
    """How to speak TLS to one registry endpoint.

    :param host: the ``HOST[:PORT]`` these settings were found for (named in errors).
    :param verify: check the server's certificate (``False``: the ``insecure`` policy).
    :param ca_files: CA certificates trusted besides the system's.
    :param client_cert: a client certificate (PEM) for mutual TLS, with ``client_key``.
    :param certs_dir: the ``certs.d/HOST`` folder the files came from, if any.
    :param ca_from_config: ``ca_files`` is the configuration's ``ca_file``.
    :param client_from_config: the client pair is the configuration's.
    :param config_path: the configuration file read (named in advice).
    """

    host: str = ""
    verify: bool = True
    ca_files: tuple[Path, ...] = ()
    client_cert: Path | None = None
    client_key: Path | None = None
    certs_dir: Path | None = None
    ca_from_config: bool = False
    client_from_config: bool = False
    config_path: Path | None = None

    @property
    def client_pair(self) -> tuple[Path, Path] | None:
        return (self.client_cert, self.client_key) if self.client_cert and self.client_key else None

    def context(self) -> ssl.SSLContext:
        """The SSL context for these settings (built once for the same files)."""
        return _context(self)


def for_endpoint(endpoint: Endpoint, config: Config | None = None) -> TLSSettings:
    """The TLS settings of an endpoint: its host's; for the registry's own endpoint on
    another host (Docker Hub's API), the registry name's when the host has none."""
    also = () if endpoint.mirror else (endpoint.registry,)
    return for_host(endpoint.host, config, verify=endpoint.verify_tls, also=also)


def for_host(host: str, config: Config | None = None, verify: bool = True, also: tuple[str, ...] = (),
             dirs: list[Path] | None = None) -> TLSSettings:
    """The TLS settings of ``host`` (``HOST[:PORT]``): its ``[registry."HOST"]`` files, else
    those of the first certs.d directory with a folder for it.

    :param also: other names to look under when ``host`` has nothing (the registry's name
        for its own endpoint on another host: ``docker.io`` for ``registry-1.docker.io``).
    :param dirs: the certs.d directories (default: :func:`certs_dirs`).
    :raises ConfigError: a certs.d folder that cannot be read, or a client certificate
        without its key (or a key without its certificate).
    """
    config = config if config is not None else Config()
    names = [host, *(name for name in also if name and name != host)]
    ca_file = client = None
    for name in names:
        settings = config.registry(name)
        ca_file = ca_file or settings.ca_file
        if client is None and settings.client_cert and settings.client_key:
            client = (settings.client_cert, settings.client_key)
    found = _certs_dir(names, certs_dirs() if dirs is None else dirs)
    dir_cas: tuple[Path, ...] = ()
    dir_client = None
    if found is not None:
        dir_cas, dir_client = _read_certs_dir(found)
    used_dir = found if (dir_cas and not ca_file) or (dir_client and not client) else None
    pair = client or dir_client
    return TLSSettings(
        host=host, verify=verify,
        ca_files=(ca_file,) if ca_file else dir_cas,
        client_cert=pair[0] if pair else None, client_key=pair[1] if pair else None,
        certs_dir=used_dir, ca_from_config=ca_file is not None, client_from_config=client is not None,
        config_path=config.path,
    )


def _certs_dir(names: list[str], dirs: list[Path]) -> Path | None:
    for name in names:
        if not name or name.startswith(".") or "/" in name or "\\" in name:
            continue  # never a path outside the certs.d directory
        for base in dirs:
            candidate = base / name
            try:
                if candidate.is_dir():
                    return candidate
            except OSError:
                continue
    return None


def _read_certs_dir(directory: Path) -> tuple[tuple[Path, ...], tuple[Path, Path] | None]:
    """The ``*.crt`` CAs and the first ``NAME.cert``/``NAME.key`` pair of a certs.d folder."""
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except OSError as exc:
        raise ConfigError(f"cannot read the certificate folder {directory}: {exc.strerror or exc}") from None
    present = set(names)
    cas = tuple(directory / name for name in names if name.endswith(".crt"))
    pairs = []
    for name in names:
        if name.endswith(".cert"):
            key = name[:-len(".cert")] + ".key"
            if key not in present:
                raise ConfigError(f"missing key {key} for client certificate {directory / name} "
                                  f"(CA certificates end in .crt)")
            pairs.append((directory / name, directory / key))
        elif name.endswith(".key"):
            cert = name[:-len(".key")] + ".cert"
            if cert not in present:
                raise ConfigError(f"missing client certificate {cert} for key {directory / name}")
    return cas, (pairs[0] if pairs else None)


# -- SSL contexts ------------------------------------------------------------------------------

_contexts: dict[tuple, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()
_unverified_warning_silenced = False


def requests_bundle() -> str:
    """The CA bundle requests itself would use."""
    import certifi

    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()


def _stat(path: Path | str | None) -> tuple:
    if path is None:
        return ()
    try:
        info = os.stat(path)
        return (str(path), info.st_mtime_ns, info.st_size)
    except OSError:
        return (str(path),)


def _context(settings: TLSSettings) -> ssl.SSLContext:
    bundle = requests_bundle() if settings.verify else None
    key = (settings.verify, _stat(bundle), tuple(_stat(f) for f in settings.ca_files),
           _stat(settings.client_cert), _stat(settings.client_key))
    with _contexts_lock:
        context = _contexts.get(key)
        if context is None:
            context = _contexts[key] = _build(settings, bundle)
        return context


def _build(settings: TLSSettings, bundle: str | None) -> ssl.SSLContext:
    global _unverified_warning_silenced
    if settings.verify:
        context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
        context.load_default_certs()
        _load_cas(context, bundle, settings, "the CA bundle")
        for ca_file in settings.ca_files:
            _load_cas(context, ca_file, settings, "CA certificate")
    else:
        context = create_urllib3_context(cert_reqs=ssl.CERT_NONE)
        if not _unverified_warning_silenced:
            # The policy chose an unverified endpoint (as Docker does for insecure
            # registries, silently): no warning on stderr for each connection.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            _unverified_warning_silenced = True
    if settings.client_pair:
        cert, key = settings.client_pair
        try:
            # No password: an encrypted key fails here rather than prompting on a terminal.
            context.load_cert_chain(cert, key, password=lambda: b"")
        except FileNotFoundError as exc:
            raise ConfigError(f"{settings.host}: client certificate or key not found: {exc.filename}"
                              f"{_source(settings, client=True)}") from None
        except OSError as exc:  # ssl.SSLError too
            raise ConfigError(f"{settings.host}: cannot use client certificate {cert} with key {key}"
                              f"{_source(settings, client=True)}: they must be PEM files, the key "
                              f"unencrypted and the certificate's ({_short(exc)})") from None
    return context


def _load_cas(context: ssl.SSLContext, path, settings: TLSSettings, what: str) -> None:
    try:
        context.load_verify_locations(cafile=str(path))
    except OSError as exc:  # ssl.SSLError too
        raise ConfigError(f"{settings.host}: cannot load {what} {path}{_source(settings)}: {_short(exc)}") from None


def _short(exc: OSError) -> str:
    """An OpenSSL or system error in a few words, without its C source line."""
    if isinstance(exc, ssl.SSLError):
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        return text.split(" (_ssl.c")[0]
    return exc.strerror or str(exc)


def _source(settings: TLSSettings, client: bool = False) -> str:
    from_config = settings.client_from_config if client else settings.ca_from_config
    if from_config and settings.config_path:
        return f" (from {settings.config_path})"
    return ""


# -- what a TLS failure means ------------------------------------------------------------------

#: OpenSSL's reasons when the server refused our certificate or asked for one we lack.
_CLIENT_CERT_REASONS = {"SSLV3_ALERT_BAD_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                        "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED",
                        "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED"}
#: X509 verification codes: an unknown or self-signed issuer.
_UNTRUSTED_CODES = {2, 18, 19, 20, 21, 27}
_HOSTNAME_MISMATCH = 62


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` inside a requests or urllib3 error, if any."""
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        stack.extend(getattr(current, name, None) for name in ("reason", "__cause__", "__context__"))
    return None


def explain_failure(exc: BaseException, host: str, settings: TLSSettings | None) -> tuple[str, bool] | None:
    """A TLS failure in one line, naming ``host`` and what to configure; and whether it is
    about certificates (the others, such as plain HTTP on the port, are handshake
    failures). ``None`` when ``exc`` holds no TLS error."""
    error = _ssl_error(exc)
    if error is None:
        return None
    settings = settings or TLSSettings(host=host)
    where = settings.host or host
    via = f" (for registry endpoint {where})" if where and where.lower() != host.lower() else ""
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or error.reason or str(error)
        if error.verify_code == _HOSTNAME_MISMATCH:
            return (f"{host}: TLS certificate does not match the name {host.rsplit(':', 1)[0]!r}{via} "
                    f"({detail}): use the name the certificate was issued for, or have it reissued with "
                    f"this name among its subject alternative names"), True
        if error.verify_code in _UNTRUSTED_CODES:
            return f"{host}: TLS certificate not trusted{via} ({detail}): {_trust_advice(where, settings)}", True
        return f"{host}: TLS certificate rejected{via} ({detail}): {_trust_advice(where, settings)}", True
    reason = error.reason or ""
    detail = _short(error)
    check = "check that a CA the registry trusts signed it and that it has not expired"
    if reason in _CLIENT_CERT_REASONS:
        if settings.client_pair:
            return (f"{host}: the registry refused the client certificate {settings.client_cert}"
                    f"{_source(settings, client=True)}{via} ({detail}): {check}"), True
        return (f"{host}: the registry asks for a client certificate{via} ({detail}): "
                f"{_client_advice(where, settings)}"), True
    if isinstance(error, ssl.SSLEOFError) and settings.client_pair:
        # Go's TLS 1.3 server may just close the connection on a certificate it refuses.
        return (f"{host}: the registry ended the TLS connection ({detail}), as it may when it refuses "
                f"the client certificate {settings.client_cert}{_source(settings, client=True)}{via}: "
                f"{check}"), True
    return f"{host}: TLS handshake failed{via}: {detail}", False


def _config_name(settings: TLSSettings) -> str:
    return str(settings.config_path or default_path())


def _dirs_text(host: str) -> str:
    first, *others = certs_dirs()
    return f"{first / host}/ (or {', '.join(str(d / host) + '/' for d in others)})"


def _trust_advice(host: str, settings: TLSSettings) -> str:
    if settings.ca_files:
        trusted = ", ".join(str(f) for f in settings.ca_files)
        return (f"it is not signed by the system's CAs nor by {trusted}{_source(settings)}; put the CA "
                f"that signed it there")
    return (f"put the registry's CA certificate, as a *.crt file, in {_dirs_text(host)}, or name it "
            f'with ca_file in [registry."{host}"] of {_config_name(settings)}')


def _client_advice(host: str, settings: TLSSettings) -> str:
    return (f"put NAME.cert and NAME.key in {_dirs_text(host)}, or set client_cert and client_key in "
            f'[registry."{host}"] of {_config_name(settings)}')
