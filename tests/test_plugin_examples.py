"""Plugins written from docs/plugins.md and docs/hooks.md alone, as a new plugin author
would, tested the way the docs say to (contentstore.testing, a real registry):

- Wasm modules as OCI 1.1 artifacts (tests/plugins/contentstore-examples/contentstore_wasm.py);
- a site policy: an allow-list and a team fallback endpoint for pulls
  (tests/plugins/contentstore-examples/contentstore_site.py);
- the signature policy of docs/plugins.md, run from the docs' own code (against
  ``Store.referrers``, or a stand-in with its specified signature while the OCI 1.1
  referrers work is not in this branch), and in a variant that needs nothing but what
  this branch has: the referrers tag schema's index, pulled into the store.
"""

import hashlib
import hmac
import importlib.util
import json
import re
import types
from pathlib import Path

import pytest
import requests

from contentstore import Store
from contentstore.testing import push_artifact, push_image

EXAMPLES = Path(__file__).resolve().parent / "plugins" / "contentstore-examples"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

pytestmark = pytest.mark.needs("docker-registry")


def load(name: str) -> types.ModuleType:
    """A fresh copy of an example plugin module (its settings start from scratch)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not comments, not docstrings."""
    import ast

    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and number not in docstrings)


@pytest.mark.parametrize("name", ["contentstore_wasm", "contentstore_site"])
def test_each_example_is_under_50_lines_of_code(name):
    assert code_lines(EXAMPLES / f"{name}.py") < 50


# -- Wasm modules -----------------------------------------------------------------------------------

WASM_MODULE = b"\0asm\1\0\0\0" + b"\x01\x04\x01\x60\x00\x00"  # a module header and a type section


def test_wasm_modules_from_the_docs(contentstore_cli, registry, tmp_path):
    wasm = load("contentstore_wasm")
    module = push_artifact(registry, "wasm/hello:1", {"hello.wasm": WASM_MODULE},
                           artifact_type=wasm.WASM, media_type=wasm.MODULE)
    large = push_artifact(registry, "wasm/large:1", {"large.wasm": WASM_MODULE + bytes(2000)},
                          artifact_type=wasm.WASM, media_type=wasm.MODULE)
    sbom = push_artifact(registry, "wasm/hello", {"sbom.json": "{}"}, artifact_type="application/spdx+json",
                         subject=module.descriptor)

    refused = contentstore_cli("pull", module.reference)  # no plugin: an artifact is not an image
    assert refused.ret == 1 and "artifact of type 'application/vnd.wasm.config.v0+json'" in refused.err

    contentstore_cli.register(wasm, "wasm")
    journal = tmp_path / "journal.jsonl"
    contentstore_cli.write_config(f'[plugins.wasm]\nmax_module_size = 1024\njournal = "{journal}"\n')
    pulled = contentstore_cli("pull", module.reference)
    assert pulled.ret == 0, pulled.err
    store = contentstore_cli.store()
    [layer] = store.manifest(store.resolve(module.reference)).layers
    with store.open(layer.digest) as f:
        assert f.read() == WASM_MODULE
    assert contentstore_cli("wasm-ls").lines == [  # the tag, and the digest reference a pull records
        f"{name} {layer.digest} {layer.size}"
        for name in (module.reference, f"{registry.host}/wasm/hello@{module.descriptor.digest}")]
    assert "wasm-ls" in contentstore_cli("--help").out

    # the module is a file, not a tar: unpack says so, naming it
    unpacked = contentstore_cli("unpack", module.reference, str(tmp_path / "rootfs"))
    assert unpacked.ret == 1 and f"layer {layer.digest} ({wasm.MODULE}) is a file, not a tar" in unpacked.err

    # accepting Wasm by artifact type accepts no other artifact
    other = contentstore_cli("pull", sbom.reference)
    assert other.ret == 1 and "artifact of type 'application/spdx+json'" in other.err

    # the size limit from [plugins.wasm] refuses before a reference is written
    too_large = contentstore_cli("pull", large.reference)
    assert too_large.ret == 1
    assert too_large.err == (f"contentstore: error: {large.reference}: Wasm module of 2014 bytes is over "
                             f"max_module_size (1024)\n")
    assert large.reference not in contentstore_cli.store().references()

    pushed = contentstore_cli("push", module.reference, f"{registry.host}/wasm/copied:1")
    assert pushed.ret == 0, pushed.err
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert events == [["pulled", module.reference, module.descriptor.digest],
                      ["pushed", f"{registry.host}/wasm/copied:1", module.descriptor.digest]]

    contentstore_cli.write_config('[plugins.wasm]\nmax_module_size = "big"\n')
    bad = contentstore_cli("wasm-ls")
    assert bad.err == (f"contentstore: error: {contentstore_cli.config}:2: [plugins.wasm]: 'max_module_size' "
                       f"must be a positive number of bytes\n")


# -- a site policy --------------------------------------------------------------------------------


def exists(registry, repository: str, tag: str) -> bool:
    return requests.head(f"{registry.url}/v2/{repository}/manifests/{tag}", timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code == 200


def test_site_policy_from_the_docs(contentstore_cli, registry, registry_factory):
    team = registry_factory()  # the team's endpoint: holds what the registry does not
    only_on_team = push_image(team, "team/tool:1", {"tool.txt": "the team's build\n"})
    outside = push_image(registry, "other/app:1", {"other.txt": "not ours\n"})
    ours = push_image(registry, "team/app:1", {"app.txt": "ours\n"})

    contentstore_cli.register(load("contentstore_site"), "site")
    contentstore_cli.write_config(f'[plugins.site]\nallowed = ["{registry.host}/team/"]\n'
                                  f'fallback = "{team.url}"\n')

    # a pull falls back to the team endpoint, recorded under the registry's own name
    tool = f"{registry.host}/team/tool:1"
    pulled = contentstore_cli("pull", tool)
    assert pulled.ret == 0, pulled.err
    assert f"Pulled from mirror {team.url}" in pulled.out
    assert contentstore_cli.store().image(tool).digest == only_on_team.descriptor.digest

    # outside the allow-list: refused before a reference is written, the operation named
    refused = contentstore_cli("pull", outside.reference)
    assert refused.ret == 1
    assert refused.err == (f"contentstore: error: pull of {outside.reference} refused: not in "
                           f"[plugins.site] allowed\n")
    assert outside.reference not in contentstore_cli.store().references()
    copied = contentstore_cli("copy", outside.reference, f"{registry.host}/team/stolen:1")
    assert copied.ret == 1 and copied.err.startswith(f"contentstore: error: copy of {outside.reference}")

    # a push never goes to the team endpoint: it is a pull-only mirror
    pushed = contentstore_cli("push", tool, f"{registry.host}/team/tool:2")
    assert pushed.ret == 0, pushed.err
    assert exists(registry, "team/tool", "2") and not exists(team, "team/tool", "2")
    # a copy pulls (the team endpoint may serve) and pushes to the registry itself
    assert contentstore_cli("copy", ours.reference, f"{registry.host}/team/app:2").ret == 0
    assert exists(registry, "team/app", "2") and not exists(team, "team/app", "2")
    login = contentstore_cli("login", registry.host, "-u", "someone", "--password-stdin", input="secret\n")
    assert login.ret == 0 and login.out.endswith("Login Succeeded\n")
    assert (contentstore_cli.home / ".docker" / "config.json").exists()  # the private HOME


# -- the signature policy ---------------------------------------------------------------------------

SIGNATURE = "application/vnd.example.signature.v1+json"
MAC = "org.example.signature.hmac-sha256"
KEY = "a secret shared with the signers"


def docs_signature_policy() -> types.ModuleType:
    """The code block ``# contentstore_sigpolicy.py`` of docs/plugins.md, as a module."""
    [source] = re.findall(r"```python\n(# contentstore_sigpolicy\.py\n.*?)```", DOCS.read_text(), re.S)
    module = types.ModuleType("contentstore_sigpolicy")
    exec(compile(source, str(DOCS), "exec"), module.__dict__)
    return module


# The same policy, finding the signatures through what this branch has: the referrers tag
# schema's index (sha256-<hex>), pulled into the store with the signatures it lists.
TAG_SCHEMA_POLICY = '''
import hashlib
import hmac

from contentstore.errors import ConfigError, RemoteNotFound, VerificationError
from contentstore.plugin import hookimpl

SIGNATURE = "application/vnd.example.signature.v1+json"
MAC = "org.example.signature.hmac-sha256"
settings = {}


class Unsigned(VerificationError):
    """An image from a protected repository without a valid signature."""


@hookimpl
def contentstore_configure(config):
    table = config.plugin_settings("sigpolicy")
    if not isinstance(table.get("key"), str):
        raise ConfigError("'key' must be a string: the key the signatures are made with")
    settings.update(key=table["key"].encode(), protect=tuple(table.get("protect", ())))


@hookimpl
def contentstore_accept_config(artifact_type):
    return True if artifact_type == SIGNATURE else None  # the signatures themselves are pulled


def referrers(store, name, digest):
    index = f"{name}:{digest.algorithm}-{digest.hex}"
    try:
        store.pull(index, all_platforms=True)
    except RemoteNotFound:
        return []
    return [d for d in store.manifest(store.resolve(index)).manifests if d.artifact_type == SIGNATURE]


@hookimpl
def contentstore_verify_image(reference, descriptor, store):
    if reference is None or not reference.name.startswith(settings["protect"]) \\
            or (reference.tag or "").startswith("sha256-"):  # a referrers index, not an image
        return
    expected = hmac.new(settings["key"], descriptor.digest.encode(), hashlib.sha256).hexdigest()
    for signature in referrers(store, reference.name, descriptor.digest):
        if hmac.compare_digest(signature.annotations.get(MAC, ""), expected):
            return
    raise Unsigned(f"{reference}: no valid signature for {descriptor.digest}; refused")
'''


def tag_schema_signature_policy() -> types.ModuleType:
    module = types.ModuleType("contentstore_sigpolicy")
    exec(TAG_SCHEMA_POLICY, module.__dict__)
    return module


def sign(registry, image, key: str = KEY):
    mac = hmac.new(key.encode(), image.descriptor.digest.encode(), hashlib.sha256).hexdigest()
    repository = image.reference.split("/", 1)[1].split(":")[0]
    return push_artifact(registry, repository, {"signature.json": json.dumps({"signed": image.descriptor.digest})},
                         artifact_type=SIGNATURE, subject=image.descriptor, annotations={MAC: mac})


def referrers_stand_in(self, ref, artifact_type=None, remote=True):
    """``Store.referrers`` as the OCI 1.1 work specifies it (``-> list[Descriptor]``), for
    as long as that work is not in this branch: the registry's referrers tag schema index,
    read over HTTP (the test registry speaks plain HTTP)."""
    from contentstore.model.manifest import Descriptor
    from contentstore.model.reference import Reference

    reference = Reference.parse(ref)
    answer = requests.get(f"http://{reference.registry}/v2/{reference.repository}/manifests/"
                          f"{reference.digest.algorithm}-{reference.digest.hex}", timeout=10,
                          headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    listed = [Descriptor.from_json(entry) for entry in answer.json()["manifests"]]
    return [d for d in listed if artifact_type is None or d.artifact_type == artifact_type]


@pytest.mark.parametrize("variant", ["docs", "referrers tag schema"])
def test_signature_policy(variant, contentstore_cli, registry, monkeypatch):
    if variant == "docs":
        if not hasattr(Store, "referrers"):
            monkeypatch.setattr(Store, "referrers", referrers_stand_in, raising=False)
        policy = docs_signature_policy()
    else:
        policy = tag_schema_signature_policy()
    signed = push_image(registry, "prod/signed:1", {"s.txt": "signed\n"})
    sign(registry, signed)
    unsigned = push_image(registry, "prod/unsigned:1", {"u.txt": "unsigned\n"})
    forged = push_image(registry, "prod/forged:1", {"f.txt": "forged\n"})
    sign(registry, forged, key="not the key")
    free = push_image(registry, "dev/free:1", {"d.txt": "not protected\n"})

    contentstore_cli.register(policy, "sigpolicy")
    unconfigured = contentstore_cli("pull", free.reference)  # fails closed without its key
    assert unconfigured.ret == 1 and unconfigured.err.endswith(
        "[plugins.sigpolicy]: 'key' must be a string: the key the signatures are made with\n")
    contentstore_cli.write_config(f'[plugins.sigpolicy]\nkey = "{KEY}"\nprotect = ["{registry.host}/prod/"]\n')

    assert contentstore_cli("pull", signed.reference).ret == 0
    assert contentstore_cli("pull", free.reference).ret == 0
    for image in (unsigned, forged):
        result = contentstore_cli("pull", image.reference)
        assert result.ret == 1
        assert result.err == (f"contentstore: error: {image.reference}: no valid signature for "
                              f"{image.descriptor.digest}; refused\n")
        assert image.reference not in contentstore_cli.store().references()
    assert {signed.reference, free.reference} <= set(contentstore_cli.store().references())
