"""contentstore's built-in plugins, one module each, installed as ``contentstore_plugins``.

Each is registered through an entry point in the group ``contentstore`` (setup.cfg), the
same way a third-party plugin is; the core imports none of them.
"""
