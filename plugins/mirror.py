"""The ``mirror`` fallback policy: configured mirrors first, then the registry itself.

::

    [registry."docker.io"]
    mirrors = ["https://mirror.example.com", "http://127.0.0.1:5005"]
    mirror_fallback = false   # never go on to docker.io itself (air-gapped sites)

Any registry may have mirrors; the scheme given is the one used. A mirror that is down,
answers an error, or serves bytes that do not match the digest asked for is passed over
for the next endpoint (Docker's continueOnError on a mirror). On the registry itself only
authentication and not-found answers, and unexpected HTTP answers, move on (to its plain
HTTP endpoint, where the insecure policy added one); a digest mismatch there never does.
"""

from contentstore.errors import (
    ContentStoreError,
    Denied,
    RegistryError,
    RegistryUnreachable,
    RemoteNotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from contentstore.model.endpoint import Endpoint
from contentstore.plugin import hookimpl

#: OCI error codes after which Docker tries the next endpoint of the registry itself.
UPSTREAM_FALLBACK_CODES = {"UNAUTHORIZED", "DENIED", "UNKNOWN", "NAME_UNKNOWN", "MANIFEST_UNKNOWN"}


@hookimpl
def contentstore_modify_endpoints(reference, config, endpoints):
    settings = config.registry(reference.registry)
    if not settings.mirrors:
        return
    mirrors = [Endpoint(url, registry=reference.registry, mirror=True) for url in settings.mirrors]
    upstream = endpoints if settings.mirror_fallback else []
    endpoints[:] = mirrors + upstream


@hookimpl(trylast=True)
def contentstore_continue_on_error(endpoint, error, confirmed_v2):
    if endpoint.mirror:
        # The same content would be refused anywhere: no point asking the next endpoint.
        return not isinstance(error, UnsupportedMediaType) and isinstance(error, ContentStoreError)
    if isinstance(error, (Unauthorized, Denied, RemoteNotFound)):
        return True
    if isinstance(error, RegistryUnreachable):
        return not confirmed_v2
    if isinstance(error, RegistryError):
        # An unexpected HTTP answer (no OCI error body), or one of Docker's codes.
        return not error.codes or bool(UPSTREAM_FALLBACK_CODES & set(error.codes))
    return False
