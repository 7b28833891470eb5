"""The ``insecure`` fallback policy: HTTPS first, then plain HTTP, where Docker allows it.

That is for registries marked ``insecure = true`` in the configuration and for loopback
addresses (127.0.0.0/8, ::1, ``localhost``), which Docker treats as insecure by default.
Such an endpoint's HTTPS is tried without certificate checks, then plain HTTP. Names are
not resolved: a name that merely maps to 127.0.0.1 is not downgraded.
"""

import ipaddress

from contentstore.model.endpoint import Endpoint
from contentstore.plugin import hookimpl


def host_without_port(host: str) -> str:
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = host_without_port(host)
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def may_downgrade(endpoint: Endpoint, config) -> bool:
    host = endpoint.host
    if is_loopback(host) or config.registry(host).insecure:
        return True
    # The registry's own endpoint may have another host name (Docker Hub's API).
    return not endpoint.mirror and config.registry(endpoint.registry).insecure


@hookimpl(trylast=True)
def contentstore_modify_endpoints(config, endpoints):
    expanded = []
    for endpoint in endpoints:
        if endpoint.scheme != "https" or not may_downgrade(endpoint, config):
            expanded.append(endpoint)
            continue
        expanded.append(Endpoint(endpoint.url, endpoint.registry, endpoint.mirror, verify_tls=False))
        expanded.append(Endpoint(f"http://{endpoint.host}", endpoint.registry, endpoint.mirror,
                                 verify_tls=False))
    endpoints[:] = expanded
