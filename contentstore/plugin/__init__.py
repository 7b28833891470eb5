"""The public plugin API: the marker a plugin puts on its hook implementations.

A complete plugin, registered by its distribution's ``setup.cfg``::

    [options.entry_points]
    contentstore =
        wasm = contentstore_wasm

    # contentstore_wasm.py
    from contentstore.plugin import hookimpl

    @hookimpl
    def contentstore_accept_config(media_type):
        if media_type == "application/vnd.wasm.config.v1+json":
            return True

The hooks are specified, with what each argument and return value means, in
:mod:`contentstore.plugin.spec`.
"""

import pluggy

from contentstore.plugin.spec import hookspec

PROJECT_NAME = "contentstore"
ENTRY_POINT_GROUP = "contentstore"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["hookimpl", "hookspec", "PROJECT_NAME", "ENTRY_POINT_GROUP"]
