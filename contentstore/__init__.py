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
from contentstore.model.reference import Reference
from contentstore.store import Image, Store
from contentstore.version import __version__

__all__ = ["Store", "Image", "Reference", "ContentStoreError", "__version__"]
