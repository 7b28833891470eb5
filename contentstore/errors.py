"""The exceptions contentstore raises: one base class, one subclass per thing a caller
may handle differently.

Every message is a single line fit for ``contentstore: error: <message>``.
Errors about bad input a caller gave also inherit :class:`ValueError`.
"""

from __future__ import annotations


class ContentStoreError(Exception):
    """Base class of every error contentstore raises on purpose."""


class UsageError(ContentStoreError):
    """A command was called the wrong way (the command line exits with status 2)."""


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


class CredentialsNotFound(NotFound):
    """A Docker credential helper holds no credentials for a registry."""


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


# -- the store on disk -------------------------------------------------------------------


class StoreDamaged(ContentStoreError):
    """A file of the store on disk is not what the store wrote: a blob changed after it
    was stored, an unreadable ``index.json`` or ``metadata.db``. ``contentstore verify
    --repair`` removes or rebuilds what it can.

    :ivar path: the damaged file, when there is one.
    """

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class IndexDamaged(StoreDamaged, InvalidManifest):
    """``index.json`` cannot be read as an OCI image index (also an :class:`InvalidManifest`,
    as it was before the store told damage apart)."""


class CorruptBlob(DigestMismatch, StoreDamaged):
    """A stored blob's bytes no longer hash to its digest (it changed on disk): it is
    never used; ``verify --repair`` deletes it and the next pull fetches it again."""

    def __init__(self, digest: str, actual: str, path: str | None = None):
        DigestMismatch.__init__(self, digest, actual, f"blob {digest}")
        self.args = (f"{self.args[0]} (the stored copy changed on disk: `contentstore verify "
                     f"--repair` removes it, a pull fetches it again)",)
        self.digest = digest
        self.path = path


class MetadataError(ContentStoreError):
    """``metadata.db`` could not be used (locked for too long, not readable)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class MetadataDamaged(MetadataError, StoreDamaged):
    """``metadata.db`` is not a usable SQLite database (garbage, truncated, a directory)."""


class WriteError(ContentStoreError):
    """The store could not write a file (the disk is full, a quota, an I/O error).

    :ivar what: what was being written (``blob sha256:…``, ``index.json``…).
    :ivar path: the file being written.
    :ivar errno: the operating system's error number, when there is one.
    """

    def __init__(self, what: str, path: str, reason: str, errno: int | None = None):
        super().__init__(f"cannot write {what} ({path}): {reason}")
        self.what = what
        self.path = path
        self.errno = errno


# -- formats and plugins -----------------------------------------------------------------


class UnsupportedMediaType(ContentStoreError):
    """No installed plugin handles this media type."""

    def __init__(self, media_type: str, message: str | None = None):
        super().__init__(message or f"unsupported media type {media_type!r}: no installed plugin handles it")
        self.media_type = media_type


class PluginError(ContentStoreError):
    """A plugin could not be loaded, is required and was disabled, or failed with an
    exception that is not a :class:`ContentStoreError` (a bug in it: the message names
    the plugin and how to switch it off)."""


# -- local images ------------------------------------------------------------------------


class ArchiveError(ContentStoreError):
    """A file is not an OCI archive or docker-archive, or is inconsistent."""


class UnpackError(ContentStoreError):
    """The target directory cannot be used, or a layer cannot be applied."""


class UnsafeLayer(UnpackError):
    """A layer holds an entry that would write outside the target directory."""


class InvalidTar(UnpackError):
    """A layer's tar stream cannot be parsed: a damaged header (bad checksum, a number
    that is not one), an inconsistent PAX record or sparse map, headers larger than
    allowed, or a stream that ends inside an entry.

    :ivar offset: the stream offset of the entry (or header) at fault, when known.
    """

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


# -- concurrency -------------------------------------------------------------------------


class Cancelled(ContentStoreError):
    """Another part of the same operation failed, so this part stopped (keeping what it
    wrote, for a later resume)."""


class IngestLocked(ContentStoreError):
    """Another writer holds this ingest; try again later."""

    def __init__(self, ref: str):
        super().__init__(f"ingest {ref!r} is being written by another process")
        self.ref = ref


# -- registries ----------------------------------------------------------------------------


class RegistryError(ContentStoreError):
    """A registry answered with an error, or could not be reached.

    :ivar status: the HTTP status, or ``None`` when no answer came.
    :ivar codes: the OCI error codes of the answer (``MANIFEST_UNKNOWN``, ``DENIED`` …).
    :ivar url: the URL asked.
    :cvar endpoint_unusable: the endpoint itself failed (no answer, or not a v2 registry),
        so another endpoint of the same registry may still serve the request.
    """

    endpoint_unusable = False

    def __init__(self, message: str, status: int | None = None, codes: tuple[str, ...] = (),
                 url: str | None = None):
        super().__init__(message)
        self.status = status
        self.codes = tuple(codes)
        self.url = url


class RegistryUnreachable(RegistryError):
    """No HTTP answer came: connection refused or cut, TLS failure, timeout."""

    endpoint_unusable = True


class CertificateError(RegistryUnreachable):
    """TLS with a registry failed over certificates: its certificate is not trusted or
    does not match its name, or it asked for a client certificate that was not given or
    refused the one given. The message names the host and what to configure."""


class Unauthorized(RegistryError):
    """The registry wants credentials that were not given, or refused those given."""


class Denied(RegistryError):
    """The credentials were accepted but do not allow this access."""


class RemoteNotFound(RegistryError, NotFound):
    """The registry has no such repository, tag, manifest or blob."""


class TooManyRequests(RegistryError):
    """The registry kept answering 429 after every retry."""


class NotV2Registry(RegistryError):
    """The endpoint does not speak the registry v2 API."""

    endpoint_unusable = True


class ManifestTooLarge(RegistryError):
    """A manifest was bigger than the 4 MiB limit."""


class Unsupported(RegistryError):
    """The registry does not offer the operation (``405``, ``UNSUPPORTED``): deleting on a
    registry with deletion disabled, an API it lacks."""


# -- artifacts ---------------------------------------------------------------------------


class InvalidArtifact(ContentStoreError, ValueError):
    """An artifact or its files cannot be used as asked: a title that would escape the
    target directory, a referrers index that is not an index."""
