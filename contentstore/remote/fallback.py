"""Which endpoints an operation tries, in what order, and when it moves on to the next.

The core starts from the registry itself over HTTPS and lets the policy plugins edit the
list (mirrors first, a plain-HTTP fallback after HTTPS). :func:`on_each_endpoint` is the
one loop over that list, for pull, push and login alike. As in Docker, an endpoint that
cannot be reached or does not answer the ``/v2/`` ping as a v2 registry is passed over
for the next one, unless a policy explained the failure (that explanation is the
answer); after a successful ping, the policy plugins decide (Docker's continueOnError).
"""

from __future__ import annotations

from typing import Callable, TypeVar

from contentstore.config import Config
from contentstore.errors import CertificateError, ContentStoreError, RegistryUnreachable
from contentstore.model.endpoint import Endpoint
from contentstore.model.reference import DEFAULT_REGISTRY, Reference
from contentstore.plugin.manager import Plugins
from contentstore.remote.client import RegistryClient
from contentstore.remote.credentials import Credentials

#: Where Docker Hub's registry API actually lives.
DOCKER_HUB_API = "https://registry-1.docker.io"

T = TypeVar("T")
#: ``continue_on_error(endpoint, error, confirmed_v2)``: try the next endpoint?
ContinueOnError = Callable[[Endpoint, Exception, bool], bool]


def upstream(reference: Reference) -> Endpoint:
    url = DOCKER_HUB_API if reference.registry == DEFAULT_REGISTRY else f"https://{reference.registry}"
    return Endpoint(url=url, registry=reference.registry)


def endpoints(reference: Reference, config: Config, plugins: Plugins, mirrors: bool = True,
              operation: str = "pull") -> list[Endpoint]:
    """The ordered endpoints ``operation`` tries for ``reference``: a new list each time,
    edited by the policy plugins for that operation (without mirrors: the registry's own,
    what a push or a login may use, whatever a policy added)."""
    seed = [upstream(reference)]

    def usable(found: list[Endpoint]) -> list[Endpoint]:
        return found if mirrors else [endpoint for endpoint in found if not endpoint.mirror]

    result = usable(plugins.modify_endpoints(reference, config, list(seed), operation))
    if not result:
        raise RegistryUnreachable(_nothing_left(reference, config, plugins, seed, operation, mirrors, usable))
    return result


def _nothing_left(reference: Reference, config: Config, plugins: Plugins, seed: list[Endpoint],
                  operation: str, mirrors: bool, usable) -> str:
    """Say who left ``operation`` without an endpoint: the configuration (the mirror
    policy's ``mirror_fallback = false``), or the policy plugin that did it."""
    removers = plugins.endpoint_removers(reference, config, seed, operation, usable)
    registry = reference.registry
    if removers == ["mirror"]:
        settings = config.registry(registry)
        why = (f" (its mirrors are for pulls only, and mirror_fallback = false in [registry.\"{registry}\"])"
               if not mirrors and settings.mirrors and not settings.mirror_fallback else "")
        return f"{registry}: every endpoint was ruled out by the configuration{why}"
    if removers:
        names = ", ".join(repr(name) for name in removers)
        return (f"{registry}: no endpoint left to {operation}: the policy plugin {names} removed every one "
                f"(disable it with -p no:{removers[0]})")
    policies = ", ".join(repr(name) for name in plugins.implementers("contentstore_modify_endpoints"))
    return f"{registry}: no endpoint left to {operation}: the policy plugins ({policies}) removed every one"


def client_factory(plugins: Plugins, credentials_for: Callable[[Endpoint], Credentials | None],
                   config: Config | None = None) -> Callable[[Endpoint], RegistryClient]:
    """Make clients that send the Accept header the format plugins build, ask the policy
    plugins to explain a failed ping, and keep the deadlines and rates of ``config``."""
    accept = plugins.accept_header()

    def explain(endpoint, response, session):
        return plugins.explain_ping_failure(endpoint=endpoint, response=response, session=session)

    def connect(endpoint: Endpoint) -> RegistryClient:
        return RegistryClient(endpoint, credentials_for(endpoint), accept, explain, config=config)

    return connect


def on_each_endpoint(candidates: list[Endpoint], connect: Callable[[Endpoint], RegistryClient],
                     work: Callable[[RegistryClient], T],
                     continue_on_error: ContinueOnError | None = None,
                     notify: Callable[[str], None] | None = None) -> tuple[T, Endpoint]:
    """Ping each endpoint in turn and run ``work`` on the first that answers; return what
    it returned and the endpoint that served it.

    :param continue_on_error: asked when ``work`` fails after a good ping; ``None``: such
        an error ends the operation (push and login never move on after the ping).
    :param notify: told, in a line, when an endpoint is passed over.
    :raises: the last endpoint's error, or the first error that does not move on; but
        when an HTTPS endpoint of the same host failed over certificates and the plain
        HTTP one after it could not be used either (a TLS-only port), that certificate
        error, which says what to configure.
    """
    certificate_errors: dict[str, CertificateError] = {}
    for position, endpoint in enumerate(candidates):
        last = position == len(candidates) - 1
        client = connect(endpoint)
        try:
            try:
                client.ping()
                return work(client), endpoint
            except ContentStoreError as error:
                if isinstance(error, CertificateError):
                    certificate_errors.setdefault(endpoint.host, error)
                if last or not _moves_on(client, endpoint, error, continue_on_error):
                    earlier = certificate_errors.get(endpoint.host)
                    if (earlier is not None and endpoint.scheme == "http" and not client.pinged
                            and getattr(error, "endpoint_unusable", False)):
                        raise earlier from None
                    raise
                if notify is not None and (endpoint.mirror or client.pinged):
                    notify(f"{endpoint.url}: {error}; trying {candidates[position + 1].url}")
        finally:
            client.close()
    raise RegistryUnreachable("no endpoint to try")  # endpoints() never returns an empty list


def _moves_on(client: RegistryClient, endpoint: Endpoint, error: ContentStoreError,
              continue_on_error: ContinueOnError | None) -> bool:
    if not client.pinged:
        return not client.ping_explained and getattr(error, "endpoint_unusable", False)
    return continue_on_error is not None and continue_on_error(endpoint, error, client.confirmed_v2)
