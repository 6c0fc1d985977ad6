"""What each protocol command does on a replica: checks, broker calls and replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway import protocol
from gateway.errors import ErrorCode, GatewayError
from gateway.protocol import (
    Command,
    Connect,
    History,
    Ping,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
)
from gateway.settings import NamespaceOptions

if TYPE_CHECKING:
    from gateway.connection import Connection
    from gateway.replica import Replica


class Commands:
    """Runs commands for the connections of one replica."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self._settings = replica.settings
        self._handlers: dict[type[Any], Callable[[Connection, Any], Awaitable[None]]] = {
            Subscribe: self.subscribe,
            Unsubscribe: self.unsubscribe,
            Publish: self.publish,
            Ping: self.ping,
            Connect: self.connect,
            Presence: self.not_yet,
            History: self.not_yet,
            Refresh: self.not_yet,
        }

    async def run(self, connection: Connection, command: Command) -> None:
        """Run one command; its reply, or a raised `GatewayError`, answers it."""
        await self._handlers[type(command)](connection, command)

    def namespace(self, channel: str) -> NamespaceOptions:
        """The channel's namespace options.

        Raises:
            GatewayError: `unknown_namespace` when namespaces are strict and it is not configured.
        """
        options = self._settings.namespace(channel)
        if options is None:
            raise GatewayError(
                ErrorCode.UNKNOWN_NAMESPACE, f"channel {channel!r} is in no configured namespace"
            )
        return options

    async def subscribe(self, connection: Connection, command: Subscribe) -> None:
        channel = command.channel
        self.namespace(channel)
        if channel in connection.channels:
            raise GatewayError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
        limit = self._settings.max_subscriptions
        if len(connection.channels) >= limit:
            raise GatewayError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {limit} subscriptions per connection"
            )
        await connection.subscribe(channel)
        connection.send(
            protocol.reply(
                "subscribed",
                command.id,
                channel=channel,
                offset=0,
                epoch="",
                recovered=False,
            )
        )

    async def unsubscribe(self, connection: Connection, command: Unsubscribe) -> None:
        if command.channel not in connection.channels:
            raise GatewayError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {command.channel!r}")
        connection.unsubscribe(command.channel)
        connection.send(protocol.reply("unsubscribed", command.id, channel=command.channel))

    async def publish(self, connection: Connection, command: Publish) -> None:
        head = protocol.message_head(command.channel, command.data, connection.id, connection.user)
        await self.publish_frame(connection, command.channel, head)
        connection.send(protocol.reply("published", command.id, channel=command.channel))

    async def publish_frame(self, connection: Connection, channel: str, head: bytes) -> None:
        """Publish a message built by `protocol.message_head` on behalf of ``connection``.

        Raises:
            GatewayError: `forbidden` where clients may not publish, `too_large` for a frame
                over the size limit, `unavailable` when the broker did not accept it.
        """
        options = self.namespace(channel)
        if not options.publish:
            raise GatewayError(ErrorCode.FORBIDDEN, f"clients may not publish to {channel!r}")
        frame = protocol.close_message(head)
        if len(frame) > self._settings.max_message_bytes:
            raise GatewayError(
                ErrorCode.TOO_LARGE,
                f"the message would exceed {self._settings.max_message_bytes} bytes",
            )
        await self._replica.broker.publish(channel, frame)

    async def ping(self, connection: Connection, command: Ping) -> None:
        connection.send(protocol.reply("pong", command.id))

    async def connect(self, connection: Connection, command: Connect) -> None:
        raise GatewayError(ErrorCode.BAD_REQUEST, "already connected: connect must come first")

    async def not_yet(self, connection: Connection, command: Command) -> None:
        op = type(command).__name__.lower()
        raise GatewayError(ErrorCode.BAD_REQUEST, f"op {op!r} is not supported by this replica")
