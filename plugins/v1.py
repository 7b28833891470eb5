"""The ``v1`` policy: recognise a registry that speaks only the retired v1 protocol.

Docker removed v1 pulls in 17.12; current Docker fails with a message saying so rather
than a bare 404. When an endpoint does not answer ``/v2/`` as a v2 registry, this plugin
asks ``/v1/_ping``; a v1 registry answers it, and the pull fails with that explanation.
"""

from contentstore.errors import NotV2Registry
from contentstore.plugin import hookimpl


class V1OnlyRegistry(NotV2Registry):
    """The endpoint speaks only the registry v1 protocol."""


@hookimpl(trylast=True)
def contentstore_explain_ping_failure(endpoint, response, session):
    if response.status_code not in (404, 405):
        return None
    import requests  # only when it is needed: every command loads this plugin

    from contentstore.remote.transport import TIMEOUT

    try:
        ping = session.get(f"{endpoint.url}/v1/_ping", timeout=TIMEOUT)
    except requests.RequestException:
        return None
    with ping:
        speaks_v1 = "X-Docker-Registry-Version" in ping.headers or (
            ping.status_code == 200 and ping.content.strip() in (b"true", b"{}"))
    if not speaks_v1:
        return None
    version = ping.headers.get("X-Docker-Registry-Version", "unknown version")
    return V1OnlyRegistry(
        f"{endpoint.url} is a registry v1 server ({version}): the v1 protocol is retired and "
        f"no longer supported (as in Docker since 17.12); ask for the image on a v2 registry",
        status=response.status_code, url=f"{endpoint.url}/v2/")
