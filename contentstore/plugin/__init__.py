"""The public plugin API: the marker a plugin puts on its hook implementations.

A complete plugin, registered by its distribution's ``setup.cfg``::

    [options.entry_points]
    contentstore =
        wasm = contentstore_wasm

    # contentstore_wasm.py
    from contentstore.plugin import hookimpl

    @hookimpl
    def contentstore_accept_config(media_type, artifact_type):
        if "application/vnd.wasm.config.v0+json" in (media_type, artifact_type):
            return True

The hooks are specified, with what each argument and return value means, in
:mod:`contentstore.plugin.spec`.
"""

import pluggy

from contentstore.plugin.spec import hookspec

PROJECT_NAME = "contentstore"
ENTRY_POINT_GROUP = "contentstore"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: What ``contentstore_layer_compression`` answers for a layer that is a plain file and
#: not a tar (a ``.wasm`` module): stored and sent as it is, never inflated, and refused
#: by ``unpack``.
NOT_A_TAR = "not-a-tar"

__all__ = ["hookimpl", "hookspec", "PROJECT_NAME", "ENTRY_POINT_GROUP", "NOT_A_TAR"]
