"""Centrifugo's client protocol (v2) on ``/connection/websocket``: a dialect of the session.

The same hub, channels, history and presence as ``/ws``: a Centrifugo SDK and a ``/ws``
client on one channel see each other. JSON runs over text frames, Protobuf (the
``centrifuge-protobuf`` subprotocol) over binary ones; `gateway.wire.centrifugo.codec`
frames both. What differs from ``/ws`` (docs/centrifugo.md):

- ``connect`` must come first, within ``connect_timeout``; anything else first is a bad
  request (3501). Its reply lists the server-side subscriptions (the personal channel
  ``#<user>`` with ``personal_channel``, and the connection token's ``channels`` and
  ``subs`` claims, which on this endpoint name channels to subscribe, not permissions).
- Each subscription is its own hub subscriber (`Subscription`): it knows its channel, so
  it can pick a push's delta form, drop join/leave the client did not ask for, and apply
  a tags filter. Until its subscribe reply (or the connect reply) is out it keeps what the
  hub delivers aside, so nothing of the channel reaches the client before the reply, and
  recovered publications travel inside the reply.
- The server pings (``{}``) every ``ping_seconds``; the client's ``{}`` is the pong. A
  client silent for a whole ping interval after a ping is closed with 3012.
- Errors are Centrifugo's codes, closes its close codes (`gateway.wire.centrifugo.codes`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import orjson
from google.protobuf.message import Message

from gateway.core.frames import Outgoing
from gateway.core.history import HistoryPolicy
from gateway.core.outbox import Sink
from gateway.core.recovery import RecoveryBuffer
from gateway.security.auth import Principal, SubscriptionGrant, TokenError
from gateway.security.permissions import subscribe_refusal
from gateway.security.ratelimit import Verdict
from gateway.services.hooks import ConnectRequest
from gateway.services.namespaces import history_policy
from gateway.session.centrifugo_encoding import (
    PUSHES,
    DeltaChannel,
    DeltaEncoding,
    DeltaForm,
    PushForm,
    delta_data,
    event_of,
)
from gateway.session.centrifugo_history import PositionLost, read_history
from gateway.session.connection import Connection, Inbound, SessionContext
from gateway.settings import NamespaceOptions
from gateway.version import __version__
from gateway.wire.centrifugo import codec, pushes
from gateway.wire.centrifugo.codec import CodecError
from gateway.wire.centrifugo.codec import Encoding as Wire
from gateway.wire.centrifugo.codes import (
    BAD_FRAME,
    ERROR_CODES,
    ERROR_MESSAGES,
    PONG_MISSING,
    STATE_LOST,
    TEMPORARY,
    TOO_MANY_CHANNELS,
    CentrifugoClose,
    CentrifugoError,
    close_for,
)
from gateway.wire.centrifugo.filters import Filter, FilterError, compile_filter
from gateway.wire.centrifugo.protocol_pb2 import (
    ClientInfo,
    Command,
    Publication,
    Reply,
    SubscribeRequest,
    SubscribeResult,
)
from gateway.wire.channels import CONTROL_CHANNEL, MAX_CHANNEL_LENGTH, is_valid_channel
from gateway.wire.errors import (
    CONNECT_TIMEOUT,
    DISCONNECTED_BY_SERVER,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    Disconnect,
    ErrorCode,
    GatewayError,
    close_reason,
)
from gateway.wire.protocol import StreamPosition

log = logging.getLogger(__name__)

MAX_COMMANDS_PER_FRAME = 256
"""Commands one frame may carry; more is a bad request (3501)."""
REJECT_UNRECOVERED = 2
"""``flag`` bit of a subscribe: answer an unrecoverable position with error 112."""
USER_BOUNDARY = "#"
SERVER_UNSUBSCRIBE = 2000
"""Code of an ``unsubscribe`` push for a server-side unsubscribe (the SDK does not
resubscribe)."""
METHODS = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)


class ReplyError(Exception):
    """A command refused with one of Centrifugo's own error codes."""

    def __init__(self, code: CentrifugoError, message: str | None = None) -> None:
        super().__init__(message or ERROR_MESSAGES[code])
        self.code = code
        self.message = message or ERROR_MESSAGES[code]


def is_valid_centrifugo_channel(name: str) -> bool:
    """Our channel names plus Centrifugo's user boundary ``#`` (``#42``, ``chat:room#42,43``),
    except the control channel's name."""
    if name == CONTROL_CHANNEL or not 0 < len(name) <= MAX_CHANNEL_LENGTH:
        return False
    head, boundary, users = name.partition(USER_BOUNDARY)
    if boundary and USER_BOUNDARY in users:
        return False
    return all(is_valid_channel(part) for part in (head, users) if part)


def boundary_users(channel: str) -> list[str] | None:
    """The users a ``#`` channel is limited to (``news#42,43``: 42 and 43), else None."""
    _, boundary, users = channel.partition(USER_BOUNDARY)
    return users.split(",") if boundary else None


class Subscription:
    """One channel of one connection, as the hub's subscriber: picks the form of each push
    this subscription shows, and keeps pushes aside until its reply is out."""

    __slots__ = (
        "buffer",
        "channel",
        "connection",
        "delta",
        "encoding",
        "filter",
        "join_leave",
        "last",
        "offer",
    )

    def __init__(
        self,
        connection: CentrifugoConnection,
        channel: str,
        *,
        join_leave: bool,
        tags_filter: Filter | None,
        delta: DeltaChannel | None,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.offer = connection.outbox.offer
        self.join_leave = join_leave
        self.filter = tags_filter
        self.delta = delta
        """The channel's delta state, held for as long as this subscription lasts."""
        self.encoding = connection.deltas if delta is not None else PUSHES[connection.wire]
        self.last: Outgoing | None = None
        """The last publication delivered, for deltas."""
        settings = connection.context.settings
        self.buffer: RecoveryBuffer | None = RecoveryBuffer(
            connection, settings.max_queue, settings.max_queue_bytes
        )
        """Pushes kept aside until the reply is out; None once live."""

    def deliver(self, message: Outgoing) -> bool:
        buffer = self.buffer
        if buffer is not None:
            return buffer.deliver(message)
        form = message.encoded(self.encoding)
        if form is None:
            return True
        assert isinstance(form, PushForm)
        event = form.event
        if event.kind != pushes.PUB:
            return self.offer(form) if self.join_leave else True
        tags_filter = self.filter
        if tags_filter is not None and not tags_filter(event.tags):
            return True
        if isinstance(form, DeltaForm):
            delta = form.delta
            if delta is not None and self.last is form.base:
                form = delta
            self.last = message
        return self.offer(form)

    def go_live(self, after: int) -> bool:
        """Deliver what was kept aside (publications after offset ``after`` on a channel
        with history), then take pushes as they come. False if the connection closed."""
        connection = self.connection
        buffer = self.buffer
        while buffer is not None and (batch := buffer.take()):
            for message in batch:
                offset = message.offset
                if offset and after:
                    if offset <= after:
                        continue
                    if offset != after + 1:
                        connection.close(STATE_LOST)
                        return False
                    after = offset
                self.buffer = None
                delivered = self.deliver(message)
                self.buffer = buffer
                if not delivered:
                    connection.close(STATE_LOST)
                    return False
        self.buffer = None
        return not connection.closing

    def close(self, reason: Disconnect) -> None:
        self.connection.close(reason)


@dataclasses.dataclass(slots=True)
class _Joined:
    """A subscription made but not yet live: its reply, and the offset recovery reached."""

    subscription: Subscription
    result: SubscribeResult
    after: int
    options: NamespaceOptions


class CentrifugoConnection(Connection):
    """A ``/connection/websocket`` client."""

    __slots__ = (
        "_connect_timer",
        "_farewell",
        "_heard",
        "_ping_timer",
        "_scope",
        "_tasks",
        "deltas",
        "wire",
    )

    def __init__(
        self,
        context: SessionContext,
        inbound: Inbound,
        sink: Sink,
        principal: Principal,
        wire: Wire,
        deltas: DeltaEncoding,
        scope: Any = None,
    ) -> None:
        super().__init__(context, inbound, sink, principal, binary=wire.binary)
        self._scope = scope if scope is not None else {"type": "websocket", "headers": []}
        self.wire = wire
        self.deltas = deltas
        self._connect_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._heard = True
        self._farewell: CentrifugoClose | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.guard.connected = False

    # The dialect interface

    async def opened(self) -> None:
        loop = asyncio.get_running_loop()
        self._connect_timer = loop.call_later(
            self.context.settings.connect_timeout, self._connect_timed_out
        )

    async def on_text(self, text: str) -> None:
        if self.wire.binary:
            self.close(BAD_FRAME)
            return
        await self._run_frame(text)

    async def on_binary(self, data: bytes) -> None:
        if not self.wire.binary:
            self.close(BAD_FRAME)
            return
        await self._run_frame(data)

    def farewell(self, reason: Disconnect) -> tuple[bytes, int, str]:
        close = self._farewell or close_for(reason)
        return b"", close.code, close.reason

    def close(self, reason: Disconnect) -> None:
        if not self.closing:
            self._stop_timers()
            for task in self._tasks:
                task.cancel()
        super().close(reason)

    # What the server API asks of a connection (through the control channel)

    def disconnect_with(self, close: CentrifugoClose) -> None:
        """Close with a code and reason of the server API's choosing."""
        if not self.closing:
            self._farewell = close
        self.close(DISCONNECTED_BY_SERVER)

    def server_subscribe(self, channel: str) -> None:
        """Subscribe the connection to ``channel`` now (a ``subscribe`` push tells it)."""
        if self.closing or not self.guard.connected or channel in self.channels:
            return
        task = asyncio.get_running_loop().create_task(self._server_subscribe(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def server_unsubscribe(self, channel: str) -> None:
        """Unsubscribe the connection from ``channel`` (an ``unsubscribe`` push, code 2000)."""
        if channel not in self.channels:
            return
        self.unsubscribe(channel)
        reply = Reply()
        reply.push.channel = channel
        reply.push.unsubscribe.code = SERVER_UNSUBSCRIBE
        reply.push.unsubscribe.reason = "server unsubscribe"
        self._send_reply(reply)

    async def _server_subscribe(self, channel: str) -> None:
        try:
            made = await self._join(channel, SubscribeRequest(channel=channel), server_side=True)
        except (GatewayError, ReplyError) as error:
            log.info("centrifugo.server_side_failed channel=%s reason=%s", channel, error)
            return
        if made is None:
            return
        reply = Reply()
        reply.push.channel = channel
        pushed = reply.push.subscribe
        pushed.SetInParent()
        result = made.result
        pushed.recoverable, pushed.positioned = result.recoverable, result.positioned
        pushed.epoch, pushed.offset = result.epoch, result.offset
        self._send_reply(reply)
        await self._go_live(made)

    def send_error(self, error: GatewayError) -> None:
        self.context.stats.errors[error.code.value] += 1
        command_id = error.id if isinstance(error.id, int) else 0
        self._send_error(command_id, ERROR_CODES[error.code], error.message)

    # Frames and commands

    async def _run_frame(self, frame: str | bytes) -> None:
        self._heard = True
        try:
            commands = codec.decode_commands(frame, self.wire, limit=MAX_COMMANDS_PER_FRAME)
        except CodecError as error:
            log.info("centrifugo.bad_frame client=%s reason=%s", self.id, error)
            self.close(BAD_FRAME)
            return
        for command in commands:
            if self.closing or not await self.make_room():
                return
            await self._run(command)

    async def _run(self, command: Command) -> None:
        if codec.is_ping(command):
            return
        method = next((name for name in METHODS if command.HasField(name)), None)
        counts = self.context.stats.commands
        if method is None or (command.id == 0 and method != "send"):
            self.close(BAD_FRAME)
            return
        if (method == "connect") == self.guard.connected:
            self.close(BAD_FRAME)
            return
        verdict = self.guard.rate()
        if verdict is not Verdict.RUN:
            self._send_error(command.id, CentrifugoError.TOO_MANY_REQUESTS)
            if verdict is Verdict.CLOSE:
                self.close(TOO_MANY_REQUESTS)
            return
        handler = self._handlers[method]
        try:
            await handler(self, command.id, getattr(command, method))
            counts[method, "ok"] += 1
        except GatewayError as error:
            counts[method, error.code.value] += 1
            self.context.stats.errors[error.code.value] += 1
            self._send_error(command.id, ERROR_CODES[error.code], error.message)
        except ReplyError as error:
            counts[method, str(int(error.code))] += 1
            self._send_error(command.id, error.code, error.message)
        except Exception:
            log.exception("command.failed client=%s op=%s", self.id, method)
            counts[method, ErrorCode.INTERNAL.value] += 1
            self._send_error(command.id, CentrifugoError.INTERNAL)

    def _reply(self, command_id: int, method: str, result: Message | None = None) -> None:
        reply = Reply(id=command_id)
        field = getattr(reply, method)
        if result is not None:
            field.CopyFrom(result)
        else:
            field.SetInParent()
        self._send_reply(reply)

    def _send_error(
        self, command_id: int, code: CentrifugoError, message: str | None = None
    ) -> None:
        reply = Reply(id=command_id)
        reply.error.code = int(code)
        reply.error.message = message or ERROR_MESSAGES[code]
        reply.error.temporary = code in TEMPORARY
        self._send_reply(reply)

    def _send_reply(self, reply: Reply) -> None:
        self.send(codec.encode_message(reply, self.wire))

    # connect, refresh and pings

    async def _connect(self, command_id: int, request: Any) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        principal = await self._identify(request.token)
        if principal is None:
            return
        server_side, principal = _server_side_channels(principal)
        self.guard.accept(principal)
        settings = self.context.settings
        if settings.personal_channel and principal.user:
            namespace = settings.personal_channel_namespace
            prefix = f"{namespace}:" if namespace else ""
            server_side.insert(0, f"{prefix}{USER_BOUNDARY}{principal.user}")
        result = Reply(id=command_id)
        connect = result.connect
        connect.client = self.id
        connect.version = __version__
        connect.ping = max(1, math.ceil(settings.ping_seconds))
        connect.pong = True
        connect.node = settings.node_id
        _set_expiry(connect, principal.expires_at, self.context.security.clock())
        joined: list[_Joined] = []
        if len(server_side) > settings.max_subscriptions:
            self.close(TOO_MANY_CHANNELS)
            return
        for channel in dict.fromkeys(server_side):
            restore = request.subs.get(channel)
            ask = restore if restore is not None else SubscribeRequest(channel=channel)
            try:
                made = await self._join(channel, ask, server_side=True)
            except (GatewayError, ReplyError) as error:
                log.info("centrifugo.server_side_failed channel=%s reason=%s", channel, error)
                continue
            if made is None:
                return
            joined.append(made)
            connect.subs[channel].CopyFrom(made.result)
        if self.closing:
            return
        self._send_reply(result)
        for made in joined:
            if not await self._go_live(made):
                return
        self._schedule_ping()

    async def _identify(self, token: str) -> Principal | None:
        """The principal of a ``connect``: the one ``on_connect`` chose, else as the token
        rules decide; None when the connection was closed for it.

        A token the client sent is verified before the hook runs, for its ``claims``; the
        hook's `Reject` closes the connection as on ``/ws`` (``unauthorized``: 3500 with
        its message, ``forbidden``: 3501, see `close_for`).

        Raises:
            ReplyError: 109 for an expired token.
        """
        hooks = self.context.hooks
        if hooks.on_connect is None:
            return self._authenticate(token)
        verified = None
        if token and self.context.security.verifier.enabled:
            verified = self._authenticate(token)
            if verified is None:
                return None
        claims = verified.claims if verified is not None else None
        try:
            chosen = await hooks.connect(
                ConnectRequest.from_scope(self._scope, claims, "centrifugo")
            )
        except GatewayError as error:
            log.info("hook.connect_refused code=%s message=%s", error.code.value, error.message)
            self._refuse(error)
            return None
        if self.closing:
            return None
        if chosen is not None:
            return chosen
        return verified if verified is not None else self._authenticate(token)

    def _refuse(self, error: GatewayError) -> None:
        """Close for a refusal of ``on_connect``: Centrifugo's code for ours, with the
        hook's message as the reason."""
        disconnect = error.closes_with
        close = close_for(disconnect)
        reason = close_reason(error.message)
        if not self.closing:
            self._farewell = CentrifugoClose(close.code, reason or close.reason)
        self.close(disconnect)

    def _authenticate(self, token: str) -> Principal | None:
        """The principal of a ``connect``; None when the connection was closed for it."""
        security = self.context.security
        if not security.verifier.enabled:
            return self.principal
        if not token:
            if self.context.settings.anonymous_connect:
                return self.principal
            self.close(UNAUTHORIZED)
            return None
        try:
            return security.verifier.connection(token, require_sub=False)
        except TokenError as error:
            if error.expired:
                raise ReplyError(CentrifugoError.TOKEN_EXPIRED) from None
            log.info("centrifugo.invalid_token client=%s reason=%s", self.id, error.message)
            self.close(UNAUTHORIZED)
            return None

    async def _refresh(self, command_id: int, request: Any) -> None:
        security = self.context.security
        if not security.verifier.enabled:
            raise ReplyError(CentrifugoError.BAD_REQUEST, "tokens are not in use on this gateway")
        try:
            principal = security.verifier.connection(request.token, require_sub=False)
        except TokenError as error:
            if error.expired:
                raise ReplyError(CentrifugoError.TOKEN_EXPIRED) from None
            self.close(UNAUTHORIZED)
            return
        if principal.user != self.principal.user:
            self.close(UNAUTHORIZED)
            return
        self.guard.accept(_server_side_channels(principal)[1])
        result = Reply(id=command_id)
        refresh = result.refresh
        refresh.client = self.id
        refresh.version = __version__
        _set_expiry(refresh, principal.expires_at, security.clock())
        self._send_reply(result)

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if not self.guard.connected:
            self.close(CONNECT_TIMEOUT)

    def _schedule_ping(self) -> None:
        self._heard = False
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(self.context.settings.ping_seconds, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.closing:
            return
        if not self._heard:
            self.close(PONG_MISSING)
            return
        self.send(codec.encode_message(Reply(), self.wire))
        self._schedule_ping()

    def _stop_timers(self) -> None:
        for timer in (self._connect_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._connect_timer = self._ping_timer = None

    # Subscriptions

    async def _subscribe(self, command_id: int, request: Any) -> None:
        channel = request.channel
        made = await self._join(channel, request, server_side=False)
        if made is None:
            return
        self._reply(command_id, "subscribe", made.result)
        await self._go_live(made)

    async def _join(
        self, channel: str, request: SubscribeRequest, *, server_side: bool
    ) -> _Joined | None:
        """Subscribe on the hub and build the reply (recovering if asked); None if the
        connection closed meanwhile.

        Raises:
            GatewayError, ReplyError: the subscription is refused.
        """
        options = self._options(channel)
        if not server_side:
            self._check_subscribe(channel, options, request.token)
        if channel in self.channels:
            raise ReplyError(CentrifugoError.ALREADY_SUBSCRIBED)
        if len(self.channels) >= self.context.settings.max_subscriptions:
            raise ReplyError(CentrifugoError.LIMIT_EXCEEDED, "too many subscriptions")
        if not server_side:
            principal = self.principal
            await self.context.hooks.subscribe(channel, principal.user, self.id, principal.info)
            if self.closing:
                return None
            if channel in self.channels:
                raise ReplyError(CentrifugoError.ALREADY_SUBSCRIBED)
        delta = False
        if request.delta:
            if request.delta not in options.allowed_delta_types:
                raise ReplyError(
                    CentrifugoError.BAD_REQUEST, f"delta {request.delta[:16]!r} not allowed"
                )
            delta = True
        tags_filter = None
        if request.HasField("tf"):
            if delta:
                raise ReplyError(CentrifugoError.BAD_REQUEST, "delta and tf do not combine")
            try:
                tags_filter = compile_filter(request.tf)
            except FilterError as error:
                raise ReplyError(CentrifugoError.BAD_REQUEST, str(error)) from None
        subscription = Subscription(
            self,
            channel,
            join_leave=options.join_leave and (request.join_leave or options.force_push_join_leave),
            tags_filter=tags_filter,
            delta=self.deltas.hold(channel) if delta else None,
        )
        policy = history_policy(options)
        joined = await self.subscribe(channel, policy, via=subscription)
        result = SubscribeResult(delta=delta)
        after = 0
        if policy is not None and joined is not None:
            recoverable = request.recoverable or options.force_recovery
            positioned = recoverable or request.positioned
            result.recoverable = recoverable
            result.positioned = positioned
            result.epoch, result.offset = joined.epoch, joined.offset
            after = joined.offset
            if request.recover:
                since = StreamPosition(request.offset, request.epoch)
                try:
                    recovered = await self._recover(channel, policy, since, joined)
                except GatewayError:
                    self.unsubscribe(channel)
                    raise
                result.was_recovering = True
                if recovered is None:
                    if request.flag & REJECT_UNRECOVERED:
                        self.unsubscribe(channel)
                        raise ReplyError(CentrifugoError.UNRECOVERABLE_POSITION)
                else:
                    result.recovered = True
                    result.publications.extend(recovered)
                    after = recovered[-1].offset if recovered else since.offset
                    result.offset = max(joined.offset, after)
        if self.closing:
            return None
        return _Joined(subscription, result, after, options)

    async def _recover(
        self,
        channel: str,
        policy: HistoryPolicy,
        since: StreamPosition,
        joined: StreamPosition,
    ) -> list[Publication] | None:
        """The publications after ``since``, or None when history cannot cover them all.
        An empty epoch is any epoch (a position of zero: everything history holds)."""
        if since.epoch and since.epoch != joined.epoch:
            return None
        if since.offset > joined.offset:
            return None
        if since.offset == joined.offset:
            return []
        settings = self.context.settings
        found = await self.context.channels.history_reader.read(
            channel,
            policy,
            after=since.offset,
            count=policy.size,
            max_bytes=settings.history_reply_bytes,
        )
        messages = found.messages
        if (
            found.more
            or found.position.epoch != joined.epoch
            or not messages
            or messages[0][0] != since.offset + 1
            or messages[-1][0] < joined.offset
        ):
            return None
        delta = self.channels.get(channel)
        as_delta = isinstance(delta, Subscription) and delta.delta is not None
        return [self._stored(offset, frame, as_delta) for offset, frame in messages]

    def _stored(self, offset: int, frame: bytes, as_delta: bool = False) -> Publication:
        event = event_of(Outgoing(frame, offset))
        if event is None or event.kind != pushes.PUB:
            return Publication(offset=offset)
        data = delta_data(event.data, self.wire) if as_delta else None
        return pushes.publication(event, data)

    async def _go_live(self, made: _Joined) -> bool:
        """After the reply: what the hub delivered meanwhile, then presence."""
        subscription, options = made.subscription, made.options
        if not subscription.go_live(made.after):
            return False
        channel = subscription.channel
        if options.presence and self.channels.get(channel) is subscription:
            try:
                await self.context.presence.join(
                    channel, self.id, self.user, self.principal.info, options.join_leave
                )
            except GatewayError as error:
                log.info("presence.join_deferred channel=%s reason=%s", channel, error.message)
        return True

    async def _unsubscribe(self, command_id: int, request: Any) -> None:
        self.unsubscribe(request.channel)
        self._reply(command_id, "unsubscribe")

    async def _sub_refresh(self, command_id: int, request: Any) -> None:
        channel = request.channel
        if channel not in self.channels:
            raise ReplyError(CentrifugoError.BAD_REQUEST, f"not subscribed to {channel!r}")
        grant = self._grant(request.token)
        if grant is None or grant.channel != channel or grant.user != self.principal.user:
            raise ReplyError(CentrifugoError.PERMISSION_DENIED, "invalid subscription token")
        result = Reply(id=command_id)
        _set_expiry(result.sub_refresh, grant.expires_at, self.context.security.clock())
        self._send_reply(result)

    # Publications, history, presence

    async def _publish(self, command_id: int, request: Any) -> None:
        channel = request.channel
        options = self._options(channel)
        self._check_boundary(channel)
        self.guard.check_publish(channel, options, channel in self.channels)
        data: Any = _json_data(request.data)
        key = request.idempotency_key or None
        hooks = self.context.hooks
        rule = hooks.publishes_through(channel)
        if rule is not None:
            principal = self.principal
            sent = orjson.loads(request.data)
            chosen = await hooks.publish(
                rule, channel, sent, principal.user, self.id, principal.info, key
            )
            if chosen is not sent:
                data = chosen
        await self.context.publisher.publish(
            channel, data, sender=self.sender, options=options, idempotency_key=key
        )
        self._reply(command_id, "publish")

    async def _history(self, command_id: int, request: Any) -> None:
        channel = request.channel
        options = self._readable(channel, options_allow=lambda o: o.allow_history_for_subscriber)
        policy = history_policy(options)
        if policy is None:
            raise ReplyError(CentrifugoError.NOT_AVAILABLE, "history is off for this channel")
        since = (
            StreamPosition(request.since.offset, request.since.epoch)
            if request.HasField("since")
            else None
        )
        try:
            top, messages = await read_history(
                self.context.channels.history_reader,
                channel,
                policy,
                since=since,
                limit=request.limit,
                reverse=request.reverse,
                max_bytes=self.context.settings.history_reply_bytes,
            )
        except PositionLost:
            raise ReplyError(CentrifugoError.UNRECOVERABLE_POSITION) from None
        result = Reply(id=command_id)
        history = result.history
        history.epoch, history.offset = top.epoch, top.offset
        history.publications.extend(self._stored(offset, frame) for offset, frame in messages)
        self._send_reply(result)

    async def _presence(self, command_id: int, request: Any) -> None:
        members = await self._members(request.channel)
        result = Reply(id=command_id)
        presence = result.presence
        presence.SetInParent()
        for client, fields in members.items():
            info = ClientInfo(client=client, user=fields.get("user") or "")
            if fields.get("info") is not None:
                info.conn_info = orjson.dumps(fields["info"])
            presence.presence[client].CopyFrom(info)
        self._send_reply(result)

    async def _presence_stats(self, command_id: int, request: Any) -> None:
        members = await self._members(request.channel)
        result = Reply(id=command_id)
        stats = result.presence_stats
        stats.SetInParent()
        stats.num_clients = len(members)
        stats.num_users = len({fields.get("user") or "" for fields in members.values()})
        self._send_reply(result)

    async def _members(self, channel: str) -> dict[str, Any]:
        options = self._readable(channel, options_allow=lambda o: o.allow_presence_for_subscriber)
        if not options.presence:
            raise ReplyError(CentrifugoError.NOT_AVAILABLE, "presence is off for this channel")
        return await self.context.presence.members(channel, options.join_leave)

    async def _rpc(self, command_id: int, request: Any) -> None:
        """Call the application's ``@gw.rpc`` method; ``data`` is JSON both ways (an empty
        ``data`` is null)."""
        try:
            sent = orjson.loads(request.data) if request.data else None
        except orjson.JSONDecodeError:
            raise ReplyError(CentrifugoError.BAD_REQUEST, "data must be JSON") from None
        principal = self.principal
        answer = await self.context.hooks.rpc(
            request.method, sent, principal.user, self.id, principal.info
        )
        result = Reply(id=command_id)
        result.rpc.data = orjson.dumps(answer)
        self._send_reply(result)

    async def _send(self, command_id: int, request: Any) -> None:
        log.debug("centrifugo.send_dropped client=%s bytes=%d", self.id, len(request.data))

    # Checks

    def _options(self, channel: str) -> NamespaceOptions:
        if not is_valid_centrifugo_channel(channel):
            raise ReplyError(CentrifugoError.UNKNOWN_CHANNEL, "invalid channel name")
        return self.context.channels.namespaces.of(channel)

    def _check_boundary(self, channel: str) -> None:
        users = boundary_users(channel)
        if users is not None and (self.user is None or self.user not in users):
            raise ReplyError(CentrifugoError.PERMISSION_DENIED)

    def _grant(self, token: str) -> SubscriptionGrant | None:
        """A verified subscription token; None for an invalid one.

        Raises:
            ReplyError: 109 for an expired one (the SDK gets a new token and retries).
        """
        try:
            return self.context.security.verifier.subscription(token)
        except TokenError as error:
            if error.expired:
                raise ReplyError(CentrifugoError.TOKEN_EXPIRED) from None
            return None

    def _check_subscribe(self, channel: str, options: NamespaceOptions, token: str) -> None:
        self._check_boundary(channel)
        grant = None
        if token:
            grant = self._grant(token)
            if grant is None:
                raise ReplyError(CentrifugoError.PERMISSION_DENIED, "invalid subscription token")
        refusal = subscribe_refusal(self.principal, channel, options, grant)
        if refusal is not None:
            raise ReplyError(CentrifugoError.PERMISSION_DENIED, refusal)

    def _readable(
        self, channel: str, options_allow: Callable[[NamespaceOptions], bool]
    ) -> NamespaceOptions:
        options = self._options(channel)
        self._check_boundary(channel)
        subscribed = channel in self.channels
        if not options_allow(options):
            raise ReplyError(CentrifugoError.PERMISSION_DENIED)
        self.guard.check_read(channel, options, subscribed)
        return options

    _handlers: ClassVar[dict[str, Callable[[CentrifugoConnection, int, Any], Awaitable[None]]]] = {
        "connect": _connect,
        "subscribe": _subscribe,
        "unsubscribe": _unsubscribe,
        "publish": _publish,
        "presence": _presence,
        "presence_stats": _presence_stats,
        "history": _history,
        "send": _send,
        "rpc": _rpc,
        "refresh": _refresh,
        "sub_refresh": _sub_refresh,
    }


def _server_side_channels(principal: Principal) -> tuple[list[str], Principal]:
    """The channels a connection token subscribes to server-side (its ``channels`` and
    ``subs`` claims), and the principal without the ``channels`` claim, which on this
    endpoint names no permission."""
    channels = [
        channel for channel in principal.channels or () if is_valid_centrifugo_channel(channel)
    ]
    subs = principal.claims.get("subs")
    if isinstance(subs, dict):
        channels += [name for name in subs if isinstance(name, str)]
    return channels, dataclasses.replace(principal, channels=None)


def _set_expiry(result: Any, expires_at: float | None, now: float) -> None:
    if expires_at is not None:
        result.expires = True
        result.ttl = max(1, int(expires_at - now))


def _json_data(data: bytes) -> orjson.Fragment:
    """A publication's ``data`` as the JSON it must be, kept byte for byte.

    Raises:
        ReplyError: 107 for data that is not JSON.
    """
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ReplyError(CentrifugoError.BAD_REQUEST, "data must be JSON") from None
    return orjson.Fragment(data.replace(b"\n", b"") if b"\n" in data else data)
