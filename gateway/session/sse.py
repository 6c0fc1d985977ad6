"""``GET /sse``: protocol v1 frames over Server-Sent Events, where WebSockets are blocked.

`SseEndpoint` admits the request like a WebSocket handshake (origin, readiness, limits, the
token as ``?token=`` or ``Authorization: Bearer``, the application's ``on_connect``),
answers refusals with an HTTP status, and runs an `SseConnection`: it sends `welcome`,
subscribes every ``channel`` of the query in order (each through ``on_subscribe`` as on
``/ws``, answered by `subscribed`, or an `error` whose ``id`` is the channel), then streams
`message`, `join` and `leave` frames; ``on_disconnect`` runs at its end. Every event
carries the stream's position in every channel (`gateway.wire.sse`): the ``Last-Event-ID``
an ``EventSource`` sends back when it reconnects (or ``?lastEventId=`` for a client that
reopens the stream itself) resumes each channel with recovery, on any replica.
``latest=true`` asks for each channel's latest message where nothing can be recovered
(``latest=CHANNEL``, repeated, for some of them). A stream may name no channel at all (a
client that only publishes, through ``POST /publish``). A comment every ``ping_seconds``
keeps proxies from timing the stream out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

import orjson
from starlette.datastructures import Headers, QueryParams
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from gateway.core.frames import Outgoing
from gateway.ops import logs
from gateway.ops.refusals import REFUSALS
from gateway.security.auth import ANONYMOUS, Principal, anonymous
from gateway.security.guard import Security
from gateway.services.admission import Admission, HandshakePolicy, client_address
from gateway.services.connections import ConnectionRegistry
from gateway.services.http_identity import bearer_token, request_principal
from gateway.session.commands import Commands
from gateway.session.connection import Connection, Inbound, SessionContext
from gateway.transport.sse import SseInbound, SseSink, chunk, stream_control
from gateway.wire.channels import is_valid_channel
from gateway.wire.errors import ERRORS, SLOW_CONSUMER, GatewayError
from gateway.wire.protocol import StreamPosition, Subscribe
from gateway.wire.sse import (
    ID_VERSION,
    decode_positions,
    encode_entry,
    encode_epoch,
    event,
    event_id,
    id_line,
)

log = logging.getLogger(__name__)

RETRY_MS = 1000
"""How long an ``EventSource`` waits before reconnecting (the stream's ``retry:``)."""
HEARTBEAT = b": ping\n\n"
_CHANNEL_FIELD = b'"channel":"'
_VERSION = ID_VERSION.encode()


class SseEvent(Outgoing):
    """An event of a stream: ``payload`` the event, ``frame`` the event as a chunk of the
    response body (what the socket takes)."""

    __slots__ = ()

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.size = len(payload)
        self.frame = chunk(payload)
        self.offset = 0
        self._encoded = None


class ChannelEvent(SseEvent):
    """A stored message as the event of every stream of its channel alone: ``entry`` and
    ``id_line`` are such a stream's position after it."""

    __slots__ = ("entry", "id_line")

    def __init__(self, payload: bytes, entry: str, id_line: bytes) -> None:
        super().__init__(payload)
        self.entry = entry
        self.id_line = id_line


class OneChannelEncoding:
    """The event of a stored message for streams of one channel: the same for all of them
    (the id holds only that channel's position), so it is built once per message per
    replica (`Outgoing.encoded`) and shared, as a WebSocket frame is."""

    MAX_EPOCHS = 1024
    """Epochs whose id form is remembered (a channel keeps one for long)."""

    def __init__(self) -> None:
        self._codes: dict[str, str] = {}

    def encode(self, message: Outgoing) -> Outgoing | None:
        payload = message.payload
        epoch = _epoch_of(payload)
        code = self._codes.get(epoch)
        if code is None:
            if len(self._codes) >= self.MAX_EPOCHS:
                self._codes.clear()
            code = self._codes[epoch] = encode_epoch(epoch)
        entry = f"{message.offset}:{code}"
        line = b"id: %s.%s\n" % (_VERSION, entry.encode())
        return ChannelEvent(b"%sdata: %s\n\n" % (line, payload), entry, line)


ONE_CHANNEL = OneChannelEncoding()
_HEARTBEAT_EVENT = SseEvent(HEARTBEAT)


class SseConnection(Connection):
    """One ``/sse`` stream: the channels of its request, and its position in each."""

    framed = False

    __slots__ = (
        "_codes",
        "_commands",
        "_entries",
        "_heartbeat",
        "_id",
        "_index",
        "_latest",
        "_names",
        "_one",
        "_since",
        "_tails",
        "_token",
    )

    def __init__(
        self,
        context: SessionContext,
        commands: Commands,
        inbound: Inbound,
        sink: SseSink,
        principal: Principal,
        *,
        channels: list[str],
        since: list[StreamPosition | None],
        latest: frozenset[str],
        token: str | None,
    ) -> None:
        # binary: a backlog leaves as its events concatenated, with nothing between them
        super().__init__(context, inbound, sink, principal, binary=True, framer=chunk)
        self.deliver = self._deliver
        self._commands = commands
        self._names = channels
        self._one = len(channels) == 1
        self._index = {name.encode(): index for index, name in enumerate(channels)}
        self._since = since
        self._latest = latest
        self._token = token
        self._entries = [encode_entry(position) for position in since]
        self._tails = [_tail(position) for position in since]
        self._codes = ["" if p is None else encode_epoch(p.epoch) for p in since]
        """Each channel's epoch as the id writes it, computed once per epoch."""
        self._id = id_line(event_id(self._entries))
        self._heartbeat: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self._heartbeat is not None:
                self._heartbeat.cancel()

    async def opened(self) -> None:
        if not self.guard.open(self._token, connect_op=False):
            return
        self._commands.welcome(self)
        self._beat_later()
        for channel, since in zip(self._names, self._since, strict=True):
            if self.closing:
                return
            command = Subscribe(channel, channel, since, None, channel in self._latest)
            try:
                await self._commands.run(self, command)
            except GatewayError as error:
                self.send_error(error.with_id(channel))

    async def on_text(self, text: str) -> None:
        """Nothing arrives on a stream after its request."""

    async def on_binary(self, data: bytes) -> None:
        """Nothing arrives on a stream after its request."""

    def send(self, payload: bytes) -> None:
        """Send a frame for this client alone (a reply, or a stored message of a recovery)
        as an event, after noting the position it moves the stream to."""
        if payload.startswith((b'{"op":"message"', b'{"op":"subscribed"')):
            self._note(orjson.loads(payload))
        self.context.stats.sent_bytes += len(payload)
        if not self.outbox.offer(SseEvent(event(payload, self._id))):
            self.close(SLOW_CONSUMER)

    def _deliver(self, message: Outgoing) -> bool:
        """The hot path (the hub's fan-out): move the channel's position, then offer the
        publication as an event. A stream of one channel takes a stored message's shared
        event (`ONE_CHANNEL`), so its per-channel bookkeeping (``_codes``, ``_tails``) is
        only kept by `_move`, which sets everything again."""
        offset = message.offset
        if offset and self._one:
            event = cast(ChannelEvent, message.encoded(ONE_CHANNEL))
            self._entries[0] = event.entry
            self._id = event.id_line
            return self.outbox.offer(event)
        payload = message.payload
        if offset:
            index = self._channel_index(payload)
            if index is not None:
                if payload.endswith(self._tails[index]):
                    entries = self._entries
                    entries[index] = f"{offset}:{self._codes[index]}"
                    self._id = b"id: %s.%s\n" % (_VERSION, ".".join(entries).encode())
                else:
                    self._move(index, StreamPosition(offset, _epoch_of(payload)))
        return self.outbox.offer(SseEvent(b"%sdata: %s\n\n" % (self._id, payload)))

    def _channel_index(self, payload: bytes) -> int | None:
        start = payload.find(_CHANNEL_FIELD, 0, 48)
        if start < 0:
            return None
        start += len(_CHANNEL_FIELD)
        return self._index.get(payload[start : payload.find(b'"', start)])

    def _note(self, frame: dict[str, object]) -> None:
        index = self._index.get(str(frame.get("channel", "")).encode())
        if index is None:
            return
        offset, epoch = frame.get("offset"), frame.get("epoch")
        if not isinstance(offset, int) or not isinstance(epoch, str) or not epoch:
            return
        if frame["op"] == "subscribed":
            if frame.get("recovered"):
                return  # the missed messages that follow move it
            if frame["channel"] in self._latest:
                offset = max(0, offset - 1)  # the latest message follows
        self._move(index, StreamPosition(offset, epoch))

    def _move(self, index: int, position: StreamPosition) -> None:
        self._codes[index] = encode_epoch(position.epoch)
        self._entries[index] = f"{position.offset}:{self._codes[index]}"
        self._tails[index] = _tail(position)
        self._id = id_line(event_id(self._entries))

    def _beat_later(self) -> None:
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.call_later(self.context.settings.ping_seconds, self._beat)

    def _beat(self) -> None:
        if self.closing:
            return
        if not self.outbox.offer(_HEARTBEAT_EVENT):
            self.close(SLOW_CONSUMER)
            return
        self._beat_later()


def _tail(position: StreamPosition | None) -> bytes:
    """How a message frame of this position's epoch ends."""
    return b"" if position is None else b',"epoch":"%s"}' % position.epoch.encode()


def _epoch_of(payload: bytes) -> str:
    """The epoch of a stored message frame: the last field, as the broker writes it."""
    end = len(payload) - 2
    return payload[payload.rindex(b'"', 0, end) + 1 : end].decode()


class SseEndpoint:
    """``GET /sse`` of one replica, an ASGI application."""

    def __init__(
        self,
        context: SessionContext,
        commands: Commands,
        policy: HandshakePolicy,
        admission: Admission,
        connections: ConnectionRegistry,
        security: Security,
    ) -> None:
        self._context = context
        self._commands = commands
        self._policy = policy
        self._admission = admission
        self._connections = connections
        self._security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") != "GET":
            await _refuse(scope, receive, send, 405, "GET /sse opens a stream", {"allow": "GET"})
            return
        query = QueryParams(scope.get("query_string", b""))
        channels = query.getlist("channel")
        problem = self._channels_problem(channels)
        if problem is not None:
            await _refuse(scope, receive, send, 400, problem)
            return
        refusal = self._policy.refusal(scope)
        if refusal is not None:
            await _refuse(scope, receive, send, refusal.status, refusal.message)
            return
        headers = Headers(scope=scope)
        token = query.get("token") or bearer_token(headers.get("authorization"))
        address = client_address(scope)
        self._admission.opened(address)
        try:
            identity = await self._identify(scope, token, query.get("name"))
            if isinstance(identity, _Refusal):
                extra = {"www-authenticate": "Bearer"} if identity.status == 401 else None
                await _refuse(scope, receive, send, identity.status, identity.message, extra)
                return
            resume = headers.get("last-event-id") or query.get("lastEventId") or ""
            since = decode_positions(resume, len(channels)) if resume else None
            sink = SseSink(send, stream_control(scope))
            connection = SseConnection(
                self._context,
                self._commands,
                SseInbound(scope, receive, sink),
                sink,
                identity.principal,
                channels=channels,
                since=since if since is not None else [None] * len(channels),
                latest=_latest(query.getlist("latest"), channels),
                token=token,
            )
            if identity.chosen:
                connection.guard.grant(identity.principal)
            origin = headers.get("origin")
            cors = [] if origin is None else [(b"access-control-allow-origin", origin.encode())]
            await self._stream(connection, sink, [*cors, (b"vary", b"origin")])
        finally:
            self._admission.closed(address)

    async def _stream(
        self, connection: SseConnection, sink: SseSink, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Run an admitted stream, held in the registry, then tell ``on_disconnect``."""
        logs.client_id.set(connection.id)
        self._connections.add(connection)
        try:
            await sink.start(headers, b"retry: %d\n\n" % RETRY_MS)
            await connection.run()
        finally:
            try:
                code = connection.close_code or 1005
                await self._context.hooks.disconnect(connection.id, connection.user, code)
            finally:
                self._connections.remove(connection)

    def _channels_problem(self, channels: list[str]) -> str | None:
        settings = self._context.settings
        if len(channels) > settings.max_subscriptions:
            return f"at most {settings.max_subscriptions} channels per stream"
        if len(set(channels)) != len(channels):
            return "each channel at most once"
        for channel in channels:
            if not is_valid_channel(channel):
                return "a channel is 1-255 characters of A-Z a-z 0-9 _ - : . @ / = , $"
        return None

    async def _identify(
        self, scope: Scope, token: str | None, name: str | None
    ) -> _Identity | _Refusal:
        """Who the stream is until its guard checks its token, or why it is refused.

        ``on_connect``, when the application registered one, runs here (transport
        ``"sse"``, with the verified claims of a token the request carried), before the
        response starts: its `Reject` is the HTTP status of its code, and the principal it
        chooses needs no token. Otherwise, as on ``/ws``: anonymous (with ``?name=``) when
        auth is off, else the token decides.
        """
        try:
            principal, chosen = await request_principal(
                self._security, self._context.hooks, scope, token, "sse"
            )
        except GatewayError as error:
            return _Refusal(ERRORS[error.code].status, error.message)
        if chosen and principal is not None:
            return _Identity(principal, chosen=True)
        verifier = self._security.verifier
        if verifier.enabled:
            if token is None:
                return _Refusal(401, "a token is required: ?token= or Authorization: Bearer")
            return _Identity(ANONYMOUS)
        try:
            return _Identity(anonymous(name))
        except GatewayError as error:
            return _Refusal(400, error.message)


@dataclass(frozen=True, slots=True)
class _Identity:
    """Who an admitted stream is; ``chosen``: by ``on_connect`` (no token needed)."""

    principal: Principal
    chosen: bool = False


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    message: str


def _latest(values: list[str], channels: list[str]) -> frozenset[str]:
    """The channels whose latest message is asked for: ``latest=true`` names them all,
    ``latest=CHANNEL`` (repeated) some."""
    if any(value.lower() in ("1", "true", "yes") for value in values):
        return frozenset(channels)
    return frozenset(values) & frozenset(channels)


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    REFUSALS.refused(scope, status, message)
    await PlainTextResponse(message + "\n", status_code=status, headers=headers)(
        scope, receive, send
    )
