"""Wasm modules as OCI 1.1 artifacts: accepted by artifact type, the module kept as a file."""
import json
from pathlib import Path

from contentstore.errors import ConfigError, VerificationError
from contentstore.plugin import NOT_A_TAR, hookimpl

WASM = "application/vnd.wasm.config.v0+json"          # the artifactType
MODULE = "application/vnd.wasm.content.layer.v1+wasm"  # the layer: a .wasm file, no tar
DEFAULTS = {"max_module_size": 10 << 20, "journal": None}
settings = dict(DEFAULTS)


class ModuleTooLarge(VerificationError):
    """A module over [plugins.wasm] max_module_size."""


@hookimpl
def contentstore_configure(config):
    settings.clear()
    settings.update(DEFAULTS, **config.plugin_settings("wasm"))
    if not isinstance(settings["max_module_size"], int) or settings["max_module_size"] < 1:
        raise ConfigError("'max_module_size' must be a positive number of bytes")


@hookimpl
def contentstore_accept_config(artifact_type):
    return True if artifact_type == WASM else None


@hookimpl
def contentstore_layer_compression(media_type):
    return NOT_A_TAR if media_type == MODULE else None


@hookimpl
def contentstore_verify_image(reference, descriptor, store):
    for layer in getattr(store.manifest(descriptor), "layers", []):
        if layer.media_type == MODULE and layer.size > settings["max_module_size"]:
            raise ModuleTooLarge(f"{reference}: Wasm module of {layer.size} bytes is over "
                                 f"max_module_size ({settings['max_module_size']})")


@hookimpl
def contentstore_add_commands(commands):
    parser = commands.add_parser("wasm-ls", help="list the Wasm modules in the store")
    parser.set_defaults(func=list_modules)


def list_modules(store, args):
    for name, descriptor in sorted(store.references().items()):
        manifest = store.manifest(descriptor)
        if manifest.body.get("artifactType") == WASM:
            print(name, *(f"{m.digest} {m.size}" for m in manifest.layers if m.media_type == MODULE))
    return 0


def journal(event, reference, descriptor):
    if settings["journal"]:
        with Path(settings["journal"]).open("a") as out:
            out.write(json.dumps([event, str(reference), descriptor.digest]) + "\n")


@hookimpl
def contentstore_image_pulled(reference, descriptor):
    journal("pulled", reference, descriptor)


@hookimpl
def contentstore_image_pushed(reference, descriptor):
    journal("pushed", reference, descriptor)
