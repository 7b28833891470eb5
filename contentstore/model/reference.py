"""Image references, parsed and normalized with Docker's grammar.

``alpine`` is ``docker.io/library/alpine:latest``; ``localhost:5000/a/b:1`` keeps its
registry; ``name@sha256:…`` names a manifest by digest; ``name:tag@sha256:…`` keeps both
(the digest wins when pulling, as in Docker).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contentstore.errors import InvalidDigest, InvalidReference
from contentstore.model.digest import Digest

DEFAULT_REGISTRY = "docker.io"
LEGACY_DEFAULT_REGISTRY = "index.docker.io"
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"
#: The longest repository path (the name without its domain: ``library/alpine``), as
#: distribution/reference's RepositoryNameTotalLengthMax.
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_TAG_ONLY = re.compile(_TAG, re.ASCII)
_DOMAIN_ONLY = re.compile(_DOMAIN, re.ASCII)
_HEX64 = re.compile(r"[a-f0-9]{64}")


def _split_registry(name: str) -> tuple[str, str]:
    """Split ``name`` into registry and remainder the way Docker's splitDockerDomain does."""
    first, slash, rest = name.partition("/")
    if not slash or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        registry, remainder = DEFAULT_REGISTRY, name
    else:
        registry, remainder = first, rest
    if registry == LEGACY_DEFAULT_REGISTRY:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = f"{OFFICIAL_NAMESPACE}/{remainder}"
    return registry, remainder


@dataclass(frozen=True)
class Reference:
    """A normalized image reference: registry, repository, and a tag, a digest, or both."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, default_tag: str | None = DEFAULT_TAG) -> "Reference":
        """Parse and normalize ``text``; raise :class:`InvalidReference` on bad input.

        A reference with neither tag nor digest gets ``default_tag`` (``latest``); pass
        ``default_tag=None`` to keep it bare (a repository name, as ``pull -a`` wants).
        """
        if not isinstance(text, str) or not text:
            raise InvalidReference("invalid reference format: empty reference")
        if _HEX64.fullmatch(text):
            raise InvalidReference(
                f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
            )
        registry, remainder = _split_registry(text)
        repository_part = remainder.split("@", 1)[0].split(":", 1)[0]
        if repository_part.lower() != repository_part:
            raise InvalidReference(
                f"invalid reference format: repository name must be lowercase: {text!r}"
            )
        match = _REFERENCE.fullmatch(f"{registry}/{remainder}")
        if not match:
            raise InvalidReference(f"invalid reference format: {text!r}")
        repository = match["name"][len(registry) + 1 :]
        if len(repository) > NAME_TOTAL_LENGTH_MAX:
            raise InvalidReference(
                f"invalid reference format: repository name must not be more than "
                f"{NAME_TOTAL_LENGTH_MAX} characters: {text!r}"
            )
        digest = None
        if match["digest"]:
            try:
                digest = Digest(match["digest"])
            except InvalidDigest as exc:
                raise InvalidReference(f"invalid reference {text!r}: {exc}") from None
        tag = match["tag"]
        if tag is None and digest is None:
            tag = default_tag
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The short name Docker prints: ``alpine`` for ``docker.io/library/alpine``.

        Unlike Docker, the registry is kept when dropping it would make the first path
        component read as a registry (``docker.io/my.org/app``).
        """
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        short = self.repository
        prefix = f"{OFFICIAL_NAMESPACE}/"
        if short.startswith(prefix) and "/" not in short[len(prefix):]:
            return short[len(prefix):]
        if _split_registry(short)[0] != DEFAULT_REGISTRY:
            return self.name
        return short

    def familiar(self) -> str:
        """The whole reference as Docker prints it: ``alpine:latest``."""
        return self._with_suffix(self.familiar_name)

    def _with_suffix(self, name: str) -> str:
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_tag(self, tag: str) -> "Reference":
        if not _TAG_ONLY.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r}")
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, None, Digest(digest))

    def __str__(self) -> str:
        return self._with_suffix(self.name)


def is_registry_host(text: str) -> bool:
    """True when ``text`` is a syntactically valid ``host[:port]``."""
    return bool(_DOMAIN_ONLY.fullmatch(text))
