"""Hook specifications: the whole contract between the contentstore core and its plugins.

A plugin is a module (or object) with functions named after these hooks and marked with
:data:`contentstore.plugin.hookimpl`, registered through an entry point in the group
``contentstore``. Hooks are always called with keyword arguments, so a plugin may accept
only the arguments it needs, and a spec can gain arguments without breaking plugins.

There are two kinds of plugin:

- **format** plugins teach the core manifest and config media types (the built-in
  ``schema2``, ``oci``, ``manifestlist`` and ``schema1`` are such plugins);
- **policy** plugins decide which registry endpoints a pull tries and when it moves on to
  the next one (the built-in ``mirror``, ``insecure`` and ``v1``).

Built-in plugins implement their hooks with ``trylast=True`` so that an installed plugin
answers first whatever order entry points load in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import requests

    from contentstore.config import Config
    from contentstore.model.digest import Digest
    from contentstore.model.endpoint import Endpoint
    from contentstore.model.manifest import Descriptor, ImageManifest, Manifest
    from contentstore.model.reference import Reference

hookspec = pluggy.HookspecMarker("contentstore")


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
    :return: a :class:`contentstore.manifest.ImageManifest` (one image: config and
        layers), a :class:`contentstore.manifest.ManifestIndex` (one manifest per
        platform; override ``match_rank`` for platform compatibility rules), or ``None``
        if this plugin does not handle ``media_type``. Raise
        :class:`contentstore.errors.InvalidManifest` for bytes that claim the type but do
        not hold a valid document. Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_accept_config(media_type: str) -> bool | None:
    """Say whether a manifest whose config has ``media_type`` may be pulled.

    The built-in format plugins accept Docker's and OCI's image config types. A plugin
    that teaches contentstore an artifact (a Helm chart, a WASM module) accepts its
    config type here.

    :return: ``True`` to accept, ``False`` to refuse, ``None`` to let other plugins
        decide; when no plugin accepts, the pull fails with an error naming the type.
        Stops at the first non-``None`` result.
    """


@hookspec(firstresult=True)
def contentstore_layer_compression(media_type: str) -> str | None:
    """Name the compression of a layer blob of ``media_type``.

    The core decompresses each layer as it streams to compute its diffID and to unpack
    it; this hook tells it how.

    :return: ``"gzip"``, ``"zstd"`` or ``"none"`` (an uncompressed tar), or ``None`` if
        this plugin does not know ``media_type``. Stops at the first non-``None`` result.
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
    reference: Reference, config: Config, endpoints: list[Endpoint]
) -> None:
    """Change, in place, the ordered list of endpoints a pull of ``reference`` tries.

    The core starts with one endpoint, ``https://`` on the reference's registry. A mirror
    policy inserts mirrors before it (or removes it, for sites that must never reach the
    upstream); an insecure policy adds a plain-``http://`` endpoint after an ``https://``
    one it is allowed to downgrade. Use ``tryfirst``/``trylast`` to order edits.

    :param reference: the reference being pulled or pushed.
    :param config: the loaded configuration (per-registry settings).
    :param endpoints: the list to edit.
    """


@hookspec(firstresult=True)
def contentstore_continue_on_error(
    endpoint: Endpoint, error: Exception, confirmed_v2: bool
) -> bool | None:
    """Decide whether a failure on ``endpoint`` moves the pull on to the next endpoint.

    Docker's rules (continueOnError): on a mirror any registry error moves on; on the
    upstream only unauthorized, denied, unknown and name-unknown errors and unexpected
    HTTP answers do; once ``confirmed_v2`` no other protocol is tried. A digest mismatch
    moves on from a mirror and never from the upstream.

    :param endpoint: the endpoint that failed.
    :param error: the :class:`contentstore.errors.ContentStoreError` it failed with.
    :param confirmed_v2: whether the endpoint was confirmed to speak the v2 protocol.
    :return: ``True`` to try the next endpoint, ``False`` to fail the pull with
        ``error``, ``None`` to let other policies decide (the core then fails). Stops at
        the first non-``None`` result.
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
