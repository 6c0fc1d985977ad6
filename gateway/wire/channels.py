"""Channel names and namespaces: pure functions, no I/O."""

from __future__ import annotations

import re

from gateway.wire.errors import ErrorCode, GatewayError

DEFAULT_NAMESPACE = "default"
MAX_CHANNEL_LENGTH = 255

_CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-:.@/=,$]{1,255}")


def is_valid_channel(name: object) -> bool:
    """True for 1-255 characters of ``A-Z a-z 0-9 _ - : . @ / = ,`` and ``$``."""
    return isinstance(name, str) and _CHANNEL_RE.fullmatch(name) is not None


def valid_channel(name: str) -> str:
    """``name``, when it is a valid channel name.

    Raises:
        GatewayError: `bad_request` naming the rule.
    """
    if not is_valid_channel(name):
        raise GatewayError(
            ErrorCode.BAD_REQUEST, "a channel is 1-255 characters of A-Z a-z 0-9 _ - : . @ / = , $"
        )
    return name


def namespace_of(channel: str) -> str:
    """The part before the first ``:``; the default namespace for names without one.

    A leading ``$`` (private channel) is not part of the namespace name:
    ``$chat:alice`` is a private channel in ``chat``.
    """
    head, sep, _ = channel.lstrip("$").partition(":")
    return head if sep and head else DEFAULT_NAMESPACE


def is_private(channel: str) -> bool:
    """Names starting with ``$`` need a subscription token or a matching `channels` claim."""
    return channel.startswith("$")


CONTROL_CHANNEL = "#control"
"""The channel of cross-replica commands (see `gateway.control`): carried by the broker like
any other, never a valid client channel name (``#`` is not allowed in one)."""
