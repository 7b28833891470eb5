import pytest

from contentstore.errors import PluginError, UnsupportedMediaType
from contentstore.model import mediatypes as mt
from contentstore.plugin import hookimpl
from contentstore.plugin import manager as pluginmanager

BUILTIN_FORMATS = {"schema1", "schema2", "oci", "manifestlist"}


def test_builtin_plugins_load_from_entry_points(plugins):
    info = {p.name: p for p in plugins.info()}
    assert BUILTIN_FORMATS <= set(info)
    assert all(info[name].kind == "format" and info[name].distribution == "contentstore"
               for name in BUILTIN_FORMATS)
    assert plugins.failures == []
    # the core never imports a plugin by name: only entry points bring them in
    assert "contentstore_plugins.oci" in {type(p).__module__ if not hasattr(p, "__name__") else p.__name__
                                          for _, p in plugins.pm.list_name_plugin()}


def test_accept_header_is_built_from_the_plugins(plugins):
    header = plugins.accept_header()
    for media_type in (mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST,
                       mt.DOCKER_SCHEMA1_SIGNED):
        assert media_type in header

    class Wasm:
        @hookimpl
        def contentstore_manifest_media_types(self):
            return ["application/vnd.example.wasm.manifest.v1+json"]

    plugins.register(Wasm(), "wasm")
    assert "application/vnd.example.wasm.manifest.v1+json" in plugins.accept_header()
    assert {p.name: p.kind for p in plugins.info()}["wasm"] == "format"


def test_non_image_config_is_refused_unless_a_plugin_accepts_it(plugins):
    plugins.check_config(mt.OCI_CONFIG)
    plugins.check_config(mt.DOCKER_CONFIG)
    with pytest.raises(UnsupportedMediaType) as info:
        plugins.check_config(mt.HELM_CONFIG)
    assert "helm chart" in str(info.value) and "not an image" in str(info.value)

    class Helm:
        @hookimpl
        def contentstore_accept_config(self, media_type):
            return True if media_type == mt.HELM_CONFIG else None

    plugins.register(Helm(), "helm")
    plugins.check_config(mt.HELM_CONFIG)


def test_installed_plugin_answers_before_builtins(plugins):
    class Override:
        @hookimpl
        def contentstore_layer_compression(self, media_type):
            return "zstd" if media_type == mt.OCI_LAYER_GZIP else None

    assert plugins.layer_compression(mt.OCI_LAYER_GZIP) == "gzip"
    plugins.register(Override(), "override")
    assert plugins.layer_compression(mt.OCI_LAYER_GZIP) == "zstd"
    assert plugins.layer_compression(mt.DOCKER_LAYER_GZIP) == "gzip"
    with pytest.raises(UnsupportedMediaType):
        plugins.layer_compression("application/x-nope")


def test_broken_plugins_are_reported_and_do_not_stop_the_others():
    class Typo:
        @hookimpl
        def contentstore_parse_manifets(self, media_type, data):
            return None

    class BadSignature:
        @hookimpl
        def contentstore_accept_config(self, media_type, surprise):
            return True

    def explode():
        raise ImportError("no module named 'missing_dependency'")

    plugins = pluginmanager.create(extra_plugins=[("typo", Typo()), ("badsig", BadSignature())])
    plugins._load("exploding", explode, "contentstore-exploding", "1.0")
    failures = {f.name: f.error for f in plugins.failures}
    assert "unknown hook" in failures["typo"] and "contentstore_parse_manifets" in failures["typo"]
    assert "badsig" in failures and "missing_dependency" in failures["exploding"]
    assert BUILTIN_FORMATS <= {p.name for p in plugins.info()}
    assert "typo" not in {p.name for p in plugins.info()}


def test_plugins_can_be_disabled_by_name(monkeypatch):
    plugins = pluginmanager.create(disabled={"schema1"})
    assert "schema1" not in {p.name for p in plugins.info()}
    assert mt.DOCKER_SCHEMA1_SIGNED not in plugins.accept_header()
    monkeypatch.setenv("CONTENTSTORE_DISABLE_PLUGINS", "schema2, schema1")
    names = {p.name for p in pluginmanager.create().info()}
    assert not names & {"schema1", "schema2"} and {"oci", "manifestlist"} <= names


@pytest.mark.parametrize("name", ["oci", "manifestlist"])
def test_required_plugins_refuse_to_be_disabled(name):
    with pytest.raises(PluginError) as info:
        pluginmanager.create(disabled={name})
    assert name in str(info.value) and "core needs it" in str(info.value)


def test_hook_reference_is_current():
    """docs/hooks.md is generated from the hook specifications and must match them."""
    from pathlib import Path

    from contentstore.plugin import docs as hookdoc

    committed = (Path(__file__).resolve().parents[1] / "docs" / "hooks.md").read_text()
    assert committed == hookdoc.render(), "run: python -m contentstore.plugin.docs > docs/hooks.md"
    assert len(hookdoc.hooks()) == len([n for n in dir(pluginmanager.hookspecs) if n.startswith("contentstore_")])


def test_a_plugin_that_raises_is_named():
    class Clumsy:
        @hookimpl
        def contentstore_accept_config(self, media_type):
            raise KeyError("oops")

    plugins = pluginmanager.create(extra_plugins=[("clumsy", Clumsy())])
    with pytest.raises(PluginError) as info:
        plugins.check_config("application/vnd.example.config+json")
    assert "plugin 'clumsy' failed in contentstore_accept_config" in str(info.value)
    assert "-p no:clumsy" in str(info.value)
