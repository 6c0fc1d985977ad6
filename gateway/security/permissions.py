"""Who may subscribe and publish where: decisions from the principal, the channel and the
options of its namespace. No I/O.

Subscribing, first rule that applies:

1. A subscription token was given: it must be valid, for this user and this channel
   (else `forbidden`, whatever the other rules would say); then the subscription is allowed.
2. The connection token has a ``channels`` claim: allowed if one of its patterns matches.
3. A private channel (name starting with ``$``) or a namespace with ``subscribe = "token"``:
   refused.
4. A namespace with ``subscribe = "authenticated"``: refused to anonymous connections.
5. Otherwise allowed.

Publishing, first rule that applies:

1. The connection token has a ``publish`` claim: allowed if one of its patterns matches.
2. The namespace has ``publish = false``: refused.
3. Allowed if the connection may read the channel (below); refused otherwise: nobody writes
   into a private channel it cannot read.

Reading a channel's history or presence: allowed if the connection is subscribed to it, or
may subscribe to it without a subscription token.

Patterns use shell-style globs (`fnmatch.fnmatchcase`), matched against the whole name,
case-sensitively: ``*`` any run of characters (``:`` and ``/`` included), ``?`` exactly one
character, ``[abc]`` one of a set, ``[!abc]`` one character not in it. ``chat:*`` matches every
channel of the ``chat`` namespace, ``$user:alice`` exactly that channel, ``*`` everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from gateway.security.auth import Principal, SubscriptionGrant, TokenError, TokenVerifier
from gateway.settings import NamespaceOptions
from gateway.wire.channels import is_private
from gateway.wire.errors import ErrorCode, GatewayError


def matches_any(channel: str, patterns: Iterable[str]) -> bool:
    """True when one of the glob patterns matches the whole channel name."""
    return any(fnmatchcase(channel, pattern) for pattern in patterns)


def subscribe_refusal(
    principal: Principal,
    channel: str,
    options: NamespaceOptions,
    grant: SubscriptionGrant | None = None,
) -> str | None:
    """Why ``principal`` may not subscribe to ``channel``, or None when it may.

    ``grant`` is a verified subscription token; the caller refuses invalid ones itself.
    """
    if grant is not None:
        if grant.user != principal.user:
            return "the subscription token is for another user"
        if grant.channel != channel:
            return "the subscription token is for another channel"
        return None
    if principal.channels is not None:
        if matches_any(channel, principal.channels):
            return None
        return f"the token's channels claim does not allow {channel!r}"
    if is_private(channel) or options.subscribe == "token":
        return f"{channel!r} is private: subscribing needs a subscription token"
    if options.subscribe == "authenticated" and not principal.authenticated:
        return f"{channel!r} is for authenticated users only"
    return None


def publish_refusal(
    principal: Principal, channel: str, options: NamespaceOptions, subscribed: bool
) -> str | None:
    """Why ``principal`` may not publish to ``channel``, or None when it may."""
    if principal.publish is not None:
        if matches_any(channel, principal.publish):
            return None
        return f"the token's publish claim does not allow {channel!r}"
    if not options.publish:
        return f"clients may not publish to {channel!r}"
    if read_refusal(principal, channel, options, subscribed) is None:
        return None
    return f"publishing to {channel!r} needs a subscription to it"


def read_refusal(
    principal: Principal, channel: str, options: NamespaceOptions, subscribed: bool
) -> str | None:
    """Why ``principal`` may not read ``channel``'s history or presence, or None when it may."""
    if subscribed or subscribe_refusal(principal, channel, options) is None:
        return None
    return f"reading {channel!r} needs a subscription to it"


class Access:
    """Applies the rules above, verifying subscription tokens with the replica's verifier."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    def check_subscribe(
        self, principal: Principal, channel: str, options: NamespaceOptions, token: str | None
    ) -> None:
        """Raises:
        GatewayError: `forbidden` when the subscription is not allowed.
        """
        grant = None
        if token is not None:
            try:
                grant = self.verifier.subscription(token)
            except TokenError as error:
                raise GatewayError(
                    ErrorCode.FORBIDDEN, f"invalid subscription token: {error.message}"
                ) from None
        _forbid(subscribe_refusal(principal, channel, options, grant))

    def check_publish(
        self, principal: Principal, channel: str, options: NamespaceOptions, subscribed: bool
    ) -> None:
        """Raises:
        GatewayError: `forbidden` when the publication is not allowed.
        """
        _forbid(publish_refusal(principal, channel, options, subscribed))

    def check_read(
        self, principal: Principal, channel: str, options: NamespaceOptions, subscribed: bool
    ) -> None:
        """Raises:
        GatewayError: `forbidden` when the history or presence of the channel is not readable.
        """
        _forbid(read_refusal(principal, channel, options, subscribed))


def _forbid(refusal: str | None) -> None:
    if refusal is not None:
        raise GatewayError(ErrorCode.FORBIDDEN, refusal)
