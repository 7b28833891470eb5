"""A site policy: pull only from allowed repositories, with a team endpoint as a fallback."""
from contentstore.errors import ConfigError, ContentStoreError
from contentstore.model.endpoint import Endpoint
from contentstore.plugin import hookimpl

DEFAULTS = {"allowed": [], "fallback": None}
settings = dict(DEFAULTS)


class NotAllowed(ContentStoreError):
    """A repository outside [plugins.site] allowed."""


@hookimpl
def contentstore_configure(config):
    settings.clear()
    settings.update(DEFAULTS, **config.plugin_settings("site"))
    if not isinstance(settings["allowed"], list) or not all(isinstance(a, str) for a in settings["allowed"]):
        raise ConfigError("'allowed' must be a list of repository prefixes")


@hookimpl
def contentstore_modify_endpoints(reference, endpoints, operation):
    # for reading only: a mirror is never pushed to, and other operations never see it
    if settings["fallback"] and operation in ("pull", "copy"):
        endpoints.append(Endpoint(settings["fallback"], registry=reference.registry, mirror=True))


@hookimpl
def contentstore_verify_image(reference, operation):
    name = reference.name if reference is not None else "(a bare tag)"
    if not any(name.startswith(prefix) for prefix in settings["allowed"]):
        raise NotAllowed(f"{operation} of {reference or name} refused: not in [plugins.site] allowed")
