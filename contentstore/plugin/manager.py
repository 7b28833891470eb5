"""Loading plugins, and a typed facade over their hooks.

:func:`create` builds a pluggy ``PluginManager``, registers the hook specifications and
loads every entry point of the group ``contentstore``. A plugin that fails to import or
to validate is reported by name, once, and left out; the others still load. Any plugin
can be switched off by name (``CONTENTSTORE_DISABLE_PLUGINS=a,b`` or ``-p no:NAME``):
the name is blocked in the pluggy manager (``set_blocked``, as pytest's ``-p no:``), so
a blocked entry point is not even imported and a plugin registered in-process under that
name is refused too.

The rest of the core calls hooks only through :class:`Plugins`, whose methods turn "no
plugin answered" into a typed error in one place, and an unexpected exception from a
plugin into a :class:`PluginError` that names it.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import types
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Iterable

import pluggy

from contentstore.errors import ConfigError, ContentStoreError, PluginError, UnsupportedMediaType
from contentstore.model import mediatypes
from contentstore.model.manifest import Manifest
from contentstore.plugin import ENTRY_POINT_GROUP, PROJECT_NAME
from contentstore.plugin import spec as hookspecs

log = logging.getLogger(__name__)

DISABLE_ENV = "CONTENTSTORE_DISABLE_PLUGINS"
HOOK_PREFIX = f"{PROJECT_NAME}_"

#: Built-in plugins the core cannot work without: its own index.json is an OCI index of
#: OCI manifests.
REQUIRED_PLUGINS = {"oci": "the store's own layout is OCI", "manifestlist": "the store's own index.json is an OCI index"}

#: What ``contentstore plugins`` calls a plugin, by the hooks it implements.
KINDS = {
    "format": {
        "contentstore_manifest_media_types", "contentstore_detect_media_type",
        "contentstore_parse_manifest", "contentstore_accept_config",
        "contentstore_layer_compression", "contentstore_convert_manifest", "contentstore_oci_media_type",
    },
    "policy": {
        "contentstore_modify_endpoints", "contentstore_continue_on_error",
        "contentstore_explain_ping_failure", "contentstore_verify_image",
    },
    "command": {"contentstore_add_commands"},
    "events": {"contentstore_image_pulled", "contentstore_image_pushed", "contentstore_gc_finished"},
}

Warn = Callable[[str], None]


@dataclass(frozen=True)
class PluginInfo:
    name: str
    kind: str
    version: str
    distribution: str


@dataclass(frozen=True)
class PluginFailure:
    name: str
    error: str

    @property
    def message(self) -> str:
        return f"plugin {self.name!r} failed to load and is ignored: {self.error}"


def disabled_from_environment() -> set[str]:
    value = os.environ.get(DISABLE_ENV, "")
    return {name.strip() for name in value.split(",") if name.strip()}


def _log_warning(message: str) -> None:
    log.warning("%s", message)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, taking a plain function named after a hook as an implementation
    of it, as pytest takes ``pytest_*`` functions; the marker is only needed for options
    (``tryfirst``, ``trylast``, ``wrapper``). Unmarked functions whose names are no hook
    are left alone (helpers may share the prefix)."""

    def parse_hookimpl_opts(self, plugin, name):
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or not name.startswith(HOOK_PREFIX):
            return opts
        caller = getattr(self.hook, name, None)
        if caller is None or not caller.has_spec():
            return None
        attr = inspect.getattr_static(plugin, name, None)
        if isinstance(attr, (staticmethod, classmethod)) or inspect.isfunction(attr):
            return {}
        return None


def create(
    disabled: Iterable[str] = (),
    load_entry_points: bool = True,
    extra_plugins: Iterable[tuple[str, object]] = (),
    warn: Warn | None = None,
) -> "Plugins":
    """Build a plugin manager with every installed plugin except ``disabled`` ones.

    :param disabled: plugin names to block, added to those in ``CONTENTSTORE_DISABLE_PLUGINS``;
        they apply to entry points and ``extra_plugins`` alike.
    :param load_entry_points: load the ``contentstore`` entry-point group (tests may not).
    :param extra_plugins: ``(name, plugin)`` pairs to register besides the entry points.
    :param warn: told, in one line each, about a plugin that failed to load or to handle
        a notification (default: a ``logging`` warning).
    """
    disabled = set(disabled) | disabled_from_environment()
    for name in sorted(disabled & REQUIRED_PLUGINS.keys()):
        raise PluginError(
            f"plugin {name!r} cannot be disabled: the core needs it ({REQUIRED_PLUGINS[name]})"
        )
    pm = _PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    plugins = Plugins(pm, warn=warn)
    if load_entry_points:
        seen: set[str] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen:
                continue
            seen.add(ep.name)
            plugins._load(ep.name, ep.load, _DistributionOf(ep))
    for name, plugin in extra_plugins:
        plugins._load(name, lambda plugin=plugin: plugin, ("(registered)", ""))
    return plugins


class _DistributionOf:
    """An entry point's distribution name and version, read only when asked: reading a
    distribution's metadata costs more than loading the plugin (the ``plugins`` command
    and the image summaries ask; ``--help`` does not)."""

    def __init__(self, entry_point):
        self._entry_point = entry_point

    def __iter__(self):
        dist = self._entry_point.dist
        return iter(_name_and_version(dist) if dist else ("?", "?"))


#: Name and version by distribution (its folder), read once per process.
_NAMES_AND_VERSIONS: dict[object, tuple[str, str]] = {}


def _name_and_version(dist) -> tuple[str, str]:
    """A distribution's ``Name`` and ``Version`` from its metadata's header lines, once:
    ``dist.name`` and ``dist.version`` each parse the whole file as an e-mail message,
    long description included (tens of kilobytes for contentstore's own, whose seven
    built-in plugins would parse it fourteen times)."""
    key = getattr(dist, "_path", None) or id(dist)
    known = _NAMES_AND_VERSIONS.get(key)
    if known is None:
        known = _NAMES_AND_VERSIONS[key] = _read_name_and_version(dist)
    return known


def _read_name_and_version(dist) -> tuple[str, str]:
    fields: dict[str, str] = {}
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the headers: the description follows
        if line[0] in " \t":
            continue  # the continuation of a header
        key, colon, value = line.partition(":")
        if colon and key.strip().lower() in ("name", "version"):
            fields.setdefault(key.strip().lower(), value.strip())
    if fields.get("name") and fields.get("version"):
        return fields["name"], fields["version"]
    return dist.name, dist.version  # headers of another shape: as importlib reads them


class Plugins:
    """Typed access to the hooks; the only place the core calls a hook by name."""

    def __init__(self, pm: pluggy.PluginManager, warn: Warn | None = None):
        self.pm = pm
        self.failures: list[PluginFailure] = []
        #: Where a plugin that failed to load or to handle a notification is reported.
        self.warn: Warn = warn or _log_warning
        self._dists: dict[str, tuple[str, str]] = {}
        self._config = None

    # -- loading ----------------------------------------------------------------------

    def _load(self, name: str, loader, distribution) -> None:
        """Load and register one plugin; ``distribution`` gives its (name, version)."""
        if self.pm.is_blocked(name):
            return  # switched off: not even imported
        try:
            plugin = loader()
            self._validate(plugin)
            if self.pm.register(plugin, name=name) is None:
                return
        except Exception as exc:  # a broken third-party plugin must not stop the others
            if isinstance(exc, pluggy.PluginValidationError):
                message = _one_line(exc)
            else:
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            failure = PluginFailure(name, f"{type(exc).__name__}: {message}")
            self.failures.append(failure)
            self.warn(failure.message)
            return
        self._dists[name] = distribution
        if self._config is not None:  # registered after the configuration was loaded
            self._configure_one(name, self._config)

    def _validate(self, plugin: object) -> None:
        """Unknown hook names and arguments, said in one line that names them."""
        problems = []
        for attr in sorted(dir(plugin)):
            if not attr.startswith(HOOK_PREFIX) or self.pm.parse_hookimpl_opts(plugin, attr) is None:
                continue
            caller = getattr(self.pm.hook, attr, None)
            if caller is None or not caller.has_spec():
                import difflib  # only to name a hook that was meant

                close = difflib.get_close_matches(attr, self.hook_names(), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(f"implements unknown hook {attr}{hint}")
                continue
            given = caller.spec.argnames
            unknown = [arg for arg in _required_arguments(getattr(plugin, attr)) if arg not in given]
            if unknown:
                names = ", ".join(repr(arg) for arg in unknown)
                problems.append(f"{attr} takes {names}, which the hook does not give "
                                f"(it gives: {', '.join(given) or 'nothing'})")
        if problems:
            raise PluginError("; ".join(problems))

    def hook_names(self) -> list[str]:
        """Every hook there is, in the order the specification defines them."""
        return [name for name in vars(hookspecs) if name.startswith(HOOK_PREFIX)]

    def register(self, plugin: object, name: str) -> None:
        """Register ``plugin`` (tests and embedders); same checks as entry points, and a
        blocked (``-p no:NAME``) name is refused in the same way."""
        self._load(name, lambda: plugin, ("(registered)", ""))

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._dists.pop(name, None)

    def block(self, name: str) -> None:
        """Switch a plugin off (``-p no:NAME``): unregistered if it is, refused from now on."""
        if name in REQUIRED_PLUGINS:
            raise PluginError(f"plugin {name!r} cannot be disabled: the core needs it ({REQUIRED_PLUGINS[name]})")
        self.pm.set_blocked(name)
        self._dists.pop(name, None)

    def is_blocked(self, name: str) -> bool:
        return self.pm.is_blocked(name)

    def names(self) -> list[str]:
        """The registered plugins."""
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)

    def implements(self, hook: str) -> bool:
        """Whether any registered plugin implements ``hook``."""
        return bool(getattr(self.pm.hook, hook).get_hookimpls())

    def info(self) -> list[PluginInfo]:
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue  # blocked
            hooks = {caller.name for caller in self.pm.get_hookcallers(plugin) or ()}
            kinds = [kind for kind, names in KINDS.items() if hooks & names]
            distribution, version = self._dists.get(name, ("?", "?"))
            rows.append(PluginInfo(name, "+".join(kinds) or "other", version, distribution))
        return sorted(rows, key=lambda row: row.name)

    # -- calling ------------------------------------------------------------------------

    def _call(self, hook: str, **kwargs):
        """Call a hook; an unexpected exception from a plugin becomes a PluginError that
        names the plugin, instead of a traceback."""
        try:
            return getattr(self.pm.hook, hook)(**kwargs)
        except ContentStoreError:
            raise
        except Exception as exc:
            culprit = self._culprit(exc.__traceback__) or "unknown"
            raise self._failed(culprit, hook, exc) from exc

    @staticmethod
    def _failed(name: str, where: str, exc: BaseException) -> PluginError:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return PluginError(f"plugin {name!r} failed in {where}: {type(exc).__name__}: {message} "
                           f"(disable it with -p no:{name})")

    def _culprit(self, tb) -> str | None:
        modules = {}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
            modules[module] = name
        culprit = None
        while tb is not None:
            culprit = modules.get(tb.tb_frame.f_globals.get("__name__"), culprit)
            tb = tb.tb_next
        return culprit

    def implementers(self, hook: str) -> list[str]:
        """The plugins implementing ``hook``, in the order they are called."""
        names: list[str] = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            if impl.plugin_name not in names:
                names.append(impl.plugin_name)
        return names

    def _each(self, hook: str, **kwargs):
        """``(plugin name, call)`` for each plugin implementing ``hook``, in call order: to
        call plugins one by one, so that one failing neither hides the others nor is
        blamed on them."""
        caller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            args = [kwargs[name] for name in impl.argnames]
            yield impl.plugin_name, lambda impl=impl, args=args: _run(impl, args)

    def _notify(self, hook: str, **kwargs) -> None:
        """A notification: every plugin is told; what one raises is a warning naming it."""
        for name, call in self._each(hook, **kwargs):
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - reported, and the others still told
                self.warn(f"plugin {name!r} failed in {hook}: {type(exc).__name__}: {_one_line(exc)} "
                          f"(disable it with -p no:{name})")

    # -- formats ----------------------------------------------------------------------

    def manifest_media_types(self) -> list[str]:
        seen: dict[str, None] = {}
        for answer in self._call("contentstore_manifest_media_types"):
            for media_type in answer or ():
                seen.setdefault(media_type, None)
        return list(seen)

    def accept_header(self) -> str:
        return ", ".join(self.manifest_media_types())

    def detect_media_type(self, data: bytes) -> str | None:
        return self._call("contentstore_detect_media_type", data=data)

    def parse_manifest(self, media_type: str | None, data: bytes) -> Manifest:
        """Parse ``data``; detect its type from the bytes when ``media_type`` is missing."""
        if media_type:
            manifest = self._call("contentstore_parse_manifest", media_type=media_type, data=data)
            if manifest is not None:
                return manifest
        detected = self.detect_media_type(data)
        if detected and detected != media_type:
            manifest = self._call("contentstore_parse_manifest", media_type=detected, data=data)
            if manifest is not None:
                return manifest
        raise UnsupportedMediaType(media_type or detected or "unknown")

    def is_manifest_type(self, media_type: str) -> bool:
        return media_type in self.manifest_media_types()

    def check_config(self, media_type: str, manifest: Manifest | None = None) -> None:
        """Raise unless a plugin accepts ``manifest``, whose config is ``media_type``."""
        declared = manifest.body.get("artifactType") if manifest is not None else None
        artifact_type = declared if isinstance(declared, str) and declared else None
        if self._call("contentstore_accept_config", media_type=media_type, artifact_type=artifact_type,
                      manifest=manifest):
            return
        if artifact_type is not None:
            raise UnsupportedMediaType(
                media_type,
                f"encountered remote artifact of type {artifact_type!r} (config {media_type!r}) which is "
                f"not an image; no installed plugin accepts artifact type {artifact_type!r}",
            )
        config_class = mediatypes.KNOWN_CONFIG_CLASSES.get(media_type, "unknown")
        raise UnsupportedMediaType(
            media_type,
            f"encountered remote {config_class} ({media_type!r}) which is not an image; "
            f"no installed plugin accepts config media type {media_type!r}",
        )

    def layer_compression(self, media_type: str) -> str:
        compression = self._call("contentstore_layer_compression", media_type=media_type)
        if compression is None:
            raise UnsupportedMediaType(
                media_type, f"unsupported layer media type {media_type!r}: no installed plugin handles it"
            )
        return compression

    def convert_manifest(self, manifest, layers, diff_ids, reference) -> tuple[bytes, bytes] | None:
        return self._call(
            "contentstore_convert_manifest",
            manifest=manifest, layers=layers, diff_ids=diff_ids, reference=reference
        )

    def oci_media_type(self, media_type: str) -> str:
        """The OCI equivalent of ``media_type`` (itself when no plugin knows better)."""
        return self._call("contentstore_oci_media_type", media_type=media_type) or media_type

    # -- fallback policies --------------------------------------------------------------

    def modify_endpoints(self, reference, config, endpoints: list, operation: str = "pull") -> list:
        self._call("contentstore_modify_endpoints", reference=reference, config=config, endpoints=endpoints,
                   operation=operation)
        return endpoints

    def endpoint_removers(self, reference, config, seed: list, operation: str,
                          keep: Callable[[list], list]) -> list[str]:
        """The policy plugins without which ``keep`` of the edited ``seed`` would not be
        empty: who left ``operation`` no endpoint (asked again, on copies, only when it
        happened)."""
        removers = []
        for name in self.implementers("contentstore_modify_endpoints"):
            endpoints = list(seed)
            for other, call in self._each("contentstore_modify_endpoints", reference=reference, config=config,
                                          endpoints=endpoints, operation=operation):
                if other != name:
                    call()
            if keep(endpoints):
                removers.append(name)
        return removers

    def continue_on_error(self, endpoint, error: Exception, confirmed_v2: bool, reference=None,
                          operation: str = "pull") -> bool:
        return bool(self._call(
            "contentstore_continue_on_error",
            endpoint=endpoint, error=error, confirmed_v2=confirmed_v2, reference=reference, operation=operation
        ))

    def explain_ping_failure(self, endpoint, response, session) -> Exception | None:
        return self._call(
            "contentstore_explain_ping_failure",
            endpoint=endpoint, response=response, session=session
        )

    def verify_image(self, reference, descriptor, store, operation: str) -> None:
        """Every policy may refuse: the first ``ContentStoreError`` raised is the answer."""
        self._call("contentstore_verify_image", reference=reference, descriptor=descriptor, store=store,
                   operation=operation)

    # -- settings and commands ------------------------------------------------------------

    def configure(self, config) -> None:
        """Hand the loaded configuration to every plugin, once (a plugin registered later
        gets it when it registers). A ``ConfigError`` a plugin raises names the file and
        the line of its table; a table that names no plugin is a warning."""
        if self._config is not None:
            return
        self._config = config
        failed = {failure.name for failure in self.failures}
        for name in sorted(getattr(config, "plugins", {})):
            if name not in self.names() and not self.pm.is_blocked(name) and name not in failed:
                self.warn(f"{config.where(name)}: [plugins.{name}] names no installed plugin "
                          f"(installed: {', '.join(self.names())})")
        for name in self.implementers("contentstore_configure"):
            self._configure_one(name, config)

    def _configure_one(self, name: str, config) -> None:
        for plugin_name, call in self._each("contentstore_configure", config=config):
            if plugin_name != name:
                continue
            try:
                call()
            except ConfigError as exc:
                message = str(exc)
                if config.path is not None and not message.startswith(str(config.path)):
                    settings = config.plugin_settings(name)
                    key = next((k for k in settings if re.search(rf"['\"`]{re.escape(k)}['\"`]", message)), None)
                    exc.args = (f"{config.where(name, key)}: [plugins.{name}]: {message}", *exc.args[1:])
                raise
            except ContentStoreError:
                raise
            except Exception as exc:
                raise self._failed(name, "contentstore_configure", exc) from exc

    def add_commands(self, commands) -> dict[str, str]:
        """Let plugins add subcommands to ``commands`` (argparse sub-parsers); return the
        plugin that added each new command, by command name."""
        added: dict[str, str] = {}
        for name, call in self._each("contentstore_add_commands", commands=commands):
            before = set(commands.choices)
            try:
                call()
            except ContentStoreError:
                raise
            except Exception as exc:
                raise self._failed(name, "contentstore_add_commands", exc) from exc
            for command in set(commands.choices) - before:
                added[command] = name
        return added

    def run_command(self, plugin: str, command: str, handler, store, args) -> int:
        """Run a command a plugin added: ``handler(store, args)``, its exit status."""
        if not callable(handler):
            raise PluginError(f"plugin {plugin!r} added the command {command!r} without a handler: "
                              f"set_defaults(func=handler) on its parser")
        try:
            status = handler(store, args)
        except ContentStoreError:
            raise
        except Exception as exc:
            raise self._failed(plugin, f"its command {command!r}", exc) from exc
        return 0 if status is None else int(status)

    # -- events ---------------------------------------------------------------------------

    def image_pulled(self, reference, descriptor, store) -> None:
        self._notify("contentstore_image_pulled", reference=reference, descriptor=descriptor, store=store)

    def image_pushed(self, reference, descriptor) -> None:
        self._notify("contentstore_image_pushed", reference=reference, descriptor=descriptor)

    def gc_finished(self, report) -> None:
        self._notify("contentstore_gc_finished", report=report)


def _required_arguments(function) -> list[str]:
    """The arguments pluggy would pass to ``function``: those without a default (keyword
    arguments with one are the plugin's own business)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    names = [p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if names and names[0] in ("self", "cls") and "." in getattr(function, "__qualname__", ""):
        names = names[1:]  # a function of a class registered as a plugin
    return names


def _run(impl, args: list):
    """Call one hook implementation as pluggy would; a wrapper runs around nothing."""
    result = impl.function(*args)
    if impl.wrapper or impl.hookwrapper:
        try:
            next(result)
            result.send(pluggy.Result(None, None) if impl.hookwrapper else None)
        except StopIteration:
            pass
        return None
    return result
