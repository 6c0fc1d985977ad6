"""One client's WebSocket: the only place that reads from a socket.

`Connection` owns the read loop, the outbox and the close sequence; what a frame *means*
is up to the endpoint: `ProtocolConnection` (``/ws``, protocol v1 commands) or
`PlainTextConnection` (``/websocket``, every text frame is a chat line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket

from gateway.broker.base import HistoryPolicy
from gateway.core.outbox import Outbox, Outgoing, Sink
from gateway.ops import logs
from gateway.security.auth import Principal
from gateway.session.commands import history_policy, published
from gateway.transport.websocket import CLOSE_DEADLINE
from gateway.wire import protocol
from gateway.wire.errors import (
    BROKER_UNAVAILABLE,
    FORBIDDEN,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL,
    SLOW_CONSUMER,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    UNSUPPORTED_DATA,
    CloseCode,
    Disconnect,
    ErrorCode,
    GatewayError,
)
from gateway.wire.protocol import Publish, StreamPosition

if TYPE_CHECKING:
    from gateway.core.hub import Subscriber
    from gateway.replica import Replica

log = logging.getLogger(__name__)

PIPELINED_PUBLISHES = 256
"""Publications of one connection that may be on their way to the broker at once."""

FLUSH_BEFORE_CLOSE = 2.0
"""Seconds a closing connection may spend sending what it already queued."""


def new_client_id() -> str:
    """A random, URL-safe client id, unique across replicas."""
    return secrets.token_urlsafe(12)


class Connection:
    """State and life cycle shared by both endpoints."""

    __slots__ = (
        "__weakref__",
        "_closer",
        "_closing",
        "_sink",
        "_websocket",
        "channels",
        "deliver",
        "guard",
        "id",
        "outbox",
        "principal",
        "replica",
    )

    batches = True
    """Whether queued frames may leave together as one NDJSON frame."""

    def __init__(
        self, replica: Replica, websocket: WebSocket, sink: Sink, principal: Principal
    ) -> None:
        self.replica = replica
        self.id = new_client_id()
        self.principal = principal
        self.channels: dict[str, Subscriber] = {}
        settings = replica.settings
        self.outbox = Outbox(
            sink,
            settings.max_queue,
            replica.loop_passes,
            replica.metrics.queue_depth.observe,
            byte_limit=settings.max_queue_bytes,
            batches=self.batches,
        )
        self.deliver: Callable[[Outgoing], bool] = self.outbox.offer
        self._websocket = websocket
        self._sink = sink
        self._closing: Disconnect | None = None
        self._closer: asyncio.Task[None] | None = None
        self.guard = replica.security.guard(self)

    @property
    def user(self) -> str | None:
        """The user id of the connection token; None for anonymous connections."""
        return self.principal.user

    def message_head(self, channel: str, data: Any) -> bytes:
        """A `message` frame of this connection's publication (see `protocol.message_head`)."""
        principal = self.principal
        return protocol.message_head(channel, data, self.id, principal.user, principal.info)

    @property
    def closing(self) -> bool:
        """True once the server or the client began closing the connection."""
        return self._closing is not None

    def send(self, payload: bytes) -> None:
        """Send a frame meant for this client alone; a full queue closes it as too slow."""
        self.replica.stats.sent_bytes += len(payload)
        if not self.outbox.put(payload):
            self.close(SLOW_CONSUMER)

    def send_error(self, error: GatewayError) -> None:
        """Answer a failed command."""
        self.replica.stats.errors[error.code.value] += 1
        self.send(protocol.error(error))

    def send_welcome(self, command_id: int | str | None = None) -> None:
        """Tell the client it is connected (answering its ``connect`` if it sent one)."""
        settings = self.replica.settings
        self.send(
            protocol.welcome(
                self.id, settings.node_id, self.user, settings.ping_seconds, command_id
            )
        )

    async def subscribe(
        self, channel: str, history: HistoryPolicy | None, via: Subscriber | None = None
    ) -> StreamPosition | None:
        """Join a channel on this replica's hub; returns once publications flow.

        ``via`` stands in for the connection in the hub until `take_over` (recovery).
        Returns the channel's position at joining on channels with history.

        Raises:
            GatewayError: `unavailable` when the broker could not subscribe.
        """
        hub = self.replica.hub
        subscriber = via if via is not None else self
        self.channels[channel] = subscriber
        try:
            position = await hub.subscribe(channel, subscriber, history)
        except BaseException:
            if self.channels.get(channel) is subscriber:
                del self.channels[channel]
            raise
        if self._closing is not None:
            hub.unsubscribe(channel, subscriber)
        return position

    def take_over(self, channel: str, via: Subscriber) -> None:
        """Receive a channel's publications directly instead of through ``via``."""
        if self.channels.get(channel) is via:
            self.channels[channel] = self
            self.replica.hub.replace(channel, via, self)

    def unsubscribe(self, channel: str) -> None:
        """Leave a channel."""
        subscriber = self.channels.pop(channel, None)
        if subscriber is not None:
            self.replica.hub.unsubscribe(channel, subscriber)
            self.replica.presence.leave(channel, self.id)

    def close(self, reason: Disconnect) -> None:
        """Begin closing: leave every channel now, then send `disconnect` and close the socket."""
        if self._closing is not None:
            return
        self._closing = reason
        stats = self.replica.stats
        stats.closes[int(reason.code)] += 1
        if reason.code is CloseCode.SLOW_CONSUMER:
            stats.slow_consumers += 1
        self._leave_all()
        self._closer = asyncio.get_running_loop().create_task(self._close(reason))

    async def make_room(self) -> bool:
        """Wait until the outbox is no longer crowded; False once the connection is closing.

        A peer that does not make room within one ping interval has stopped reading: it
        is closed as a slow consumer, so that no wait here lasts longer.
        """
        if self.outbox.crowded and self._closing is None:
            try:
                async with asyncio.timeout(self.replica.settings.ping_seconds):
                    await self.outbox.room()
            except TimeoutError:
                self.close(SLOW_CONSUMER)
        return self._closing is None

    async def run(self) -> None:
        """Serve the connection until the socket closes."""
        logs.client_id.set(self.id)
        logs.user_id.set(self.user)
        try:
            await self.opened()
            max_bytes = self.replica.settings.max_message_bytes
            while True:
                event = await self._websocket.receive()
                if event["type"] != "websocket.receive":
                    if self._closing is None:
                        self.replica.stats.closes[int(event.get("code", 1005))] += 1
                    break
                if self._closing is not None:
                    continue
                text = event.get("text")
                if text is None:
                    self.on_binary()
                elif len(text) > max_bytes // 4 and len(text.encode()) > max_bytes:
                    self.close(MESSAGE_TOO_BIG)
                else:
                    self.replica.stats.received_bytes += len(text)
                    await self.on_text(text)
        except GatewayError as error:
            self.close(disconnect_for(error))
            await self._let_close_finish()
        except Exception:
            log.exception("connection.failed client=%s", self.id)
            self.close(INTERNAL_ERROR)
            await self._let_close_finish()
        finally:
            await self._finish()

    async def opened(self) -> None:
        """Called once the handshake is accepted, before the first frame is read."""

    async def on_text(self, text: str) -> None:
        """Handle one text frame from the client."""
        raise NotImplementedError

    def on_binary(self) -> None:
        """Handle one binary frame from the client."""
        raise NotImplementedError

    async def _close(self, reason: Disconnect) -> None:
        if reason is not SLOW_CONSUMER:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.flush(), FLUSH_BEFORE_CLOSE)
        await self.outbox.close()
        await self._sink.close(protocol.disconnect(reason), int(reason.code), reason.reason)

    async def _let_close_finish(self) -> None:
        """Give a close begun by a failure the time to send `disconnect` and the close frame
        (the read loop, which would otherwise wait for that, has ended)."""
        closer = self._closer
        if closer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(closer), FLUSH_BEFORE_CLOSE + CLOSE_DEADLINE)

    def _leave_all(self) -> None:
        hub, presence = self.replica.hub, self.replica.presence
        channels, self.channels = self.channels, {}
        for channel, subscriber in channels.items():
            hub.unsubscribe(channel, subscriber)
            presence.leave(channel, self.id)

    async def _finish(self) -> None:
        if self._closing is None:
            self._closing = NORMAL
        self.guard.release()
        self._leave_all()
        await self.outbox.close()
        closer, self._closer = self._closer, None
        if closer is not None and not closer.done():
            closer.cancel()
            await asyncio.gather(closer, return_exceptions=True)


class ProtocolConnection(Connection):
    """A ``/ws`` client speaking protocol v1."""

    __slots__ = ("_pending",)

    def __init__(
        self, replica: Replica, websocket: WebSocket, sink: Sink, principal: Principal
    ) -> None:
        super().__init__(replica, websocket, sink, principal)
        self._pending: list[bytes | tuple[Publish, asyncio.Future[StreamPosition | None]]] | None
        self._pending = None
        """Replies held back behind publications still on their way to the broker."""

    def send(self, payload: bytes) -> None:
        pending = self._pending
        if pending is not None:
            pending.append(payload)
        else:
            super().send(payload)

    async def opened(self) -> None:
        if self.guard.open(self._websocket.query_params.get("token"), connect_op=True):
            self.send_welcome()

    async def on_text(self, text: str) -> None:
        """Run the frame's commands in order, replies in the same order.

        Consecutive `publish` commands do not wait for one another: they go to the broker
        together (one round trip) and their replies follow in order; any other command
        first waits for them. A lone `publish` goes at once. A client that sends commands
        faster than it reads the replies is slowed down (its next command waits for room in
        its queue) rather than disconnected, unless it stops reading (see `make_room`).
        """
        commands = self.replica.commands
        counts = self.replica.stats.commands
        frame = protocol.parse(text)
        for index, command in enumerate(frame):
            pending = self._pending
            if pending is not None and (
                not isinstance(command, Publish) or len(pending) >= PIPELINED_PUBLISHES
            ):
                await self._settle()
            if not await self.make_room():
                return
            if not self.guard.admit(command):
                continue
            if isinstance(command, GatewayError):
                counts["invalid", command.code.value] += 1
                self.send_error(command)
                continue
            if isinstance(command, Publish) and (
                self._pending is not None
                or (index + 1 < len(frame) and isinstance(frame[index + 1], Publish))
            ):
                self._start_publish(command)
                continue
            op = protocol.op_of(command)
            try:
                await commands.run(self, command)
                counts[op, "ok"] += 1
            except GatewayError as error:
                counts[op, error.code.value] += 1
                self.send_error(error.with_id(command.id))
            except Exception:
                self._failed(op, command.id)
        await self._settle()

    def _failed(self, op: str, command_id: int | str | None) -> None:
        """Answer a command that failed unexpectedly with `internal`; the connection goes on."""
        log.exception("command.failed client=%s op=%s", self.id, op)
        self.replica.stats.commands[op, ErrorCode.INTERNAL.value] += 1
        self.send_error(GatewayError(ErrorCode.INTERNAL, "internal error", command_id))

    def _start_publish(self, command: Publish) -> None:
        if self._pending is None:
            self._pending = []
        try:
            future = self.replica.commands.start_publish(self, command)
        except GatewayError as error:
            self.replica.stats.commands["publish", error.code.value] += 1
            self.send_error(error.with_id(command.id))
        except Exception:
            self._failed("publish", command.id)
        else:
            self._pending.append((command, future))

    async def _settle(self) -> None:
        """Send the held-back replies in order, waiting for each publication's outcome."""
        pending, self._pending = self._pending, None
        counts = self.replica.stats.commands
        for item in pending or ():
            if isinstance(item, bytes):
                self.send(item)
                continue
            command, future = item
            try:
                position = await future
            except GatewayError as error:
                counts["publish", error.code.value] += 1
                self.send_error(error.with_id(command.id))
            except Exception:
                self._failed("publish", command.id)
            else:
                counts["publish", "ok"] += 1
                self.send(published(command, position))

    def on_binary(self) -> None:
        if not self.guard.admit(None):
            return
        self.send_error(
            GatewayError(ErrorCode.BAD_REQUEST, "binary frames are not accepted; send text")
        )


class PlainTextConnection(Connection):
    """A ``/websocket`` client: each text frame it sends is published as a string to one
    channel, and it receives every publication of that channel as bare text."""

    __slots__ = ("_channel",)

    batches = False

    def __init__(
        self,
        replica: Replica,
        websocket: WebSocket,
        sink: Sink,
        principal: Principal,
        channel: str,
    ) -> None:
        super().__init__(replica, websocket, sink, principal)
        self._channel = channel
        self.deliver = self._deliver_plain

    async def opened(self) -> None:
        if not self.guard.open(self._websocket.query_params.get("token"), connect_op=False):
            return
        options = self.replica.commands.namespace(self._channel)
        self.guard.check_subscribe(self._channel, options, None)
        await self.subscribe(self._channel, history_policy(options))
        if options.presence:
            await self.replica.presence.join(
                self._channel, self.id, self.user, self.principal.info, options.join_leave
            )

    async def on_text(self, text: str) -> None:
        self.guard.check_rate()
        head = self.message_head(self._channel, text)
        await self.replica.commands.publish_frame(self, self._channel, head)

    def on_binary(self) -> None:
        self.close(UNSUPPORTED_DATA)

    def _deliver_plain(self, message: Outgoing) -> bool:
        plain = message.plain
        if plain is False:
            plain = message.plain = plain_text_of(message.payload)
        if plain is None:
            return True
        return self.outbox.offer(plain)


_CLOSE_FOR_ERROR = {
    ErrorCode.UNAVAILABLE: BROKER_UNAVAILABLE,
    ErrorCode.FORBIDDEN: FORBIDDEN,
    ErrorCode.UNAUTHORIZED: UNAUTHORIZED,
    ErrorCode.RATE_LIMITED: TOO_MANY_REQUESTS,
    ErrorCode.TOO_LARGE: MESSAGE_TOO_BIG,
}


def disconnect_for(error: GatewayError) -> Disconnect:
    """How a connection that cannot answer with an `error` frame closes on a failure."""
    return _CLOSE_FOR_ERROR.get(error.code, INTERNAL_ERROR)


def plain_text_of(payload: bytes) -> Outgoing | None:
    """What a plain-text client sees of a frame: a message's `data` as text, nothing else."""
    frame: Any = orjson.loads(payload)
    if frame.get("op") != "message":
        return None
    data = frame.get("data")
    return Outgoing(data.encode() if isinstance(data, str) else orjson.dumps(data))
