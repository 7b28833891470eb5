"""Hook specifications: the whole contract between the contentstore core and its plugins.

A plugin is a module (or object) with functions named after these hooks, registered
through an entry point in the group ``contentstore``. Mark each one with
:data:`contentstore.plugin.hookimpl` (needed for options: ``tryfirst``, ``trylast``,
``wrapper``); a plain function named after a hook is taken as one too, as pytest takes
``pytest_*`` functions. Hooks are always called with keyword arguments, so a plugin may
accept only the arguments it needs, and a hook only ever gains arguments: a plugin
written against an older contentstore keeps working.

What a plugin can do:

- **format**: teach the core manifest, config and layer media types (the built-in
  ``schema2``, ``oci``, ``manifestlist`` and ``schema1``; a Helm or Wasm plugin);
- **policy**: decide which registry endpoints each operation tries and when it moves on
  to the next one (the built-in ``mirror``, ``insecure`` and ``v1``), and refuse images
  before they are named (``contentstore_verify_image``);
- **settings**: read its own ``[plugins.NAME]`` table of the configuration file;
- **command**: add subcommands to the ``contentstore`` command line;
- **events**: be told when an image was pulled or pushed and when gc finished.

Order: for each hook, plugins registered later are called first; ``tryfirst=True`` and
``trylast=True`` move an implementation to the front or the back, and a
``wrapper=True`` generator runs around all the others (code before its ``yield`` first,
after it last). Built-in plugins implement their hooks with ``trylast=True`` so that an
installed plugin answers first whatever order entry points load in.

Errors: a hook refuses by raising a subclass of
:class:`contentstore.errors.ContentStoreError` (``ConfigError``, ``VerificationError``,
your own subclass); its message is the one line the command line prints. Any other
exception is a bug in the plugin: it becomes a ``PluginError`` naming the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    import requests

    from contentstore.config import Config
    from contentstore.model.digest import Digest
    from contentstore.model.endpoint import Endpoint
    from contentstore.model.manifest import Descriptor, ImageManifest, Manifest
    from contentstore.model.reference import Reference

    # Store (contentstore.store) and GcReport (contentstore.local.maintenance) live in
    # layers above this one: they are named, not imported (see TYPES).

hookspec = pluggy.HookspecMarker("contentstore")

#: Where each type named in a hook signature lives, and what it is: the hook reference
#: lists them (a test checks that every name resolves and every annotation is listed).
TYPES = {
    "Reference": ("contentstore.model.reference.Reference",
                  "a normalized image reference: ``registry``, ``repository``, ``tag``, ``digest``; "
                  "``str()`` gives the full name, ``Reference.parse(text)`` makes one"),
    "Descriptor": ("contentstore.model.manifest.Descriptor",
                   "an OCI descriptor: ``media_type``, ``digest``, ``size``, ``platform``, "
                   "``annotations``, ``artifact_type``"),
    "Manifest": ("contentstore.model.manifest.Manifest",
                 "any parsed manifest: ``media_type``, ``raw`` (the bytes), ``body`` (the JSON), "
                 "``digest``"),
    "ImageManifest": ("contentstore.model.manifest.ImageManifest",
                      "one image or artifact: a ``Manifest`` with ``config``, ``layers`` and "
                      "``subject`` descriptors"),
    "ManifestIndex": ("contentstore.model.manifest.ManifestIndex",
                      "an index: a ``Manifest`` with ``manifests``, one descriptor per platform"),
    "Digest": ("contentstore.model.digest.Digest",
               "a validated ``algorithm:hex`` string, with ``algorithm`` and ``hex``"),
    "Endpoint": ("contentstore.model.endpoint.Endpoint",
                 "one place to reach a registry: ``url``, ``registry`` (whose content it serves), "
                 "``mirror`` (a read-only copy: pulls only), ``verify_tls``; also "
                 "``contentstore.endpoint.Endpoint``"),
    "Config": ("contentstore.config.Config",
               "the loaded configuration file: ``path``, ``registry(host)``, "
               "``plugin_settings(name)``"),
    "Store": ("contentstore.store.Store",
              "the local store (the Python API of the README): ``manifest(descriptor)``, "
              "``open(digest)``, ``image(ref)``, ``references()``, ``pull``, ``tag``"),
    "GcReport": ("contentstore.local.maintenance.GcReport",
                 "what gc did: ``dry_run``, ``removed``, ``removed_bytes``, ``kept``, ``ingests``, "
                 "``temporary``"),
}


# -- manifest formats ---------------------------------------------------------------------


@hookspec
def contentstore_manifest_media_types() -> list[str]:
    """Return the manifest media types this plugin parses, most preferred first.

    The core joins the answers of all plugins into the ``Accept`` header it sends when it
    fetches a manifest, so a registry only ever serves a format some plugin can read.
    """


@hookspec(firstresult=True)
def contentstore_detect_media_type(data: bytes) -> str | None:
    """Recognise a manifest from its bytes when its media type is not known.

    Called when a registry answers with no or a generic ``Content-Type`` (``text/plain``,
    ``application/json``), when importing files, and when the store meets a blob whose
    media type nobody recorded.

    :param data: the raw manifest bytes (at most 4 MiB).
    :return: the media type, or ``None`` to let other plugins look. Stops at the first
        non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_parse_manifest(media_type: str, data: bytes) -> Manifest | None:
    """Parse a manifest of ``media_type`` into an object the core understands.

    :param media_type: the media type the registry or a descriptor gave.
    :param data: the raw bytes, byte for byte as served; keep them in the result's
        ``raw`` so digests stay the registry's.
    :return: a :class:`contentstore.model.manifest.ImageManifest` (one image: config
        and layers), a :class:`contentstore.model.manifest.ManifestIndex` (one manifest
        per platform; override ``match_rank`` for platform compatibility rules), or
        ``None`` if this plugin does not handle ``media_type``. Raise
        :class:`contentstore.errors.InvalidManifest` for bytes that claim the type but do
        not hold a valid document. Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_accept_config(media_type: str, artifact_type: str | None,
                               manifest: ImageManifest) -> bool | None:
    """Say whether an image manifest whose config has ``media_type`` may be pulled.

    The built-in format plugins accept Docker's and OCI's image config types. A plugin
    that teaches contentstore an artifact accepts it here: by its config type (a Helm
    chart: ``application/vnd.cncf.helm.config.v1+json``), or, for an OCI 1.1 artifact,
    whose config is always the empty ``application/vnd.oci.empty.v1+json``, by its
    ``artifact_type``, so that accepting Wasm modules does not accept every artifact.

    :param media_type: the config descriptor's media type.
    :param artifact_type: the manifest's ``artifactType``, or ``None`` when it has none.
    :param manifest: the parsed manifest (``manifest.body`` is its JSON, ``layers`` and
        ``subject`` its descriptors), to decide on more than the types.
    :return: ``True`` to accept, ``False`` to refuse, ``None`` to let other plugins
        decide; when no plugin accepts, the pull fails with an error naming the type.
        Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_layer_compression(media_type: str) -> str | None:
    """Name the compression of a layer blob of ``media_type``.

    The core decompresses each layer as it streams to compute its diffID and to unpack
    it; this hook tells it how.

    :return: ``"gzip"``, ``"zstd"`` or ``"none"`` (an uncompressed tar);
        ``"not-a-tar"`` (:data:`contentstore.plugin.NOT_A_TAR`) for a layer that is a
        plain file and no file system (a ``.wasm`` module, an artifact's file): it is
        pulled, pushed, exported and imported as it is, never inflated, and ``unpack``
        refuses it, naming it; ``None`` if this plugin does not know ``media_type``.
        Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_convert_manifest(
    manifest: ImageManifest, layers: list[Descriptor], diff_ids: list[Digest], reference: Reference
) -> tuple[bytes, bytes] | None:
    """Build an image config and an OCI manifest for a manifest that has no config blob.

    Called after a pull of such a manifest (Docker schema1) has downloaded its layers.
    The result is stored beside the original, and the local reference points to the
    converted manifest so every OCI tool can read it (Docker's MakeConfigFromV1Config).

    :param manifest: the parsed original, as this plugin's ``parse_manifest`` made it.
    :param layers: ``manifest.layers`` as downloaded, with their real sizes.
    :param diff_ids: the diffID of each of ``layers``, in order.
    :param reference: the reference being pulled (for messages).
    :return: ``(config_bytes, manifest_bytes)``, or ``None`` if this plugin did not
        parse ``manifest``. Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_oci_media_type(media_type: str) -> str | None:
    """Name the OCI media type that corresponds to ``media_type``.

    Used when an image is exported as OCI (``export --format oci``): the manifests are
    rewritten with the OCI equivalents of Docker's media types, as ``skopeo copy
    --format oci`` does.

    :return: the OCI media type (``media_type`` itself if it already is one), or
        ``None`` if this plugin does not know it (it is then kept as it is). Stops at
        the first non-``None`` result.
    """


# -- registry fallback policies -------------------------------------------------------------


@hookspec
def contentstore_modify_endpoints(
    reference: Reference, config: Config, endpoints: list[Endpoint], operation: str
) -> None:
    """Change, in place, the ordered list of endpoints ``operation`` tries for ``reference``.

    The core builds a new list for each operation, starting with one endpoint,
    ``https://`` on the reference's registry, and calls every policy to edit it. An
    endpoint a policy adds is used only by the operation it was added for: look at
    ``operation`` to add a pull-only fallback. A policy may

    - insert mirrors (``Endpoint(url, registry=reference.registry, mirror=True)``):
      places that serve the registry's content for reading. Pulls try them in order and
      move on from one that fails; whatever comes from one is recorded under the
      registry's own name, and a tag is first resolved on the registry itself when it
      can be reached. ``push`` and ``login`` never go to a mirror, whatever a policy adds;
    - add other endpoints of the registry itself (``mirror=False``): a plain-``http://``
      one after ``https://``, as the ``insecure`` policy does; these serve every
      operation they are added for, pushes included;
    - remove endpoints, to keep an operation from the upstream (as ``mirror_fallback =
      false`` does). A list left empty fails the operation with an error naming the
      policy; to refuse an operation outright, raise a
      :class:`contentstore.errors.ContentStoreError` subclass instead, with a message
      that says why.

    :param reference: the reference being pulled, pushed or logged in to.
    :param config: the loaded configuration (``config.registry(host)``: per-registry
        settings; ``config.plugin_settings(NAME)``: a plugin's own table).
    :param endpoints: the list to edit.
    :param operation: the command being served: ``"pull"``, ``"push"``, ``"copy"`` (both
        halves of a copy), ``"login"``, and later ones (``"sync"``, ...): compare with
        the ones you mean rather than assume a list.
    """


@hookspec(firstresult=True)
def contentstore_continue_on_error(
    endpoint: Endpoint, error: Exception, confirmed_v2: bool, reference: Reference, operation: str
) -> bool | None:
    """Decide whether a failure on ``endpoint`` moves ``operation`` on to the next endpoint.

    Asked during pulls, after the endpoint answered the ``/v2/`` ping (an endpoint that
    cannot be reached, or is no v2 registry, is passed over without asking); push and
    login never move on after a good ping. Docker's rules (continueOnError), which the
    ``mirror`` policy implements: on a mirror any registry error moves on; on the
    upstream only unauthorized, denied, unknown and name-unknown errors and unexpected
    HTTP answers do; once ``confirmed_v2`` no other protocol is tried. A digest mismatch
    moves on from a mirror and never from the upstream. An image refused by
    ``contentstore_verify_image`` never moves on: every endpoint serves the same digest.

    :param endpoint: the endpoint that failed.
    :param error: the :class:`contentstore.errors.ContentStoreError` it failed with.
    :param confirmed_v2: whether the endpoint was confirmed to speak the v2 protocol.
    :param reference: the reference being pulled.
    :param operation: the command being served (see ``contentstore_modify_endpoints``).
    :return: ``True`` to try the next endpoint, ``False`` to fail with ``error``,
        ``None`` to let other policies decide (the core then fails). Stops at the first
        non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_explain_ping_failure(
    endpoint: Endpoint, response: requests.Response, session: requests.Session
) -> Exception | None:
    """Explain why ``endpoint`` did not answer the ``/v2/`` ping as a v2 registry.

    :param endpoint: the endpoint pinged.
    :param response: its answer to ``GET /v2/`` (neither 200 nor 401).
    :param session: a session to that endpoint, to probe further (``/v1/_ping``).
    :return: an exception to raise instead of a generic error (for a v1-only registry,
        one that says v1 is retired), or ``None``. Stops at the first non-``None`` result.
    """


@hookspec
def contentstore_verify_image(reference: Reference | None, descriptor: Descriptor, store: Store,
                              operation: str) -> None:
    """Accept or refuse an image before a reference to it is written.

    Called for every image a pull, copy, import (or sync) is about to name, after every
    blob of it was stored and verified, and before the first reference is written; also
    when the store already held the image. Raise a
    :class:`contentstore.errors.ContentStoreError` subclass to refuse it: no reference
    is written (an import names none of the archive's images), the error is the
    operation's, and the blobs stay until gc. This is where a signature or provenance
    policy belongs. Every plugin is called; the first to raise decides.

    :param reference: the name about to be written (for a pull by digest, the
        ``name@digest`` reference), or ``None`` for an OCI archive's bare tag (``1.0``).
    :param descriptor: the manifest or index as the registry serves it: its digest is
        the registry's (what a signature signs; for schema1, the converted manifest's),
        ``store.manifest(descriptor)`` parses it. For a multi-platform image this is the
        index, once; the platforms that were pulled are in the store.
    :param store: the :class:`contentstore.store.Store`, to read what was pulled
        (``store.manifest``, ``store.open``) and look for other content (referrers).
    :param operation: ``"pull"``, ``"copy"``, ``"import"`` or ``"sync"``.
    """


# -- settings and commands ----------------------------------------------------------------------


@hookspec
def contentstore_configure(config: Config) -> None:
    """Read this plugin's settings; called once, when the configuration is loaded.

    A plugin's settings live in its own table of the configuration file, named after
    its entry point, which the core hands over unchecked::

        [plugins.wasm]
        max_module_size = 1048576

    ``config.plugin_settings("wasm")`` is that table as a ``dict`` (``{}`` when absent).
    Check it here, and raise :class:`contentstore.errors.ConfigError` for a bad setting:
    the core adds the file and the line of the table (or of the key the message quotes)
    in front of the message. Keep what you need in a module-level variable or on the
    plugin object; hooks called later also get ``config`` where they need it.

    :param config: the :class:`contentstore.config.Config` just loaded.
    """


@hookspec
def contentstore_add_commands(commands: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``contentstore`` command line.

    ``commands`` is the argparse sub-parsers object of the command line::

        run = commands.add_parser("wasm-ls", help="list the Wasm modules in the store")
        run.add_argument("--json", action="store_true")
        run.set_defaults(func=list_modules)

    ``func`` is called as ``func(store, args)`` with the opened
    :class:`contentstore.store.Store` (its configuration loaded, so
    ``contentstore_configure`` has run) and the parsed ``argparse.Namespace``; it
    returns the exit status (``None`` is 0). A ``ContentStoreError`` it raises is the
    usual one-line error with status 1. The global options (``--root``, ``--config``,
    ``-q``, ``-v``, ``-p``) come before the command, as for every other command; a name
    that is already a command is an error naming the plugin.

    :param commands: the ``argparse._SubParsersAction`` to call ``add_parser`` on.
    """


# -- events ---------------------------------------------------------------------------------------


@hookspec
def contentstore_image_pulled(reference: Reference, descriptor: Descriptor, store: Store) -> None:
    """Be told that ``reference`` now names ``descriptor`` after a pull (or the pull half of
    a copy), also when the image was already up to date.

    A notification: what it returns is ignored; an exception it raises is reported as a
    warning naming the plugin, and neither undoes the pull nor keeps the other plugins
    from being told.

    :param reference: the reference pulled (tag or digest, normalized).
    :param descriptor: as for ``contentstore_verify_image``.
    :param store: the :class:`contentstore.store.Store`.
    """


@hookspec
def contentstore_image_pushed(reference: Reference, descriptor: Descriptor) -> None:
    """Be told that ``descriptor`` was pushed to ``reference`` (a push, or the push half of a
    copy). A notification, as ``contentstore_image_pulled``.

    :param reference: where it went (registry, repository, tag or digest).
    :param descriptor: the manifest or index pushed; its digest is the registry's.
    """


@hookspec
def contentstore_gc_finished(report: GcReport) -> None:
    """Be told that gc finished (also a dry run: ``report.dry_run``). A notification, as
    ``contentstore_image_pulled``.

    :param report: the :class:`contentstore.local.maintenance.GcReport`: ``removed``
        (blobs: ``digest`` and ``size``), ``removed_bytes``, ``kept``, ``ingests`` and
        ``temporary`` (stray files).
    """
