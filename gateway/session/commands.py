"""What each protocol v1 command does on a replica: checks, service calls and replies.

The application's hooks (`gateway.services.hooks`) run here: ``on_subscribe`` in
`Commands.subscribe` after the permission checks and before `subscribed` is sent;
``on_publish`` (and its model's validation) in `Commands.prepare_publication`, which every
client publication goes through, pipelined or not (the session keeps pipelined replies and
publications in order); ``rpc`` methods in `Commands.rpc`. A new op is one more entry of
`Commands.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.core.frames import Outgoing
from gateway.core.history import HistoryPage, HistoryPolicy
from gateway.core.recovery import RecoveryBuffer, merge
from gateway.services.channels import Channels
from gateway.services.hooks import Hooks
from gateway.services.namespaces import history_policy
from gateway.services.presence import Presence
from gateway.services.publisher import Publisher
from gateway.session.connection import Connection
from gateway.settings import NamespaceOptions, Settings
from gateway.wire import protocol
from gateway.wire.errors import BROKER_UNAVAILABLE, SLOW_CONSUMER, ErrorCode, GatewayError
from gateway.wire.protocol import (
    Command,
    Connect,
    History,
    Ping,
    Publish,
    Refresh,
    Rpc,
    StreamPosition,
    Subscribe,
    Unsubscribe,
)
from gateway.wire.protocol import (
    Presence as PresenceCommand,
)

log = logging.getLogger(__name__)


def published(command: Publish, position: StreamPosition | None) -> bytes:
    """The reply to a `publish` the broker accepted."""
    if position is None:
        return protocol.reply("published", command.id, channel=command.channel)
    return protocol.reply("published", command.id, channel=command.channel, offset=position.offset)


class Commands:
    """Runs commands for the connections of one replica."""

    def __init__(
        self,
        settings: Settings,
        channels: Channels,
        publisher: Publisher,
        presence: Presence,
        hooks: Hooks | None = None,
    ) -> None:
        self._settings = settings
        self._hooks = hooks if hooks is not None else Hooks()
        self._channels = channels
        self._namespaces = channels.namespaces
        self._history = channels.history_reader
        self._publisher = publisher
        self._presence = presence
        self.handlers: dict[type[Any], Callable[[Connection, Any], Awaitable[None]]] = {
            Subscribe: self.subscribe,
            Unsubscribe: self.unsubscribe,
            Publish: self.publish,
            PresenceCommand: self.presence,
            History: self.history,
            Ping: self.ping,
            Connect: self.connect,
            Refresh: self.refresh,
            Rpc: self.rpc,
        }

    async def run(self, connection: Connection, command: Command) -> None:
        """Run one command; its reply, or a raised `GatewayError`, answers it."""
        await self.handlers[type(command)](connection, command)

    def welcome(self, connection: Connection, command_id: int | str | None = None) -> None:
        """Tell the client it is connected (answering its ``connect`` if it sent one)."""
        settings = self._settings
        connection.send(
            protocol.welcome(
                connection.id, settings.node_id, connection.user, settings.ping_seconds, command_id
            )
        )

    async def subscribe(self, connection: Connection, command: Subscribe) -> None:
        channel = command.channel
        options = self._namespaces.of(channel)
        connection.guard.check_subscribe(channel, options, command.token)
        if channel in connection.channels:
            raise GatewayError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
        limit = self._settings.max_subscriptions
        if len(connection.channels) >= limit:
            raise GatewayError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {limit} subscriptions per connection"
            )
        await self._hooks.subscribe(
            channel, connection.user, connection.id, connection.principal.info
        )
        if connection.closing:
            return
        policy = history_policy(options)
        if policy is None or (command.since is None and not command.latest):
            position = await connection.subscribe(channel, policy)
            connection.send(protocol.subscribed(command.id, channel, position, recovered=False))
        else:
            await self._subscribe_catching_up(connection, command, policy)
        if options.presence and not connection.closing:
            try:
                await self._presence.join(
                    channel,
                    connection.id,
                    connection.user,
                    connection.principal.info,
                    options.join_leave,
                )
            except GatewayError as exc:
                log.info("presence.join_deferred channel=%s reason=%s", channel, exc.message)

    async def _subscribe_catching_up(
        self, connection: Connection, command: Subscribe, policy: HistoryPolicy
    ) -> None:
        """Subscribe, then send what was missed after ``since`` (or, with ``latest``, the
        channel's latest message, when there is no ``since`` or it cannot be recovered)
        before the live stream.

        The stored messages go out as the client takes them (each waits for room in its
        queue), read from the broker in bounded pages; live publications wait meanwhile in
        a buffer bounded like the queue. A catch-up that cannot go on once `subscribed`
        was sent (the history was trimmed or lost under it) closes with 4008, after which
        the client resubscribes from the last message it got and learns the truth.
        """
        channel, since = command.channel, command.since
        settings = self._settings
        buffer = RecoveryBuffer(connection, settings.max_queue, settings.max_queue_bytes)
        joined = await connection.subscribe(channel, policy, via=buffer)
        assert joined is not None
        try:
            start, page = await self._recovery_from(channel, policy, since, joined, buffer)
            recovered = start is not None
            if start is None and command.latest:
                start, page = await self._latest_from(channel, policy, joined)
        except GatewayError:
            connection.unsubscribe(channel)
            raise
        if connection.closing:
            return
        connection.send(protocol.subscribed(command.id, channel, joined, recovered))
        last: int | None = None
        if start is not None and page is not None:
            last = await self._send_missed(connection, channel, policy, start, page)
            if last is None:
                return
        while batch := buffer.take():
            for message in batch:
                if last is not None:
                    if message.offset <= last:
                        continue
                    if message.offset != last + 1:
                        connection.close(SLOW_CONSUMER)
                        return
                    last = message.offset
                if not await connection.make_room():
                    return
                if not connection.deliver(message):
                    connection.close(SLOW_CONSUMER)
                    return
        connection.take_over(channel, buffer)

    async def _recovery_from(
        self,
        channel: str,
        policy: HistoryPolicy,
        since: StreamPosition | None,
        joined: StreamPosition,
        buffer: RecoveryBuffer,
    ) -> tuple[StreamPosition | None, HistoryPage | None]:
        """``since`` and the first page after it when recovery from there is possible (the
        same epoch, nothing missing between the stored and the buffered live messages);
        ``(None, None)`` when it is not.

        Raises:
            GatewayError: `unavailable`.
        """
        if since is None or since.epoch != joined.epoch or since.offset > joined.offset:
            return None, None
        page = await self._history.page_after(channel, policy, since.offset)
        if page.epoch != since.epoch or page.first > since.offset + 1:
            return None, None
        if len(page.messages) < self._history.chunk:
            stored: list[tuple[int, bytes | Outgoing]] = list(page.messages)
            live: list[tuple[int, bytes | Outgoing]] = list(buffer.pairs())
            if merge(since.offset, stored, live) is None:
                return None, None
        return since, page

    async def _latest_from(
        self, channel: str, policy: HistoryPolicy, joined: StreamPosition
    ) -> tuple[StreamPosition | None, HistoryPage | None]:
        """Where ``latest`` starts (just before the newest message retained at joining, or
        at the joining offset when none is) and the first page from there; None when the
        history was reset meanwhile (then only the live stream follows).

        Raises:
            GatewayError: `unavailable`.
        """
        page = await self._history.page_after(channel, policy, max(0, joined.offset - 1))
        if page.epoch != joined.epoch:
            return None, None
        first = page.messages[0][0] if page.messages else joined.offset + 1
        return StreamPosition(first - 1, joined.epoch), page

    async def _send_missed(
        self,
        connection: Connection,
        channel: str,
        policy: HistoryPolicy,
        since: StreamPosition,
        page: HistoryPage,
    ) -> int | None:
        """Send the stored messages after ``since``, page by page; the last offset sent,
        or None when the connection is closing."""
        last = since.offset
        while True:
            for offset, frame in page.messages:
                if offset <= last:
                    continue
                if offset != last + 1:
                    connection.close(SLOW_CONSUMER)
                    return None
                if not await connection.make_room():
                    return None
                connection.send(frame)
                last = offset
            if len(page.messages) < self._history.chunk:
                return None if connection.closing else last
            try:
                page = await self._history.page_after(channel, policy, last)
            except GatewayError:
                connection.close(BROKER_UNAVAILABLE)
                return None
            if page.epoch != since.epoch:
                connection.close(SLOW_CONSUMER)
                return None

    async def unsubscribe(self, connection: Connection, command: Unsubscribe) -> None:
        if command.channel not in connection.channels:
            raise GatewayError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {command.channel!r}")
        connection.unsubscribe(command.channel)
        connection.send(protocol.reply("unsubscribed", command.id, channel=command.channel))

    async def publish(self, connection: Connection, command: Publish) -> None:
        data, options = await self.prepare_publication(connection, command)
        position = await self._publisher.publish(
            command.channel,
            data,
            sender=connection.sender,
            options=options,
            tags=command.tags,
            idempotency_key=command.idempotency_key,
        )
        connection.send(published(command, position))

    async def prepare_publication(
        self, connection: Connection, command: Publish
    ) -> tuple[Any, NamespaceOptions]:
        """Check a `publish` and run what the application hooked on its namespace
        (validation against the model, then ``on_publish``): the data to publish and the
        channel's namespace options. Without a hook, nothing here waits.

        Raises:
            GatewayError: `unknown_namespace`, `forbidden` where this client may not
                publish, `invalid_data`, or what the hook raised.
        """
        channel = command.channel
        options = self._namespaces.of(channel)
        connection.guard.check_publish(channel, options, channel in connection.channels)
        rule = self._hooks.publishes_through(channel)
        if rule is None:
            return command.data, options
        principal = connection.principal
        data = await self._hooks.publish(
            rule,
            channel,
            command.data,
            principal.user,
            connection.id,
            principal.info,
            command.idempotency_key,
        )
        return data, options

    def publish_later(
        self, connection: Connection, command: Publish, data: Any, options: NamespaceOptions
    ) -> asyncio.Future[StreamPosition | None]:
        """Queue a publication `prepare_publication` allowed; the future resolves once the
        broker took it.

        Raises:
            GatewayError: `bad_request` or `too_large` for its data.
        """
        return self._publisher.publish_later(
            command.channel,
            data,
            sender=connection.sender,
            options=options,
            tags=command.tags,
            idempotency_key=command.idempotency_key,
        )

    async def rpc(self, connection: Connection, command: Rpc) -> None:
        principal = connection.principal
        data = await self._hooks.rpc(
            command.method, command.data, principal.user, connection.id, principal.info
        )
        connection.send(protocol.reply("rpc", command.id, data=data))

    async def presence(self, connection: Connection, command: PresenceCommand) -> None:
        options = self._namespaces.of(command.channel)
        connection.guard.check_read(
            command.channel, options, command.channel in connection.channels
        )
        clients = await self._channels.presence(command.channel, options)
        connection.send(
            protocol.reply("presence", command.id, channel=command.channel, clients=clients)
        )

    async def history(self, connection: Connection, command: History) -> None:
        channel = command.channel
        options = self._namespaces.of(channel)
        connection.guard.check_read(channel, options, channel in connection.channels)
        found = await self._channels.history(channel, options, command.since, command.limit)
        frames = [frame for _, frame in found.messages]
        reply = protocol.history_reply(command.id, channel, found.position, frames, found.more)
        connection.send(reply)

    async def ping(self, connection: Connection, command: Ping) -> None:
        connection.send(protocol.reply("pong", command.id))

    async def connect(self, connection: Connection, command: Connect) -> None:
        if connection.guard.connect(command.token):
            self.welcome(connection, command.id)

    async def refresh(self, connection: Connection, command: Refresh) -> None:
        expires_at = connection.guard.refresh(command.token)
        if not connection.closing:
            connection.send(protocol.reply("refreshed", command.id, exp=expires_at))
