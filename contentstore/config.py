"""The TOML configuration file: per-registry mirrors, insecure flags and TLS files,
concurrency, deadlines and the minimum transfer rate, and each plugin's own settings.

Found at ``--config``, else ``$CONTENTSTORE_CONFIG``, else
``platformdirs.user_config_path("contentstore") / "config.toml"`` (a missing default
file is an empty configuration). A malformed file or an unknown key is a
:class:`ConfigError` naming the file and the line. A plugin's settings live in its own
``[plugins.NAME]`` table, which the core hands to that plugin unchecked
(:meth:`Config.plugin_settings`); the plugin checks it.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from contentstore.errors import ConfigError

CONFIG_ENV = "CONTENTSTORE_CONFIG"

_NUMBER = (int, float)
_TOP_KEYS = {"registry": dict, "max_concurrent_downloads": int, "max_concurrent_uploads": int,
             "upload_chunk_size": int, "pull": dict, "request_deadline": _NUMBER, "min_transfer_rate": int,
             "transfer_rate_window": _NUMBER, "plugins": dict, "max_connections_per_download": int,
             "parallel_download_threshold": int, "parallel_download_chunk_size": int}
_PULL_KEYS = {"verify_diffids": bool}
_REGISTRY_KEYS = {"mirrors": list, "insecure": bool, "mirror_fallback": bool, "ca_file": str,
                  "client_cert": str, "client_key": str}


@dataclass(frozen=True)
class RegistryConfig:
    """Settings of one registry host.

    :param mirrors: base URLs tried before the registry itself, in order.
    :param insecure: allow plain HTTP and unverified TLS for this host.
    :param mirror_fallback: go on to the registry itself when every mirror failed
        (``false`` for sites that must never reach it).
    :param ca_file: a PEM file of CA certificates trusted for this host besides the
        system's (instead of the ``*.crt`` files of its ``certs.d`` directory).
    :param client_cert: a PEM client certificate for mutual TLS, with ``client_key``
        (instead of a ``NAME.cert``/``NAME.key`` pair of its ``certs.d`` directory).
    """

    mirrors: tuple[str, ...] = ()
    insecure: bool = False
    mirror_fallback: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def __post_init__(self) -> None:
        for mirror in self.mirrors:
            problem = mirror_problem(mirror)
            if problem:
                raise ConfigError(problem)
        if (self.client_cert is None) != (self.client_key is None):
            raise ConfigError(client_pair_problem(self.client_cert is not None))


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    registries: dict[str, RegistryConfig] = field(default_factory=dict)
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    #: Blobs larger than this are uploaded in PATCH chunks of this size; smaller in one PUT.
    upload_chunk_size: int = 32 * 1024 * 1024
    #: ``[pull] verify_diffids``: inflate every layer during the pull to check its diffID.
    verify_diffids: bool = False
    #: Seconds a ping, manifest, token or tag-list request may take in all (retries and
    #: body included), and a blob request until its answer's headers.
    request_deadline: float = 60.0
    #: A blob body slower than this many bytes a second, on average over
    #: ``transfer_rate_window`` seconds, is cut off (and resumed); 0: no minimum.
    min_transfer_rate: int = 1024
    transfer_rate_window: float = 30.0
    #: Connections one blob of at least ``parallel_download_threshold`` bytes is fetched
    #: over, as parallel ``Range`` requests of ``parallel_download_chunk_size`` bytes
    #: (1: one stream per blob, as before).
    max_connections_per_download: int = 4
    parallel_download_threshold: int = 64 * 1024 * 1024
    parallel_download_chunk_size: int = 16 * 1024 * 1024
    #: ``[plugins.NAME]`` tables, by plugin name, as the file has them.
    plugins: dict[str, dict] = field(default_factory=dict)
    #: The file's text, to name the line of a plugin's setting in an error.
    text: str = field(default="", repr=False, compare=False)

    def registry(self, host: str) -> RegistryConfig:
        return self.registries.get(host, RegistryConfig())

    def plugin_settings(self, name: str) -> dict:
        """The ``[plugins.NAME]`` table of the plugin ``name`` (its entry-point name), as a
        new ``dict``; ``{}`` when the file has none."""
        return copy.deepcopy(self.plugins.get(name, {}))

    def where(self, plugin: str, key: str | None = None) -> str:
        """``FILE:LINE`` of ``key`` in ``[plugins.PLUGIN]`` (of the table itself when the key
        is not found), for an error message."""
        return f"{self.path}:{_line_of_plugin_setting(self.text, plugin, key)}"


_MIRROR_URL = re.compile(r"^https?://[^/\s]+/?$")


def redact_userinfo(url: str) -> str:
    """``https://user:password@host`` -> ``https://***@host``: a URL fit to print (all
    up to the last ``@`` goes, whatever characters the password holds)."""
    if "@" not in url:
        return url
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    return f"{scheme}{separator}***@{rest.rsplit('@', 1)[1]}"


def mirror_problem(mirror, where: str = "") -> str | None:
    """Why ``mirror`` cannot be a mirror URL, in words that never repeat a password; or None."""
    if not isinstance(mirror, str):
        return f"mirror {mirror!r}{where} must be http(s)://host[:port]"
    shown = redact_userinfo(mirror)
    if "@" in mirror:
        return (f"mirror {shown!r}{where} holds credentials (user:password@), which a mirror URL "
                f"may not: Docker's config.json gives them (contentstore login HOST)")
    if not _MIRROR_URL.match(mirror):
        return f"mirror {shown!r}{where} must be http(s)://host[:port]"
    return None


def client_pair_problem(has_cert: bool, where: str = "") -> str:
    given, missing = ("client_cert", "client_key") if has_cert else ("client_key", "client_cert")
    return f"{given!r}{where} needs {missing!r} too (a client certificate and its private key)"


def _file_setting(path: Path, value: str) -> Path:
    """A file named in the configuration: ``~`` expanded, relative to the file's folder."""
    file = Path(value).expanduser()
    return file if file.is_absolute() else path.parent / file


def default_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else platformdirs.user_config_path("contentstore") / "config.toml"


def load(path: str | os.PathLike | None = None) -> Config:
    explicit = path is not None or CONFIG_ENV in os.environ
    path = Path(path) if path is not None else default_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: configuration file not found") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    import tomllib  # only with a file to read

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return _build(path, text, data)


def _line_of(text: str, key: str, table: str | None = None) -> int:
    """The line of ``key`` (the first after the header of ``[registry."table"]``, if given)."""
    start = 0
    if table is not None:
        header = re.search(rf'^\s*\[\s*registry\s*\.\s*"?{re.escape(table)}"?\s*\]', text, re.M)
        start = header.end() if header else 0
    pattern = re.compile(rf'^[ \t]*(?:{re.escape(key)}|"{re.escape(key)}")\s*=', re.M)
    match = pattern.search(text, start) or pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _line_of_plugin_setting(text: str, plugin: str, key: str | None) -> int:
    """The line of ``[plugins.PLUGIN]`` (its header, or the first ``key =`` after it)."""
    name = rf'(?:{re.escape(plugin)}|"{re.escape(plugin)}"|\'{re.escape(plugin)}\')'
    header = re.compile(rf"^[ \t]*\[\s*plugins\s*\.\s*{name}\s*\]", re.M).search(text)
    if header is None:  # an inline table or dotted keys: plugins.NAME = {...}
        header = re.compile(rf"^[ \t]*plugins\s*\.\s*{name}\s*[.=]", re.M).search(text)
    if header is None:  # NAME = ... under [plugins]
        table = re.compile(r"^[ \t]*\[\s*plugins\s*\]", re.M).search(text)
        if table is not None:
            header = re.compile(rf"^[ \t]*{name}\s*[.=]", re.M).search(text, table.end())
    if header is None:
        return 1
    start = header.start()
    if key is not None:
        setting = re.compile(rf'^[ \t]*(?:{re.escape(key)}|"{re.escape(key)}")\s*=', re.M)
        following = setting.search(text, header.end())
        next_table = re.compile(r"^[ \t]*\[", re.M).search(text, header.end())
        if following and (next_table is None or following.start() < next_table.start()):
            start = following.start()
    return text.count("\n", 0, start) + 1


def _check(path: Path, text: str, table: dict, allowed: dict, where: str, name: str | None = None) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{path}:{_line_of(text, key, name)}: unknown key {key!r}{where}")
        expected = allowed[key]
        numeric = expected is int or expected is _NUMBER
        if not isinstance(value, expected) or (numeric and isinstance(value, bool)):
            kind = {_NUMBER: "number", str: "string"}.get(expected, getattr(expected, "__name__", ""))
            raise ConfigError(f"{path}:{_line_of(text, key, name)}: {key!r}{where} must be a {kind}")


def _build(path: Path, text: str, data: dict) -> Config:
    _check(path, text, data, _TOP_KEYS, "")
    registries = {}
    for host, table in data.get("registry", {}).items():
        where = f' in [registry."{host}"]'
        if not isinstance(table, dict):
            raise ConfigError(f"{path}:{_line_of(text, host)}: registry.{host} must be a table")
        _check(path, text, table, _REGISTRY_KEYS, where, host)
        mirrors = table.get("mirrors", [])
        for mirror in mirrors:
            problem = mirror_problem(mirror, where)
            if problem:
                raise ConfigError(f"{path}:{_line_of(text, 'mirrors', host)}: {problem}")
        files = {}
        for key in ("ca_file", "client_cert", "client_key"):
            if key in table:
                if not table[key].strip():
                    raise ConfigError(f"{path}:{_line_of(text, key, host)}: {key!r}{where} is empty")
                files[key] = _file_setting(path, table[key])
        if ("client_cert" in files) != ("client_key" in files):
            given = "client_cert" if "client_cert" in files else "client_key"
            raise ConfigError(f"{path}:{_line_of(text, given, host)}: "
                              f"{client_pair_problem(given == 'client_cert', where)}")
        registries[host] = RegistryConfig(
            mirrors=tuple(m.rstrip("/") for m in mirrors),
            insecure=table.get("insecure", False),
            mirror_fallback=table.get("mirror_fallback", True),
            **files,
        )
    pull = data.get("pull", {})
    _check(path, text, pull, _PULL_KEYS, " in [pull]")
    plugins = data.get("plugins", {})
    for name, table in plugins.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}:{_line_of_plugin_setting(text, name, None)}: plugins.{name} must be "
                              f"a table: [plugins.{name}], the settings of the plugin {name!r}")
    for key in ("max_concurrent_downloads", "max_concurrent_uploads", "upload_chunk_size",
                "max_connections_per_download", "parallel_download_threshold", "parallel_download_chunk_size"):
        if key in data and data[key] < 1:
            raise ConfigError(f"{path}:{_line_of(text, key)}: {key!r} must be at least 1")
    for key in ("request_deadline", "transfer_rate_window"):
        if key in data and not data[key] > 0:
            raise ConfigError(f"{path}:{_line_of(text, key)}: {key!r} must be more than 0 seconds")
    if data.get("min_transfer_rate", 0) < 0:
        raise ConfigError(f"{path}:{_line_of(text, 'min_transfer_rate')}: 'min_transfer_rate' must not "
                          "be negative (0: no minimum)")
    return Config(
        path=path,
        registries=registries,
        max_concurrent_downloads=data.get("max_concurrent_downloads", 3),
        max_concurrent_uploads=data.get("max_concurrent_uploads", 5),
        upload_chunk_size=data.get("upload_chunk_size", Config.upload_chunk_size),
        verify_diffids=pull.get("verify_diffids", False),
        request_deadline=float(data.get("request_deadline", Config.request_deadline)),
        min_transfer_rate=data.get("min_transfer_rate", Config.min_transfer_rate),
        transfer_rate_window=float(data.get("transfer_rate_window", Config.transfer_rate_window)),
        max_connections_per_download=data.get("max_connections_per_download",
                                              Config.max_connections_per_download),
        parallel_download_threshold=data.get("parallel_download_threshold", Config.parallel_download_threshold),
        parallel_download_chunk_size=data.get("parallel_download_chunk_size",
                                              Config.parallel_download_chunk_size),
        plugins=plugins,
        text=text,
    )
