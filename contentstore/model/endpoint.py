"""Registry endpoints: the places a pull may fetch a repository from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One base URL to try for a registry.

    :param url: ``scheme://host[:port]``, with no path.
    :param registry: the registry whose content this endpoint serves (the upstream's
        name, also for a mirror), under which pulled images are recorded.
    :param mirror: whether this is a mirror rather than the registry itself.
    :param verify_tls: whether to check the TLS certificate (https only).
    """

    url: str
    registry: str
    mirror: bool = False
    verify_tls: bool = True

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/")

    def __str__(self) -> str:
        return self.url
