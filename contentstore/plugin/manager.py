"""Loading plugins, and a typed facade over their hooks.

:func:`create` builds a pluggy ``PluginManager``, registers the hook specifications and
loads every entry point of the group ``contentstore``. A plugin that fails to import or
to validate is reported by name and left out; the others still load. Any plugin can be
switched off by name (``CONTENTSTORE_DISABLE_PLUGINS=a,b`` or ``-p no:NAME``).

The rest of the core calls hooks only through :class:`Plugins`, whose methods turn "no
plugin answered" into a typed error in one place.
"""

from __future__ import annotations

import logging
import os
import types
from dataclasses import dataclass
from importlib import metadata
from typing import Iterable

import pluggy

from contentstore.errors import ContentStoreError, PluginError, UnsupportedMediaType
from contentstore.model import mediatypes
from contentstore.model.manifest import Manifest
from contentstore.plugin import ENTRY_POINT_GROUP, PROJECT_NAME
from contentstore.plugin import spec as hookspecs

log = logging.getLogger(__name__)

DISABLE_ENV = "CONTENTSTORE_DISABLE_PLUGINS"

#: Built-in plugins the core cannot work without: its own index.json is an OCI index of
#: OCI manifests.
REQUIRED_PLUGINS = {"oci": "the store's own layout is OCI", "manifestlist": "the store's own index.json is an OCI index"}

_FORMAT_HOOKS = {
    "contentstore_manifest_media_types", "contentstore_detect_media_type",
    "contentstore_parse_manifest", "contentstore_accept_config",
    "contentstore_layer_compression", "contentstore_convert_manifest", "contentstore_oci_media_type",
}
_POLICY_HOOKS = {
    "contentstore_modify_endpoints", "contentstore_continue_on_error",
    "contentstore_explain_ping_failure",
}


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


def disabled_from_environment() -> set[str]:
    value = os.environ.get(DISABLE_ENV, "")
    return {name.strip() for name in value.split(",") if name.strip()}


def create(
    disabled: Iterable[str] = (),
    load_entry_points: bool = True,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> "Plugins":
    """Build a plugin manager with every installed plugin except ``disabled`` ones.

    :param disabled: plugin names to skip, added to those in ``CONTENTSTORE_DISABLE_PLUGINS``.
    :param load_entry_points: load the ``contentstore`` entry-point group (tests may not).
    :param extra_plugins: ``(name, plugin)`` pairs to register besides the entry points.
    """
    disabled = set(disabled) | disabled_from_environment()
    for name in sorted(disabled & REQUIRED_PLUGINS.keys()):
        raise PluginError(
            f"plugin {name!r} cannot be disabled: the core needs it ({REQUIRED_PLUGINS[name]})"
        )
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm)
    if load_entry_points:
        seen: set[str] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled or ep.name in seen:
                continue
            seen.add(ep.name)
            dist = ep.dist
            plugins._load(ep.name, ep.load, dist.name if dist else "?", dist.version if dist else "?")
    for name, plugin in extra_plugins:
        plugins._load(name, lambda plugin=plugin: plugin, "(registered)", "")
    return plugins


class Plugins:
    """Typed access to the hooks; the only place the core calls a hook by name."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.failures: list[PluginFailure] = []
        self._dists: dict[str, tuple[str, str]] = {}

    # -- loading ----------------------------------------------------------------------

    def _load(self, name: str, loader, distribution: str, version: str) -> None:
        try:
            plugin = loader()
            unknown = sorted(
                attr for attr in dir(plugin)
                if attr.startswith(f"{PROJECT_NAME}_") and self.pm.parse_hookimpl_opts(plugin, attr) is not None
                and not hasattr(self.pm.hook, attr)
            )
            if unknown:
                raise PluginError(f"implements unknown hook(s): {', '.join(unknown)}")
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a broken third-party plugin must not stop the others
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("plugin %r failed to load: %s", name, message)
            self.failures.append(PluginFailure(name, f"{type(exc).__name__}: {message}"))
            return
        self._dists[name] = (distribution, version)

    def _call(self, hook: str, **kwargs):
        """Call a hook; an unexpected exception from a plugin becomes a PluginError that
        names the plugin, instead of a traceback."""
        try:
            return getattr(self.pm.hook, hook)(**kwargs)
        except ContentStoreError:
            raise
        except Exception as exc:
            culprit = self._culprit(exc.__traceback__) or "unknown"
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PluginError(f"plugin {culprit!r} failed in {hook}: {type(exc).__name__}: {message} "
                              f"(disable it with -p no:{culprit})") from exc

    def _culprit(self, tb) -> str | None:
        modules = {}
        for name, plugin in self.pm.list_name_plugin():
            module = plugin.__name__ if isinstance(plugin, types.ModuleType) else type(plugin).__module__
            modules[module] = name
        culprit = None
        while tb is not None:
            culprit = modules.get(tb.tb_frame.f_globals.get("__name__"), culprit)
            tb = tb.tb_next
        return culprit

    def register(self, plugin: object, name: str) -> None:
        """Register ``plugin`` (tests and embedders); same checks as entry points."""
        self._load(name, lambda: plugin, "(registered)", "")

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._dists.pop(name, None)

    def info(self) -> list[PluginInfo]:
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = {caller.name for caller in self.pm.get_hookcallers(plugin) or ()}
            kinds = [k for k, names in (("format", _FORMAT_HOOKS), ("policy", _POLICY_HOOKS))
                     if hooks & names]
            distribution, version = self._dists.get(name, ("?", "?"))
            rows.append(PluginInfo(name, "+".join(kinds) or "other", version, distribution))
        return sorted(rows, key=lambda row: row.name)

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

    def check_config(self, media_type: str) -> None:
        """Raise unless a plugin accepts a manifest whose config is ``media_type``."""
        if self._call("contentstore_accept_config", media_type=media_type):
            return
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

    def modify_endpoints(self, reference, config, endpoints: list) -> list:
        self._call("contentstore_modify_endpoints", reference=reference, config=config, endpoints=endpoints)
        return endpoints

    def continue_on_error(self, endpoint, error: Exception, confirmed_v2: bool) -> bool:
        return bool(self._call(
            "contentstore_continue_on_error",
            endpoint=endpoint, error=error, confirmed_v2=confirmed_v2
        ))

    def explain_ping_failure(self, endpoint, response, session) -> Exception | None:
        return self._call(
            "contentstore_explain_ping_failure",
            endpoint=endpoint, response=response, session=session
        )
