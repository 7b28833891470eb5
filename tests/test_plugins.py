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
    plugins._load("exploding", explode, ("contentstore-exploding", "1.0"))
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


# -- what a plugin author meets: validation, switching off, one warning -------------------------


def test_an_unknown_argument_is_named_with_what_the_hook_gives():
    class BadSignature:
        @hookimpl
        def contentstore_accept_config(self, media_type, surprise):
            return True

    class Typo:
        @hookimpl
        def contentstore_parse_manifets(self, media_type, data):
            return None

    warnings = []
    plugins = pluginmanager.create(extra_plugins=[("badsig", BadSignature()), ("typo", Typo())],
                                   warn=warnings.append)
    failures = {f.name: f.error for f in plugins.failures}
    assert failures["badsig"] == ("PluginError: contentstore_accept_config takes 'surprise', which the hook "
                                  "does not give (it gives: media_type, artifact_type, manifest)")
    assert failures["typo"] == ("PluginError: implements unknown hook contentstore_parse_manifets "
                                "(did you mean contentstore_parse_manifest?)")
    # one warning each, through one channel (the command line prints it, or nothing with -q)
    assert warnings == [f"plugin 'badsig' failed to load and is ignored: {failures['badsig']}",
                        f"plugin 'typo' failed to load and is ignored: {failures['typo']}"]


def test_hook_functions_without_the_marker_are_hooks_as_in_pytest():
    import types

    module = types.ModuleType("contentstore_unmarked")
    exec("def contentstore_accept_config(media_type):\n"
         "    return media_type == 'application/x-unmarked' or None\n"
         "def contentstore_helper(x):\n"  # shares the prefix, no hook: left alone
         "    return x\n", module.__dict__)
    plugins = pluginmanager.create(extra_plugins=[("unmarked", module)])
    assert plugins.failures == []
    plugins.check_config("application/x-unmarked")
    assert {p.name: p.kind for p in plugins.info()}["unmarked"] == "format"


def test_blocked_names_stop_in_process_plugins_too():
    """-p no:NAME is pluggy's set_blocked: entry points are not even imported, and a plugin
    registered in-process under the name is refused the same way."""
    class Helm:
        @hookimpl
        def contentstore_accept_config(self, media_type):
            return True if media_type == mt.HELM_CONFIG else None

    plugins = pluginmanager.create(disabled={"helm", "schema1"}, extra_plugins=[("helm", Helm())])
    assert "helm" not in plugins.names() and "schema1" not in plugins.names()
    assert plugins.is_blocked("helm") and plugins.failures == []
    plugins.register(Helm(), "helm")
    with pytest.raises(UnsupportedMediaType):
        plugins.check_config(mt.HELM_CONFIG)
    plugins.block("mirror")
    assert "mirror" not in {p.name for p in plugins.info()}
    with pytest.raises(PluginError, match="cannot be disabled"):
        plugins.block("oci")


def test_accept_config_sees_the_artifact_type_and_the_manifest():
    from contentstore.model.manifest import parse_image_manifest
    import json

    def manifest(artifact_type):
        body = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                "config": {"mediaType": mt.OCI_EMPTY, "digest": "sha256:" + "4" * 64, "size": 2},
                "layers": []}
        if artifact_type:
            body["artifactType"] = artifact_type
        return parse_image_manifest(mt.OCI_MANIFEST, json.dumps(body).encode(), "OCI image manifest")

    seen = []

    class Wasm:
        @hookimpl
        def contentstore_accept_config(self, media_type, artifact_type, manifest):
            seen.append((media_type, artifact_type, manifest.config.media_type))
            return True if artifact_type == "application/vnd.wasm.config.v0+json" else None

    plugins = pluginmanager.create(extra_plugins=[("wasm", Wasm())])
    plugins.check_config(mt.OCI_EMPTY, manifest("application/vnd.wasm.config.v0+json"))
    with pytest.raises(UnsupportedMediaType) as info:
        plugins.check_config(mt.OCI_EMPTY, manifest("application/vnd.example.sbom"))
    assert str(info.value) == ("encountered remote artifact of type 'application/vnd.example.sbom' (config "
                               f"'{mt.OCI_EMPTY}') which is not an image; no installed plugin accepts artifact "
                               "type 'application/vnd.example.sbom'")
    with pytest.raises(UnsupportedMediaType, match="no installed plugin accepts config media type"):
        plugins.check_config(mt.OCI_EMPTY, manifest(None))
    assert seen[0] == (mt.OCI_EMPTY, "application/vnd.wasm.config.v0+json", mt.OCI_EMPTY)
    assert seen[2][1] is None


def test_wrapper_runs_around_every_other_implementation(plugins):
    """The ordering docs/hooks.md promises: later registered first, tryfirst before,
    trylast (the built-ins) after, a wrapper=True generator around them all."""
    from contentstore.config import Config
    from contentstore.model.endpoint import Endpoint
    from contentstore.model.reference import Reference

    order = []

    class Early:
        @hookimpl(tryfirst=True)
        def contentstore_modify_endpoints(self, endpoints):
            order.append("tryfirst")

    class Plain:
        @hookimpl
        def contentstore_modify_endpoints(self, endpoints):
            order.append("plain")

    class Around:
        @hookimpl(wrapper=True)
        def contentstore_modify_endpoints(self, endpoints):
            order.append("before")
            result = yield
            order.append(f"after: {[e.url for e in endpoints]}")  # what everybody made of it
            endpoints[:] = [e for e in endpoints if e.scheme == "https"]
            return result

    for plugin, name in ((Around(), "around"), (Plain(), "plain"), (Early(), "early")):
        plugins.register(plugin, name)
    reference = Reference.parse("127.0.0.1:5000/app:1")
    endpoints = plugins.modify_endpoints(reference, Config(), [Endpoint("https://127.0.0.1:5000", reference.registry)])
    assert order == ["before", "tryfirst", "plain",
                     "after: ['https://127.0.0.1:5000', 'http://127.0.0.1:5000']"]  # insecure ran (trylast)
    assert [e.url for e in endpoints] == ["https://127.0.0.1:5000"]


def test_notifications_reach_every_plugin_and_failures_are_warnings_naming_the_plugin():
    told, warnings = [], []

    class Clumsy:
        @hookimpl(tryfirst=True)
        def contentstore_gc_finished(self, report):
            raise OSError("disk on fire")

    class Audit:
        @hookimpl
        def contentstore_gc_finished(self, report):
            told.append(report)

    plugins = pluginmanager.create(extra_plugins=[("clumsy", Clumsy()), ("audit", Audit())],
                                   warn=warnings.append)
    plugins.gc_finished(report="the report")
    assert told == ["the report"]
    assert warnings == ["plugin 'clumsy' failed in contentstore_gc_finished: OSError: disk on fire "
                        "(disable it with -p no:clumsy)"]


def test_configure_once_with_settings_and_errors_naming_file_and_line(tmp_path):
    from contentstore import config as configuration
    from contentstore.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text("max_concurrent_downloads = 2\n\n[plugins.wasm]\nmax_module_size = -1\n\n"
                    "[plugins.wsam]\nx = 1\n")
    config = configuration.load(path)
    calls, warnings = [], []

    class Wasm:
        @hookimpl
        def contentstore_configure(self, config):
            settings = config.plugin_settings("wasm")
            calls.append(settings)
            if settings.get("max_module_size", 1) < 1:
                raise ConfigError("'max_module_size' must be at least 1")

    plugins = pluginmanager.create(extra_plugins=[("wasm", Wasm())], warn=warnings.append)
    with pytest.raises(ConfigError) as info:
        plugins.configure(config)
    assert str(info.value) == f"{path}:4: [plugins.wasm]: 'max_module_size' must be at least 1"
    assert calls == [{"max_module_size": -1}]
    assert warnings == [f"{path}:6: [plugins.wsam] names no installed plugin (installed: insecure, "
                        "manifestlist, mirror, oci, schema1, schema2, v1, wasm)"]
    plugins.configure(config)  # once
    assert len(calls) == 1

    class Late:
        @hookimpl
        def contentstore_configure(self, config):
            calls.append("late")

    plugins.register(Late(), "late")  # registered after the configuration: told on registration
    assert calls[-1] == "late"


def test_plugins_are_listed_by_kind():
    class Everything:
        @hookimpl
        def contentstore_add_commands(self, commands):
            pass

        @hookimpl
        def contentstore_verify_image(self, reference):
            pass

        @hookimpl
        def contentstore_image_pushed(self, reference):
            pass

    plugins = pluginmanager.create(extra_plugins=[("everything", Everything())])
    kinds = {p.name: p.kind for p in plugins.info()}
    assert kinds["everything"] == "policy+command+events"
    assert kinds["mirror"] == "policy" and kinds["oci"] == "format"


def test_every_type_in_a_hook_signature_is_listed_with_its_module():
    """hooks.md says where Endpoint, Config, Reference... live; the list must be whole and true."""
    import importlib
    import re

    from contentstore.plugin import docs as hookdoc
    from contentstore.plugin.spec import TYPES

    for name, (path, _) in TYPES.items():
        module, _, attribute = path.rpartition(".")
        assert getattr(importlib.import_module(module), attribute).__name__ == name
    named = set()
    for function in hookdoc.hooks():
        for annotation in function.__annotations__.values():
            named.update(re.findall(r"\b([A-Z][A-Za-z]+)\b", str(annotation)))
    assert named - {"Exception", "None"} <= set(TYPES) | {"Response", "Session"}  # requests' own


def test_distribution_names_and_versions_come_from_the_metadata_headers_once(monkeypatch):
    """What `plugins` and the image summaries show of a plugin's distribution is read
    from its metadata's header lines, once per distribution, and is what importlib says;
    the description after the headers is never parsed."""
    from importlib import metadata

    for dist in metadata.distributions():
        assert pluginmanager._read_name_and_version(dist) == (dist.name, dist.version)

    class Dist:
        reads = 0

        def read_text(self, name):
            Dist.reads += 1
            return ("Metadata-Version: 2.1\nName: example-plugin\nSummary: one\n  two: three\n"
                    "Version: 1.2.3\n\nVersion: 9 (in the description)\n") if name == "METADATA" else None

        @property
        def name(self):
            raise AssertionError("the whole metadata parsed")

        version = name

    dist = Dist()
    assert pluginmanager._name_and_version(dist) == ("example-plugin", "1.2.3")
    assert pluginmanager._name_and_version(dist) == ("example-plugin", "1.2.3")
    assert Dist.reads == 1
