"""One client connection: the only place that reads what a client sends.

`Connection` owns the read loop, the outbox and the close sequence. What a frame *means* is
up to its dialect, a subclass that fills in the dialect interface: `opened` (after the
handshake; sends `welcome` where the dialect has one), `on_text`, `on_binary`, `farewell`
(what the client gets when the server closes), `batches` (whether queued frames may leave
together as NDJSON) and `encoding` (how the dialect shows a publication, when not as the
pubsub.v1 frame itself). The dialects: `gateway.session.pubsub` (``/ws``, protocol v1),
`gateway.session.plain` (``/websocket``) and `gateway.session.centrifugo`
(``/connection/websocket``, Centrifugo's protocol, whose Protobuf encoding sends binary
frames: ``binary``); another client protocol is one more subclass, served by one more
endpoint of `gateway.session.handshake`.

The hot path is `deliver`, which the hub calls for each publication of a subscribed
channel: for a dialect without its own encoding it *is* the outbox's `offer` (no call in
between); otherwise it offers the publication's form in that dialect, built once per
publication (`Outgoing.encoded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from gateway.core.frames import Encoding, Outgoing
from gateway.core.history import HistoryPolicy
from gateway.core.hub import Hub, Subscriber
from gateway.core.outbox import Outbox, Sink
from gateway.core.passes import LoopPasses
from gateway.core.stats import Stats
from gateway.ops import logs
from gateway.security.auth import Principal
from gateway.security.guard import Security
from gateway.services.channels import Channels
from gateway.services.hooks import Hooks
from gateway.services.presence import Presence
from gateway.services.publisher import Publisher, Sender
from gateway.settings import Settings
from gateway.transport.sinks import CLOSE_DEADLINE
from gateway.wire import protocol
from gateway.wire.errors import (
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL,
    SLOW_CONSUMER,
    CloseCode,
    Disconnect,
    GatewayError,
)
from gateway.wire.protocol import StreamPosition

log = logging.getLogger(__name__)

FLUSH_BEFORE_CLOSE = 2.0
"""Seconds a closing connection may spend sending what it already queued."""


def new_client_id() -> str:
    """A random, URL-safe client id, unique across replicas."""
    return secrets.token_urlsafe(12)


class Inbound(Protocol):
    """Where a connection's frames come from: the handshake's query and the ASGI events of
    the socket (Starlette's ``WebSocket`` is one; a transport that is not a WebSocket brings
    its own, beside its `Sink`)."""

    @property
    def query_params(self) -> Mapping[str, str]: ...

    async def receive(self) -> Mapping[str, Any]:
        """The next ``websocket.receive`` event, or the ``websocket.disconnect`` that ends it."""
        ...


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every connection of one replica shares: the services it calls and the limits it
    keeps (held once, by reference, however many connections there are)."""

    settings: Settings
    hub: Hub
    publisher: Publisher
    channels: Channels
    presence: Presence
    security: Security
    stats: Stats
    passes: LoopPasses
    on_backlog: Callable[[int], None] | None = None
    """Gets the queue's length each time a connection's writer takes from it (a metric)."""
    hooks: Hooks = field(default_factory=Hooks)
    """The application's hooks (`gateway.services.hooks`), which every dialect calls."""


class Connection:
    """State and life cycle shared by every dialect; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_closer",
        "_closing",
        "_ended_with",
        "_inbound",
        "_sink",
        "channels",
        "context",
        "deliver",
        "guard",
        "id",
        "outbox",
        "principal",
    )

    batches: ClassVar[bool] = True
    """Whether queued frames may leave together as one NDJSON frame."""
    encoding: ClassVar[Encoding | None] = None
    """How this dialect shows a publication; None: as the pubsub.v1 `message` frame."""

    def __init__(
        self,
        context: SessionContext,
        inbound: Inbound,
        sink: Sink,
        principal: Principal,
        *,
        binary: bool = False,
        framer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """``binary``: the dialect's frames are binary; ``framer``: how the outbox frames a
        batch for a transport that is not a WebSocket (`Outbox`)."""
        self.context = context
        self.id = new_client_id()
        self.principal = principal
        self.channels: dict[str, Subscriber] = {}
        settings = context.settings
        self.outbox = Outbox(
            sink,
            settings.max_queue,
            context.passes,
            context.on_backlog,
            byte_limit=settings.max_queue_bytes,
            batches=self.batches,
            binary=binary,
            framer=framer,
        )
        encoding = self.encoding
        self.deliver: Callable[[Outgoing], bool] = (
            self.outbox.offer if encoding is None else self._encoder(encoding)
        )
        """The hot path: take one publication without waiting; False when the queue is full."""
        self._inbound = inbound
        self._sink = sink
        self._closing: Disconnect | None = None
        self._ended_with: int | None = None
        self._closer: asyncio.Task[None] | None = None
        self.guard = context.security.guard(self)

    def _encoder(self, encoding: Encoding) -> Callable[[Outgoing], bool]:
        offer = self.outbox.offer

        def deliver(message: Outgoing) -> bool:
            form = message.encoded(encoding)
            return True if form is None else offer(form)

        return deliver

    @property
    def user(self) -> str | None:
        """The user id of the connection token; None for anonymous connections."""
        return self.principal.user

    @property
    def sender(self) -> Sender:
        """Who this connection's publications are from."""
        principal = self.principal
        return Sender(self.id, principal.user, principal.info)

    @property
    def closing(self) -> bool:
        """True once the server or the client began closing the connection."""
        return self._closing is not None

    @property
    def close_code(self) -> int | None:
        """How the connection ended: the server's close code, else the client's (1005 when
        it gave none); None while it runs."""
        if self._ended_with is not None:
            return self._ended_with
        return None if self._closing is None else int(self._closing.code)

    def send(self, payload: bytes) -> None:
        """Send a frame meant for this client alone; a full queue closes it as too slow."""
        self.context.stats.sent_bytes += len(payload)
        if not self.outbox.put(payload):
            self.close(SLOW_CONSUMER)

    def send_error(self, error: GatewayError) -> None:
        """Answer a failed command."""
        self.context.stats.errors[error.code.value] += 1
        self.send(protocol.error(error))

    async def subscribe(
        self, channel: str, history: HistoryPolicy | None, via: Subscriber | None = None
    ) -> StreamPosition | None:
        """Join a channel on this replica's hub; returns once publications flow.

        ``via`` stands in for the connection in the hub until `take_over` (recovery).
        Returns the channel's position at joining on channels with history.

        Raises:
            GatewayError: `unavailable` when the broker could not subscribe.
        """
        hub = self.context.hub
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
            self.context.hub.replace(channel, via, self)

    def unsubscribe(self, channel: str) -> None:
        """Leave a channel."""
        subscriber = self.channels.pop(channel, None)
        if subscriber is not None:
            self.context.hub.unsubscribe(channel, subscriber)
            self.context.presence.leave(channel, self.id)

    def close(self, reason: Disconnect) -> None:
        """Begin closing: leave every channel now, then send `disconnect` and close the socket."""
        if self._closing is not None:
            return
        self._closing = reason
        stats = self.context.stats
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
                async with asyncio.timeout(self.context.settings.ping_seconds):
                    await self.outbox.room()
            except TimeoutError:
                self.close(SLOW_CONSUMER)
        return self._closing is None

    async def run(self) -> None:
        """Serve the connection until the socket closes."""
        logs.client_id.set(self.id)
        logs.user_id.set(self.user)
        stats = self.context.stats
        try:
            if self._closing is None:
                await self.opened()
            max_bytes = self.context.settings.max_message_bytes
            while True:
                event = await self._inbound.receive()
                if event["type"] != "websocket.receive":
                    if self._closing is None:
                        self._ended_with = int(event.get("code", 1005))
                        stats.closes[self._ended_with] += 1
                    break
                if self._closing is not None:
                    continue
                text = event.get("text")
                if text is None:
                    data = event.get("bytes") or b""
                    if len(data) > max_bytes:
                        self.close(MESSAGE_TOO_BIG)
                    else:
                        stats.received_bytes += len(data)
                        await self.on_binary(data)
                elif len(text) > max_bytes // 4 and len(text.encode()) > max_bytes:
                    self.close(MESSAGE_TOO_BIG)
                else:
                    stats.received_bytes += len(text)
                    await self.on_text(text)
        except GatewayError as error:
            self.close(error.closes_with)
            await self._let_close_finish()
        except Exception:
            log.exception("connection.failed client=%s", self.id)
            self.close(INTERNAL_ERROR)
            await self._let_close_finish()
        finally:
            await self._finish()

    # The dialect interface

    async def opened(self) -> None:
        """Called once the handshake is accepted and ``on_connect`` admitted the client,
        before the first frame is read (not called when the connection is closing already)."""

    async def on_text(self, text: str) -> None:
        """Handle one text frame from the client."""
        raise NotImplementedError

    async def on_binary(self, data: bytes) -> None:
        """Handle one binary frame from the client."""
        raise NotImplementedError

    def farewell(self, reason: Disconnect) -> tuple[bytes, int, str]:
        """What a server-initiated close sends: a last frame (empty: none), the close code
        and its reason."""
        return protocol.disconnect(reason), int(reason.code), reason.reason

    # Closing

    async def _close(self, reason: Disconnect) -> None:
        if reason is not SLOW_CONSUMER:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.flush(), FLUSH_BEFORE_CLOSE)
        await self.outbox.close()
        await self._sink.close(*self.farewell(reason))

    async def _let_close_finish(self) -> None:
        """Give a close begun by a failure the time to send `disconnect` and the close frame
        (the read loop, which would otherwise wait for that, has ended)."""
        closer = self._closer
        if closer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(closer), FLUSH_BEFORE_CLOSE + CLOSE_DEADLINE)

    def _leave_all(self) -> None:
        hub, presence = self.context.hub, self.context.presence
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
