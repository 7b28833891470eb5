"""The local store's parts, as the typed interfaces collaborators receive.

As containerd's content store splits reading (``Provider``), writing (``Ingester``) and
managing (``Manager``), each collaborator here asks only for what it uses: a download
needs to read and write blobs, gc to walk and delete them, an export only to read.
:class:`~contentstore.local.content.ContentStore` implements all three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Iterator, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from contentstore.local.content import BlobInfo, IngestStatus, IngestWriter, VerifiedReader
    from contentstore.local.fsutil import StrayFile
    from contentstore.model.digest import Digest
    from contentstore.model.manifest import Descriptor


class BlobReader(Protocol):
    """Reads blobs that are in the store."""

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int: ...

    def open(self, digest: str) -> BinaryIO:
        """The stored file as it is, unchecked."""

    def open_verified(self, digest: str, size: int | None = None) -> "VerifiedReader":
        """The blob, hashed as it is read: the read reaching its end raises
        :class:`~contentstore.errors.CorruptBlob` if the bytes changed on disk; a ``size``
        other than the stored one is an error at once."""

    def read(self, digest: str, limit: int | None = None) -> bytes:
        """A small blob's bytes, verified (:class:`~contentstore.errors.CorruptBlob`)."""


class BlobWriter(Protocol):
    """Puts blobs into the store, verified, through resumable ingests."""

    def writer(self, ref: str, expected: str | None = None, total: int | None = None,
               algorithm: str = "sha256", wait: bool = True) -> "IngestWriter": ...

    def put(self, data, expected: str | None = None, size: int | None = None,
            algorithm: str = "sha256") -> "BlobInfo": ...


class BlobStore(BlobReader, BlobWriter, Protocol):
    """Reads and writes blobs (a pull, an import)."""


class BlobManager(BlobReader, Protocol):
    """Lists, checks and deletes blobs and ingests (gc, verify)."""

    def walk(self) -> Iterator["BlobInfo"]: ...

    def delete(self, digest: str) -> None: ...

    def ingests(self) -> list["IngestStatus"]: ...

    def remove_stale_ingests(self, older_than: float, dry_run: bool = False) -> list["IngestStatus"]: ...

    def remove_temporary(self, dry_run: bool = False) -> list["StrayFile"]: ...

    def verify(self, workers: int | None = None) -> tuple[int, list[tuple["Digest", "Digest"]]]: ...

    def remove_corrupt(self, digest: str) -> bool: ...


class ReferenceIndex(Protocol):
    """The local references: named entries of ``index.json``."""

    def entries(self) -> list["Descriptor"]: ...

    def names(self) -> dict[str, "Descriptor"]: ...

    def get(self, name: str) -> "Descriptor | None": ...

    def named(self, digest: str) -> dict[str, "Descriptor"]: ...

    def resolve(self, name: str) -> "Descriptor": ...

    def tag(self, name: str, target: "Descriptor") -> None: ...

    def untag(self, name: str) -> "Descriptor": ...

    def problems(self) -> list[str]: ...

    def correct_sizes(self, sizes: dict[str, int]) -> list[str]: ...

    def remove_temporary(self, dry_run: bool = False) -> list["StrayFile"]: ...
