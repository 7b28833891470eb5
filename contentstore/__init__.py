"""contentstore: a daemon-less, FUSE-free local content store for container images.

    from contentstore import Store, Reference
    store = Store()                      # or Store("/path/to/root")
    digest, size = store.put(b"hello")

The package is layered; each layer imports only from those below it (README,
"Architecture"): ``model`` (pure data), ``plugin`` (hooks and their manager), ``local``
(the store on disk), ``image`` (operations on local content), ``remote`` (registries),
and at the top :mod:`contentstore.store`, :mod:`contentstore.cli` and
:mod:`contentstore.testing`.
"""

from contentstore.errors import ContentStoreError
from contentstore.version import __version__

__all__ = ["Store", "Image", "Reference", "ContentStoreError", "__version__"]

_LAZY = {"Store": "contentstore.store", "Image": "contentstore.store", "Reference": "contentstore.model.reference"}


def __getattr__(name: str):
    """``Store``, ``Image`` and ``Reference`` are imported on first use, so that the command
    line starts without loading the store for ``--help``."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'contentstore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
