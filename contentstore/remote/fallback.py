"""Which endpoints a pull tries, in what order, and when it moves on to the next.

The core starts from the registry itself over HTTPS and lets the policy plugins edit the
list (mirrors first, a plain-HTTP fallback after HTTPS). As in Docker, an endpoint that
cannot be reached or does not answer the ``/v2/`` ping as a v2 registry is always passed
over for the next one; after that, the policy plugins decide (Docker's continueOnError).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from contentstore.model.endpoint import Endpoint
from contentstore.errors import ContentStoreError, NotV2Registry, RegistryUnreachable
from contentstore.model.reference import DEFAULT_REGISTRY, Reference

#: Where Docker Hub's registry API actually lives.
DOCKER_HUB_API = "https://registry-1.docker.io"


def upstream(reference: Reference) -> Endpoint:
    url = DOCKER_HUB_API if reference.registry == DEFAULT_REGISTRY else f"https://{reference.registry}"
    return Endpoint(url=url, registry=reference.registry)


def endpoints(reference: Reference, config, plugins) -> list[Endpoint]:
    """The ordered endpoints to try for ``reference``."""
    result = plugins.modify_endpoints(reference, config, [upstream(reference)])
    if not result:
        raise RegistryUnreachable(f"{reference.registry}: every endpoint was ruled out by the configuration")
    return result


def ping_failure_moves_on(error: Exception) -> bool:
    """A ping that failed at the transport level, or met no v2 registry, tries the next.

    Errors a policy plugin raised to explain the failure (a subclass, such as "this
    registry only speaks v1") end the pull: they are the answer.
    """
    return type(error) in (RegistryUnreachable, NotV2Registry)


def moves_on(plugins, endpoint: Endpoint, error: Exception, confirmed_v2: bool) -> bool:
    """After a successful ping: do the policies send the pull on to the next endpoint?"""
    return plugins.continue_on_error(endpoint, error, confirmed_v2)


@contextlib.contextmanager
def registry_itself(reference: Reference, config, plugins, credentials_for) -> Iterator:
    """A pinged client for the registry itself (no mirrors: for push and login), trying
    its endpoints in order; closed when the block ends."""
    from contentstore.remote.client import RegistryClient

    candidates = [e for e in endpoints(reference, config, plugins) if not e.mirror]
    for position, endpoint in enumerate(candidates):
        client = RegistryClient(endpoint, credentials_for(endpoint), plugins)
        try:
            client.ping()
        except ContentStoreError as error:
            client.close()
            if position == len(candidates) - 1 or not ping_failure_moves_on(error):
                raise
            continue
        try:
            yield client
        finally:
            client.close()
        return
