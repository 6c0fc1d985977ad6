"""A replica's security policy, and the security state of each of its connections.

`Security` is built once per replica from the settings: the token verifier and the access
rules (`permissions`); admission checks the ``Origin`` allow-list. `ConnectionGuard` is one
connection's share of it: who the connection is (its `Principal`), until when (the token's
``exp``, or the ``connect`` deadline before it has authenticated), and how fast it may send
commands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from gateway.security.auth import Principal, TokenError, TokenVerifier
from gateway.security.permissions import Access
from gateway.security.ratelimit import CommandLimiter, Verdict
from gateway.settings import NamespaceOptions, Settings
from gateway.wire.errors import (
    CONNECT_TIMEOUT,
    TOKEN_EXPIRED,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    CloseCode,
    Disconnect,
    ErrorCode,
    GatewayError,
)
from gateway.wire.protocol import Command, Connect


class Guarded(Protocol):
    """What a guard needs of its connection."""

    principal: Principal

    def send_error(self, error: GatewayError) -> None: ...

    def close(self, reason: Disconnect) -> None: ...


class Security:
    """The security policy of one replica."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Raises:
        ConfigError: a key or an algorithm in the settings is unusable.
        """
        self.settings = settings
        self.verifier = TokenVerifier(settings, clock)
        self.access = Access(self.verifier)
        self.clock = clock
        self.monotonic = monotonic

    def guard(self, connection: Guarded) -> ConnectionGuard:
        """The guard of a new connection."""
        return ConnectionGuard(self, connection)


class ConnectionGuard:
    """Authentication, token expiry and command rate of one connection."""

    __slots__ = ("_connection", "_limiter", "_security", "_timer", "connected")

    def __init__(self, security: Security, connection: Guarded) -> None:
        self._security = security
        self._connection = connection
        self._limiter = CommandLimiter(security.settings.rate, security.monotonic)
        self._timer: asyncio.TimerHandle | None = None
        self.connected = not security.verifier.enabled
        """True once the connection may run commands: authenticated, or auth is off."""

    def open(self, query_token: str | None, *, connect_op: bool) -> bool:
        """Authenticate at the handshake; True when `welcome` may be sent now.

        With auth on and no ``?token=``, a connection that may send ``connect``
        (``connect_op``) gets ``connect_timeout`` seconds to do so; one that may not, and
        one with a bad token, is closed with 4001.
        """
        if self.connected:
            return True
        if query_token is not None:
            return self._authenticate(query_token)
        if not connect_op:
            self._connection.close(UNAUTHORIZED)
            return False
        self._schedule(self._security.settings.connect_timeout, CONNECT_TIMEOUT)
        return False

    def grant(self, principal: Principal) -> None:
        """Authenticate with a principal the application chose (``on_connect``): the
        connection may run commands at once, without a token."""
        self._connection.principal = principal
        self.connected = True

    def connect(self, token: str) -> bool:
        """The ``connect`` op: True when it authenticated the connection (then send `welcome`).

        Raises:
            GatewayError: `bad_request` when the connection is already connected.
        """
        if self.connected:
            raise GatewayError(ErrorCode.BAD_REQUEST, "already connected: connect must come first")
        return self._authenticate(token)

    def refresh(self, token: str) -> int | None:
        """The ``refresh`` op: the new token's ``exp``, or None when it closed the connection.

        The new token must be valid and name the same user; otherwise the connection is
        closed with 4001, as for any invalid connection token.

        Raises:
            GatewayError: `bad_request` when tokens are not in use.
        """
        if not self._security.verifier.enabled:
            raise GatewayError(ErrorCode.BAD_REQUEST, "tokens are not in use on this gateway")
        principal = self._verify(token)
        if principal is None:
            return None
        if principal.user != self._connection.principal.user:
            self._connection.close(UNAUTHORIZED)
            return None
        self._accept(principal)
        return None if principal.expires_at is None else int(principal.expires_at)

    def rate(self) -> Verdict:
        """Count one command against the connection's rate, for a dialect that answers a
        refusal itself."""
        return self._limiter.check()

    def accept(self, principal: Principal) -> None:
        """Take ``principal`` (verified by the caller) as the connection's, until its ``exp``."""
        self._accept(principal)
        self.connected = True

    def admit(self, command: Command | GatewayError | None) -> bool:
        """Count one command (None: a binary frame) against the rate, and the auth gate.

        False when the command must not run: the guard has answered it (`rate_limited`,
        `unauthorized`) and, for a client that keeps going over the rate, closed the
        connection with 4029.
        """
        verdict = self._limiter.check()
        if verdict is not Verdict.RUN:
            command_id = command.id if command is not None else None
            self._connection.send_error(
                GatewayError(ErrorCode.RATE_LIMITED, "too many commands; slow down", command_id)
            )
            if verdict is Verdict.CLOSE:
                self._connection.close(TOO_MANY_REQUESTS)
            return False
        if self.connected or command is None or isinstance(command, GatewayError | Connect):
            return True
        self._connection.send_error(
            GatewayError(ErrorCode.UNAUTHORIZED, "send connect with a token first", command.id)
        )
        return False

    def check_rate(self) -> None:
        """Count one line of a plain-text client, which cannot be told to slow down.

        Raises:
            GatewayError: `rate_limited` (the connection then closes with 4029).
        """
        if self._limiter.check() is not Verdict.RUN:
            raise GatewayError(ErrorCode.RATE_LIMITED, "too many lines")

    def check_subscribe(self, channel: str, options: NamespaceOptions, token: str | None) -> None:
        """Raises:
        GatewayError: `forbidden` when this connection may not subscribe to ``channel``.
        """
        self._security.access.check_subscribe(self._connection.principal, channel, options, token)

    def check_publish(self, channel: str, options: NamespaceOptions, subscribed: bool) -> None:
        """Raises:
        GatewayError: `forbidden` when this connection may not publish to ``channel``.
        """
        self._security.access.check_publish(
            self._connection.principal, channel, options, subscribed
        )

    def check_read(self, channel: str, options: NamespaceOptions, subscribed: bool) -> None:
        """Raises:
        GatewayError: `forbidden` when this connection may not read ``channel``'s history or
            presence.
        """
        self._security.access.check_read(self._connection.principal, channel, options, subscribed)

    def release(self) -> None:
        """Stop the timers; called once the connection has ended."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _authenticate(self, token: str) -> bool:
        principal = self._verify(token)
        if principal is None:
            return False
        self._accept(principal)
        self.connected = True
        return True

    def _verify(self, token: str) -> Principal | None:
        try:
            return self._security.verifier.connection(token)
        except TokenError as error:
            if error.expired:
                self._connection.close(TOKEN_EXPIRED)
            else:
                self._connection.close(Disconnect(CloseCode.UNAUTHORIZED, error.message))
            return None

    def _accept(self, principal: Principal) -> None:
        self._connection.principal = principal
        if principal.expires_at is None:
            self.release()
            return
        deadline = principal.expires_at + self._security.verifier.leeway
        self._schedule(deadline - self._security.clock(), TOKEN_EXPIRED)

    def _schedule(self, delay: float, reason: Disconnect) -> None:
        self.release()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, delay), self._connection.close, reason)
