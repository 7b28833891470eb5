"""The exceptions contentstore raises: one base class, one subclass per thing a caller
may handle differently.

Every message is a single line fit for ``contentstore: error: <message>``.
Errors about bad input a caller gave also inherit :class:`ValueError`.
"""

from __future__ import annotations


class ContentStoreError(Exception):
    """Base class of every error contentstore raises on purpose."""


# -- bad input ---------------------------------------------------------------------------


class InvalidReference(ContentStoreError, ValueError):
    """A string is not a valid image reference (Docker's reference grammar)."""


class InvalidDigest(ContentStoreError, ValueError):
    """A string is not a valid digest: unknown algorithm, bad length or characters."""


class InvalidPlatform(ContentStoreError, ValueError):
    """A platform string is not ``OS/ARCH[/VARIANT]``."""


class ConfigError(ContentStoreError, ValueError):
    """The configuration file is malformed or holds an unknown key."""


class InvalidManifest(ContentStoreError, ValueError):
    """A manifest, index or image config could not be parsed or is inconsistent."""


# -- not there ---------------------------------------------------------------------------


class NotFound(ContentStoreError, LookupError):
    """Something asked for does not exist."""


class BlobNotFound(NotFound):
    """No blob with this digest is in the store."""

    def __init__(self, digest: str):
        super().__init__(f"blob {digest} is not in the store")
        self.digest = digest


class ReferenceNotFound(NotFound):
    """No local reference of this name exists."""

    def __init__(self, reference: str):
        super().__init__(f"no such image: {reference}")
        self.reference = reference


class PlatformNotFound(NotFound):
    """An index offers no manifest for the wanted platform."""


# -- verification ------------------------------------------------------------------------


class VerificationError(ContentStoreError):
    """Bytes are not what they were said to be."""


class DigestMismatch(VerificationError):
    """Content hashed to another digest than the one expected."""

    def __init__(self, expected: str, actual: str, what: str = "content"):
        super().__init__(f"digest mismatch for {what}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class SizeMismatch(VerificationError):
    """Content had another length than the one expected."""

    def __init__(self, expected: int, actual: int, what: str = "content"):
        super().__init__(f"size mismatch for {what}: expected {expected} bytes, got {actual}")
        self.expected = expected
        self.actual = actual


# -- formats and plugins -----------------------------------------------------------------


class UnsupportedMediaType(ContentStoreError):
    """No installed plugin handles this media type."""

    def __init__(self, media_type: str, message: str | None = None):
        super().__init__(message or f"unsupported media type {media_type!r}: no installed plugin handles it")
        self.media_type = media_type


class PluginError(ContentStoreError):
    """A plugin could not be loaded, or is required and was disabled."""


# -- concurrency -------------------------------------------------------------------------


class IngestLocked(ContentStoreError):
    """Another writer holds this ingest; try again later."""

    def __init__(self, ref: str):
        super().__init__(f"ingest {ref!r} is being written by another process")
        self.ref = ref
