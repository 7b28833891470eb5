"""What plugins do to the command line (commands, settings, warnings, -p no:NAME), seen
through what contentstore.testing gives plugin authors: the contentstore_cli fixture,
push_image / push_artifact, plugin_manager."""

import json
import types

import pytest

from contentstore.model import mediatypes as mt
from contentstore.model.artifact import referrers_tag
from contentstore.plugin import hookimpl
from contentstore.testing import plugin_manager, push_artifact, push_image


def plugin(source: str, name: str = "example") -> types.ModuleType:
    """A plugin module made from source, as a test would write one."""
    module = types.ModuleType(f"contentstore_{name}")
    exec(f"from contentstore.plugin import hookimpl\n{source}", module.__dict__)
    return module


GREETER = plugin('''
from contentstore.errors import ConfigError, InvalidReference
settings = {}

@hookimpl
def contentstore_configure(config):
    settings.update(config.plugin_settings("greeter"))
    if not isinstance(settings.get("greeting", "hello"), str):
        raise ConfigError("'greeting' must be a string")

@hookimpl
def contentstore_add_commands(commands):
    greet = commands.add_parser("greet", help="say hello to an image")
    greet.add_argument("ref")
    greet.set_defaults(func=greet_image)

def greet_image(store, args):
    if args.ref == "bad":
        raise InvalidReference("bad is no image")
    if args.ref == "crash":
        return {}["nothing"]
    print(f"{settings.get('greeting', 'hello')} {args.ref} from {store.root.name}")
    return 3
''', "greeter")


def test_a_plugin_command_with_its_settings(contentstore_cli):
    contentstore_cli.register(GREETER, "greeter")
    assert "greet" in contentstore_cli("--help").out
    contentstore_cli.write_config('[plugins.greeter]\ngreeting = "bonjour"\n')
    result = contentstore_cli("greet", "alpine")
    assert result == type(result)(3, "bonjour alpine from root\n", "")
    bad = contentstore_cli("greet", "bad")
    assert (bad.ret, bad.err) == (1, "contentstore: error: bad is no image\n")
    crash = contentstore_cli("greet", "crash")
    assert crash.ret == 1 and crash.err == ("contentstore: error: plugin 'greeter' failed in its command 'greet': "
                                            "KeyError: 'nothing' (disable it with -p no:greeter)\n")
    off = contentstore_cli("-p", "no:greeter", "greet", "alpine")
    assert off.ret == 2 and "invalid choice: 'greet'" in off.err
    contentstore_cli.write_config("\n[plugins.greeter]\ngreeting = 3\n")
    wrong = contentstore_cli("greet", "alpine")
    assert wrong.err == (f"contentstore: error: {contentstore_cli.config}:3: [plugins.greeter]: 'greeting' must "
                         f"be a string\n")


def test_a_command_name_taken_is_an_error_naming_the_plugin(contentstore_cli):
    contentstore_cli.register(plugin('''
@hookimpl
def contentstore_add_commands(commands):
    commands.add_parser("pull")
''', "pushy"), "pushy")
    result = contentstore_cli("images")
    assert result.ret == 1
    assert result.err.startswith("contentstore: error: plugin 'pushy' failed in contentstore_add_commands: "
                                 "ArgumentError:") and "conflicting subparser: pull" in result.err
    assert result.err.endswith("(disable it with -p no:pushy)\n") and result.err.count("\n") == 1
    assert contentstore_cli("-p", "no:pushy", "images").ret == 0


def test_a_broken_plugin_is_one_warning_and_none_with_q(contentstore_cli):
    contentstore_cli.register(plugin('''
@hookimpl
def contentstore_accept_config(media_type, surprise):
    return True
''', "broken"), "broken")
    result = contentstore_cli("images")
    assert result.ret == 0
    assert result.err == ("contentstore: warning: plugin 'broken' failed to load and is ignored: PluginError: "
                          "contentstore_accept_config takes 'surprise', which the hook does not give (it gives: "
                          "media_type, artifact_type, manifest)\n")
    assert contentstore_cli("-q", "images").err == ""
    listing = contentstore_cli("plugins")
    assert "(broken) broken: PluginError: contentstore_accept_config takes 'surprise'" in listing.out
    assert contentstore_cli("-p", "no:broken", "images").err == ""  # switched off: not even loaded


def test_a_failing_notification_is_a_warning_and_the_command_succeeds(contentstore_cli):
    contentstore_cli.register(plugin('''
@hookimpl
def contentstore_gc_finished(report):
    raise RuntimeError("the audit log is full")
''', "audit"), "audit")
    result = contentstore_cli("gc")
    assert result.ret == 0 and "Total reclaimed space" in result.out
    assert result.err == ("contentstore: warning: plugin 'audit' failed in contentstore_gc_finished: "
                          "RuntimeError: the audit log is full (disable it with -p no:audit)\n")
    assert contentstore_cli("-q", "gc").err == ""


def test_the_cli_runs_in_a_private_home(contentstore_cli):
    put = contentstore_cli("blob", "put", "-", input="private\n")
    assert put.ret == 0 and contentstore_cli.store().exists(put.out.strip())
    assert contentstore_cli.root.is_dir()
    assert contentstore_cli("blob", "get", put.out.strip()).out == "private\n"
    assert contentstore_cli("no-such-command").ret == 2
    assert contentstore_cli("--version").ret == 0
    installed = contentstore_cli.subprocess("plugins")
    assert installed.ret == 0 and "manifestlist" in installed.out


def test_plugin_manager_adds_and_blocks():
    class Helm:
        @hookimpl
        def contentstore_accept_config(self, media_type):
            return True if media_type == mt.HELM_CONFIG else None

    plugins = plugin_manager({"helm": Helm()}, block=["schema1", "helm"])
    assert "helm" not in plugins.names() and "schema1" not in plugins.names()
    plugins.register(Helm(), "helm")  # blocked in-process too
    assert "helm" not in plugins.names()
    only = plugin_manager({"helm": Helm()}, entry_points=False)
    assert only.names() == ["helm"]


@pytest.mark.needs("docker-registry")
def test_push_image_and_an_artifact_with_a_subject(registry, store):
    image = push_image(registry, "testing/app:1", {"app.txt": "app\n"})
    assert image.reference == f"{registry.host}/testing/app:1"
    assert store.pull(image.reference).digest == image.descriptor.digest
    signature = push_artifact(registry, "testing/app", {"signature.json": json.dumps({"signed": True})},
                              artifact_type="application/vnd.example.signature.v1+json",
                              subject=image.descriptor, annotations={"org.example.signer": "team-a"})
    assert signature.reference == f"{registry.host}/testing/app@{signature.descriptor.digest}"
    sbom = push_artifact(registry, "testing/app", {"sbom.json": "{}"}, artifact_type="application/spdx+json",
                         subject=image.descriptor)

    class Artifacts:
        @hookimpl
        def contentstore_accept_config(self, artifact_type):
            return True if artifact_type else None

    store.plugins.register(Artifacts(), "artifacts")
    index = f"{registry.host}/testing/app:{referrers_tag(image.descriptor.digest)}"
    store.pull(index, all_platforms=True)
    listed = store.manifest(store.resolve(index)).manifests
    assert [(d.digest, d.artifact_type) for d in listed] == [
        (signature.descriptor.digest, "application/vnd.example.signature.v1+json"),
        (sbom.descriptor.digest, "application/spdx+json")]
    assert listed[0].annotations == {"org.example.signer": "team-a"}
    signed = store.manifest(signature.descriptor.digest)
    assert signed.subject.digest == image.descriptor.digest
    assert store.exists(signed.layers[0].digest)



@pytest.mark.parametrize("argv, found", [
    (["-p", "no:a", "pull", "x"], ["no:a"]),
    (["-pno:a", "-p=no:b", "-q", "images"], ["no:a", "no:b"]),
    (["--root", "-p", "-p", "no:c", "images"], ["no:c"]),  # --root's value is not an option
    (["--root=/r", "--config", "c.toml", "-v", "-p", "no:d", "images", "-p", "no:e"], ["no:d"]),
    (["greet", "-p", "no:f"], []),  # after the command: the command's own options
])
def test_plugin_options_are_read_before_the_parser_exists(argv, found):
    from contentstore.cli import global_plugin_options

    assert global_plugin_options(argv) == found
