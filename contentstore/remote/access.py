"""What every remote operation needs to reach registries, in one object."""

from __future__ import annotations

from dataclasses import dataclass, field

from contentstore.config import Config
from contentstore.model.endpoint import Endpoint
from contentstore.model.reference import Reference
from contentstore.plugin.manager import Plugins
from contentstore.progress import ProgressCallback, ProgressEvent, quiet
from contentstore.remote import fallback
from contentstore.remote.credentials import CredentialStore


@dataclass
class RegistryAccess:
    """Settings, plugins (formats for the ``Accept`` header, policies for endpoints),
    credentials, and where progress goes: shared by pull, push and copy.

    :param progress: called with each :class:`~contentstore.progress.ProgressEvent`.
    :param operation: the command being served (``pull``, ``push``, ``copy``...), which
        the policy plugins are told.
    """

    config: Config
    plugins: Plugins
    credentials: CredentialStore = field(default_factory=CredentialStore)
    progress: ProgressCallback = quiet
    operation: str = "pull"

    def __post_init__(self) -> None:
        self.connect = fallback.client_factory(self.plugins, lambda endpoint: self.credentials.get(endpoint.host),
                                               self.config)

    def endpoints(self, reference: Reference, mirrors: bool = True) -> list[Endpoint]:
        return fallback.endpoints(reference, self.config, self.plugins, mirrors=mirrors, operation=self.operation)

    def continue_on_error(self, reference: Reference) -> fallback.ContinueOnError:
        """The policy plugins' ``continue_on_error`` for this operation on ``reference``."""
        def decide(endpoint: Endpoint, error: Exception, confirmed_v2: bool) -> bool:
            return self.plugins.continue_on_error(endpoint, error, confirmed_v2, reference=reference,
                                                  operation=self.operation)
        return decide

    def emit(self, event: ProgressEvent) -> None:
        self.progress(event)

    def say(self, line: str) -> None:
        """A message line in the progress output."""
        self.progress(ProgressEvent(None, line))
