"""A channel's namespace options, as every service looks them up."""

from __future__ import annotations

from gateway.core.history import HistoryPolicy
from gateway.settings import NamespaceOptions, Settings
from gateway.wire.errors import ErrorCode, GatewayError


class Namespaces:
    """The configured namespaces of one replica."""

    __slots__ = ("_settings",)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def of(self, channel: str) -> NamespaceOptions:
        """The options of ``channel``'s namespace.

        Raises:
            GatewayError: `unknown_namespace` when namespaces are strict and it is not configured.
        """
        options = self._settings.namespace(channel)
        if options is None:
            raise GatewayError(
                ErrorCode.UNKNOWN_NAMESPACE, f"channel {channel!r} is in no configured namespace"
            )
        return options


def history_policy(options: NamespaceOptions) -> HistoryPolicy | None:
    """The namespace's history settings, or None where history is off."""
    if not options.history:
        return None
    return HistoryPolicy(options.history_size, options.history_ttl)
