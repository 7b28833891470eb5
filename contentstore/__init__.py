"""contentstore: a daemon-less, FUSE-free local content store for container images.

    from contentstore import Store, Reference
    store = Store()                      # or Store("/path/to/root")
    digest, size = store.put(b"hello")
"""

__version__ = "0.1.0"

from .errors import ContentStoreError  # noqa: E402
from .reference import Reference  # noqa: E402
from .store import Image, Store  # noqa: E402

__all__ = ["Store", "Image", "Reference", "ContentStoreError", "__version__"]
