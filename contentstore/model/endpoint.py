"""Registry endpoints: the places an operation may reach a repository at.

Policy plugins build the list each operation tries (``contentstore_modify_endpoints``);
this class is also importable as ``contentstore.endpoint.Endpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One base URL to try for a registry.

    :param url: ``scheme://host[:port]``, with no path.
    :param registry: the registry whose content this endpoint serves (the upstream's
        name, also for a mirror), under which pulled images are recorded.
    :param mirror: a read-only copy of the registry's content rather than the registry
        itself: pulls use it (moving on to the next endpoint on any error, and resolving
        tags on the registry itself first), ``push`` and ``login`` never do.
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
