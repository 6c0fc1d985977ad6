"""What each protocol command does on a replica: checks, broker calls and replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.broker.base import HistoryPage, HistoryPolicy
from gateway.core.outbox import Outgoing
from gateway.core.recovery import RecoveryBuffer, merge
from gateway.services.history import HistoryReader, HistorySlice
from gateway.settings import NamespaceOptions
from gateway.wire import protocol
from gateway.wire.channels import namespace_of
from gateway.wire.errors import BROKER_UNAVAILABLE, SLOW_CONSUMER, ErrorCode, GatewayError
from gateway.wire.protocol import (
    Command,
    Connect,
    History,
    Ping,
    Presence,
    Publish,
    Refresh,
    StreamPosition,
    Subscribe,
    Unsubscribe,
)

if TYPE_CHECKING:
    from gateway.replica import Replica
    from gateway.session.connection import Connection

log = logging.getLogger(__name__)


def history_policy(options: NamespaceOptions) -> HistoryPolicy | None:
    """The namespace's history settings, or None where history is off."""
    if not options.history:
        return None
    return HistoryPolicy(options.history_size, options.history_ttl)


def published(command: Publish, position: StreamPosition | None) -> bytes:
    """The reply to a `publish` the broker accepted."""
    if position is None:
        return protocol.reply("published", command.id, channel=command.channel)
    return protocol.reply("published", command.id, channel=command.channel, offset=position.offset)


class Commands:
    """Runs commands for the connections of one replica."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self._settings = replica.settings
        self._history = HistoryReader(replica.broker, replica.settings.max_message_bytes)
        self._handlers: dict[type[Any], Callable[[Connection, Any], Awaitable[None]]] = {
            Subscribe: self.subscribe,
            Unsubscribe: self.unsubscribe,
            Publish: self.publish,
            Presence: self.presence,
            History: self.history,
            Ping: self.ping,
            Connect: self.connect,
            Refresh: self.refresh,
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
        options = self.namespace(channel)
        connection.guard.check_subscribe(channel, options, command.token)
        if channel in connection.channels:
            raise GatewayError(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
        limit = self._settings.max_subscriptions
        if len(connection.channels) >= limit:
            raise GatewayError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS, f"at most {limit} subscriptions per connection"
            )
        policy = history_policy(options)
        if policy is None or command.since is None:
            position = await connection.subscribe(channel, policy)
            connection.send(protocol.subscribed(command.id, channel, position, recovered=False))
        else:
            await self._subscribe_recovering(connection, command, command.since, policy)
        if options.presence and not connection.closing:
            try:
                await self._replica.presence.join(
                    channel,
                    connection.id,
                    connection.user,
                    connection.principal.info,
                    options.join_leave,
                )
            except GatewayError as exc:
                log.info("presence.join_deferred channel=%s reason=%s", channel, exc.message)

    async def _subscribe_recovering(
        self,
        connection: Connection,
        command: Subscribe,
        since: StreamPosition,
        policy: HistoryPolicy,
    ) -> None:
        """Subscribe, then send what was missed after ``since`` before the live stream.

        The missed messages go out as the client takes them (each waits for room in its
        queue), read from the broker in bounded pages; live publications wait meanwhile in
        a buffer bounded like the queue. A recovery that cannot go on once `subscribed`
        was sent (the history was trimmed or lost under it) closes with 4008, after which
        the client resubscribes from the last message it got and learns the truth.
        """
        channel = command.channel
        settings = self._settings
        buffer = RecoveryBuffer(connection, settings.max_queue, settings.max_queue_bytes)
        joined = await connection.subscribe(channel, policy, via=buffer)
        assert joined is not None
        page: HistoryPage | None = None
        try:
            if since.epoch == joined.epoch and since.offset <= joined.offset:
                page = await self._history.page_after(channel, policy, since.offset)
        except GatewayError:
            connection.unsubscribe(channel)
            raise
        recovered = (
            page is not None and page.epoch == since.epoch and page.first <= since.offset + 1
        )
        complete = page is not None and len(page.messages) < self._history.chunk
        if recovered and complete:
            assert page is not None
            stored: list[tuple[int, bytes | Outgoing]] = list(page.messages)
            live: list[tuple[int, bytes | Outgoing]] = list(buffer.pairs())
            recovered = merge(since.offset, stored, live) is not None
        if connection.closing:
            return
        connection.send(protocol.subscribed(command.id, channel, joined, recovered))
        if recovered:
            assert page is not None
            last = await self._send_missed(connection, channel, policy, since, page)
            if last is None:
                return
        else:
            last = None
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
        head = connection.message_head(command.channel, command.data)
        position = await self.publish_frame(connection, command.channel, head)
        connection.send(published(command, position))

    def start_publish(
        self, connection: Connection, command: Publish
    ) -> asyncio.Future[StreamPosition | None]:
        """Check a `publish` now and queue it; the future resolves once the broker took it.

        Raises:
            GatewayError: as `publish_frame_soon`.
        """
        head = connection.message_head(command.channel, command.data)
        return self.publish_frame_soon(connection, command.channel, head)

    async def publish_frame(
        self, connection: Connection, channel: str, head: bytes
    ) -> StreamPosition | None:
        """Publish a message built by `protocol.message_head` on behalf of ``connection``.

        Raises:
            GatewayError: as `publish_frame_soon`, or `unavailable` when the broker did
                not accept it.
        """
        options = self.namespace(channel)
        connection.guard.check_publish(channel, options, channel in connection.channels)
        return await self._replica.publish(channel, head, options)

    def publish_frame_soon(
        self, connection: Connection, channel: str, head: bytes
    ) -> asyncio.Future[StreamPosition | None]:
        """Check a publication now and queue it (see `Replica.publish_soon`).

        Raises:
            GatewayError: `unknown_namespace`, `forbidden` where this client may not
                publish, `too_large` for a frame over the size limit.
        """
        options = self.namespace(channel)
        connection.guard.check_publish(channel, options, channel in connection.channels)
        return self._replica.publish_soon(channel, head, options)

    async def presence(self, connection: Connection, command: Presence) -> None:
        options = self.namespace(command.channel)
        connection.guard.check_read(
            command.channel, options, command.channel in connection.channels
        )
        clients = await self.presence_of(command.channel, options)
        connection.send(
            protocol.reply("presence", command.id, channel=command.channel, clients=clients)
        )

    async def presence_of(self, channel: str, options: NamespaceOptions) -> dict[str, Any]:
        """Everyone subscribed to ``channel``, on any replica: ``{client: {user, info}}``.

        Raises:
            GatewayError: `bad_request` where presence is off, `unavailable`.
        """
        if not options.presence:
            raise GatewayError(
                ErrorCode.BAD_REQUEST, f"presence is off in namespace {namespace_of(channel)!r}"
            )
        return await self._replica.presence.members(channel, options.join_leave)

    async def history(self, connection: Connection, command: History) -> None:
        channel = command.channel
        options = self.namespace(channel)
        connection.guard.check_read(channel, options, channel in connection.channels)
        found = await self.history_of(channel, options, command.since, command.limit)
        frames = [frame for _, frame in found.messages]
        reply = protocol.history_reply(command.id, channel, found.position, frames, found.more)
        connection.send(reply)

    async def history_of(
        self,
        channel: str,
        options: NamespaceOptions,
        since: StreamPosition | None,
        limit: int | None,
    ) -> HistorySlice:
        """The messages after ``since``, else the latest; at most ``limit``, oldest first.

        Matching messages beyond ``history_reply_bytes`` are left for the next request:
        the slice then says ``more``.

        Raises:
            GatewayError: `bad_request` where history is off or ``since`` is not in this
                history, `unavailable`.
        """
        policy = history_policy(options)
        if policy is None:
            raise GatewayError(
                ErrorCode.BAD_REQUEST, f"history is off in namespace {namespace_of(channel)!r}"
            )
        limit = policy.size if limit is None else min(limit, policy.size)
        max_bytes = self._settings.history_reply_bytes
        after = None if since is None else since.offset
        page = await self._history.read(
            channel, policy, after=after, count=limit, max_bytes=max_bytes
        )
        if since is None:
            return page
        if page.position.epoch != since.epoch:
            raise GatewayError(
                ErrorCode.BAD_REQUEST,
                f"since.epoch {since.epoch!r} is not the channel's epoch {page.position.epoch!r}: "
                "that history was lost; re-sync",
            )
        if since.offset > page.position.offset:
            raise GatewayError(
                ErrorCode.BAD_REQUEST,
                f"since.offset {since.offset} is beyond the channel's latest offset "
                f"{page.position.offset}",
            )
        return page

    async def ping(self, connection: Connection, command: Ping) -> None:
        connection.send(protocol.reply("pong", command.id))

    async def connect(self, connection: Connection, command: Connect) -> None:
        if connection.guard.connect(command.token):
            connection.send_welcome(command.id)

    async def refresh(self, connection: Connection, command: Refresh) -> None:
        expires_at = connection.guard.refresh(command.token)
        if expires_at is not None:
            connection.send(protocol.reply("refreshed", command.id, exp=expires_at))
