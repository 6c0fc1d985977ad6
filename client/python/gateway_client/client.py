"""The asyncio client: one connection to the gateway that stays up.

It reconnects with exponential backoff and full jitter (trying each URL in turn), honours
the protocol's close codes and the server's `disconnect` frame (its ``reconnect``), keeps a
connection token fresh, and resubscribes every channel with ``since`` so nothing published
meanwhile is lost; what cannot be recovered is reported on the subscription's
"unrecovered" event. The protocol's values (subprotocol, the code table, the continuity
rule) come from `gateway.wire`, the server's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

from gateway.aio.backoff import Backoff
from gateway.aio.tasks import TaskSet
from gateway.wire.errors import RETRYABLE_SUBSCRIBE_ERRORS
from gateway.wire.protocol import SUBPROTOCOL
from gateway_client.errors import ClientErrorCode, GatewayClientError
from gateway_client.policy import (
    close_action,
    handshake_retryable,
    refresh_delay,
    token_expiry,
    with_name,
)
from gateway_client.stream import Position, advance

log = logging.getLogger(__name__)

BATCH_CHARS = 8192
"""Commands queued together are sent as one NDJSON frame of at most this many characters."""
REASON_CHARACTERS = 300
"""Most characters of a refused handshake's HTTP body kept in ``last_error``."""
RETRYABLE_PUBLISH_ERRORS = RETRYABLE_SUBSCRIBE_ERRORS
"""Error codes after which a publish is sent again, with its idempotency key, after a
backoff (a resend is never delivered twice)."""


def new_idempotency_key() -> str:
    """A random idempotency key: 128 bits, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(16)


Frame = dict[str, Any]
Listener = Callable[[Any], object]
TokenGetter = Callable[[], str | Awaitable[str]]
ChannelTokenGetter = Callable[[str], str | Awaitable[str]]
State = Literal["disconnected", "connecting", "connected"]


@dataclass(frozen=True, slots=True)
class Message:
    """A publication received on a subscribed channel."""

    channel: str
    data: Any
    offset: int | None
    epoch: str | None
    client: str | None
    """The publishing client's id; None for publications of the server API."""
    user: str | None
    frame: Frame
    """The `message` frame as received."""
    info: Any = None
    """The publisher's presence info (the token's ``info``, or ``{"name"}`` chosen with
    ``name``); None when it has none."""

    @classmethod
    def from_frame(cls, frame: Frame) -> Message:
        sender = frame.get("from") or {}
        return cls(
            channel=frame["channel"],
            data=frame.get("data"),
            offset=frame.get("offset"),
            epoch=frame.get("epoch"),
            client=sender.get("client"),
            user=sender.get("user"),
            frame=frame,
            info=sender.get("info"),
        )


class _Emitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}

    def on(self, event: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener(detail)`` on each ``event``; returns a function that removes it."""
        self._listeners.setdefault(event, []).append(listener)
        return lambda: self.off(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[event].remove(listener)

    def _emit(self, event: str, detail: Any) -> None:
        for listener in list(self._listeners.get(event, ())):
            try:
                listener(detail)
            except Exception:
                log.exception("client.listener_failed event=%s", event)


@dataclass(frozen=True, slots=True)
class _End:
    error: GatewayClientError | None = None


_END = _End()
_Item = Message | _End


class _Messages:
    """An unbounded queue of messages that ends once, with or without an error."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.ended = False

    def put(self, message: Message) -> None:
        if not self.ended:
            self._queue.put_nowait(message)

    def end(self, error: GatewayClientError | None = None) -> None:
        if not self.ended:
            self.ended = True
            self._queue.put_nowait(_End(error))

    async def get(self) -> Message:
        """The next message. Raises StopAsyncIteration at the end, or the error it ended with."""
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item


class Subscription(_Emitter):
    """One channel the application wants, across reconnects, until `unsubscribe()`.

    Iterate it for its messages (``async for message in subscription``). Events:
    "subscribed", "unrecovered", "error", "join", "leave", "unsubscribed".
    """

    def __init__(
        self,
        client: GatewayClient,
        channel: str,
        since: Position | None,
        recover: bool,
        token: str | ChannelTokenGetter | None,
        latest: bool = False,
    ) -> None:
        super().__init__()
        self.client = client
        self.channel = channel
        self.position = since
        self.recover = recover
        self.latest = latest
        self.state: Literal["pending", "subscribing", "subscribed", "failed", "unsubscribed"] = (
            "pending"
        )
        self.last_subscribed: Frame | None = None
        self._token = token
        self._backoff = Backoff(client.min_delay, client.max_delay)
        self._subscribed_once = False
        self._messages = _Messages()
        self._waiters: list[asyncio.Future[Frame]] = []

    async def subscribed(self) -> Frame:
        """Wait until the subscription is live; returns the "subscribed" event's detail.

        Raises:
            GatewayClientError: the server refused the subscription, or the client closed.
        """
        if self.state == "subscribed" and self.last_subscribed is not None:
            return self.last_subscribed
        if self.state in ("failed", "unsubscribed"):
            raise GatewayClientError(ClientErrorCode.CLOSED, f"subscription is {self.state}")
        return await _wait_in(self._waiters)

    def unsubscribe(self) -> None:
        """Stop wanting the channel; iteration ends."""
        self.client._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        return await self._messages.get()

    async def __aenter__(self) -> Subscription:
        await self.subscribed()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.unsubscribe()

    def _command(self, command_id: int, token: str | None) -> tuple[Frame, Position | None]:
        since = self.position if self.recover and self.position and self.position.epoch else None
        command: Frame = {"op": "subscribe", "id": command_id, "channel": self.channel}
        if since is not None:
            command["since"] = since.as_since()
        if self.latest:
            command["latest"] = True
        if token:
            command["token"] = token
        return command, since

    def _on_subscribed(self, frame: Frame, since: Position | None) -> None:
        self.state = "subscribed"
        self._backoff.reset()
        resubscribed, self._subscribed_once = self._subscribed_once, True
        recovered = since is not None and frame.get("recovered") is True
        offset, epoch = frame.get("offset", 0), frame.get("epoch") or ""
        detail: Frame = {
            "channel": self.channel,
            "offset": offset,
            "epoch": epoch,
            "recovered": recovered,
            "resubscribed": resubscribed,
            "missed": max(0, offset - since.offset) if recovered and since else 0,
        }
        if not recovered:
            self.position = self._starting_at(offset, epoch)
        self.last_subscribed = detail
        self._emit("subscribed", detail)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(detail)
        if since is not None and not recovered:
            self._emit(
                "unrecovered",
                {**detail, "reason": "recovery_failed", "since": since.as_since()},
            )

    def _starting_at(self, offset: int, epoch: str) -> Position | None:
        """Where the stream continues after an unrecovered `subscribed`: at its offset, or
        with ``latest`` (the newest message follows) from whatever comes next, unless that
        message was seen already (then it is dropped as a duplicate)."""
        if not epoch:
            return None
        if not self.latest:
            return Position(offset, epoch)
        seen = self.position
        if seen is not None and seen.epoch == epoch and seen.offset >= offset:
            return seen
        return None

    def _on_message(self, frame: Frame) -> Message | None:
        step = advance(self.position, frame)
        if step.verdict == "duplicate":
            return None
        before, self.position = self.position, step.position
        if step.verdict in ("gap", "epoch"):
            self._emit(
                "unrecovered",
                {
                    "channel": self.channel,
                    "reason": "gap" if step.verdict == "gap" else "epoch_changed",
                    "since": before.as_since() if before else None,
                    "offset": frame.get("offset"),
                    "epoch": frame.get("epoch"),
                    "missed": step.missed,
                },
            )
        message = Message.from_frame(frame)
        self._messages.put(message)
        return message

    def _end(
        self, state: Literal["failed", "unsubscribed"], error: GatewayClientError | None
    ) -> None:
        self.state = state
        self._messages.end(error)
        failure = error or GatewayClientError(ClientErrorCode.CLOSED, f"subscription {state}")
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(failure)


Outcome = Frame | GatewayClientError


@dataclass(eq=False, slots=True)
class _Request:
    """A command and what to do with its reply: called at once, from the reader."""

    frame: Frame
    on_reply: Callable[[Outcome], None]
    socket: _Socket | None = None
    settled: bool = False
    resend: bool = False
    """A publish with an idempotency key: sent again after a reconnect or a retryable error."""
    attempt: int = 0

    def settle(self, outcome: Outcome) -> None:
        if not self.settled:
            self.settled = True
            self.on_reply(outcome)

    @classmethod
    def awaited(cls, frame: Frame) -> tuple[_Request, asyncio.Future[Frame]]:
        """A request whose reply resolves (or whose error fails) the returned future."""
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()

        def resolve(outcome: Outcome) -> None:
            if future.done():
                return
            if isinstance(outcome, GatewayClientError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        return cls(frame, resolve), future


@dataclass(eq=False, slots=True)
class _Socket:
    ws: ClientConnection
    url: str
    token: str | None
    welcomed: bool = False
    welcomed_at: float = 0.0
    disconnect: Frame | None = None
    tasks: TaskSet = field(default_factory=TaskSet)
    outgoing: list[str] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, frame: Frame) -> None:
        """Queue a command for this connection's writer; never waits."""
        self.outgoing.append(orjson.dumps(frame).decode())
        self.wake.set()

    async def write_loop(self) -> None:
        """Send what is queued, several commands per frame (NDJSON), until the socket closes."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.outgoing = self.outgoing, []
            try:
                for frame in _ndjson_frames(batch):
                    await self.ws.send(frame)
            except ConnectionClosed:
                return


def _ndjson_frames(lines: list[str]) -> list[str]:
    frames: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if current and size + len(line) > BATCH_CHARS:
            frames.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        frames.append("\n".join(current))
    return frames


class GatewayClient(_Emitter):
    """A connection to the gateway that stays up; use it as an async context manager.

    Events: "connecting" ``{attempt, url}``, "connected" (the `welcome` frame plus ``url``),
    "disconnected" ``{code, reason, reconnect, delay}``, "error" (a `GatewayClientError`
    that no command owns).

    ``token`` is a connection JWT, or a function (sync or async) returning a fresh one: it
    is called before connecting, shortly before the token expires (`refresh`), and after
    the server closes with 4001. Without auth, ``name`` is the display name others see (the
    connection's presence ``info`` and the ``from.info`` of its messages, ``{"name": name}``,
    sent as ``?name=``; a server with auth on ignores it). ``max_attempts`` bounds
    consecutive failed connection attempts (None: retry forever); when exhausted, waiting
    commands fail `unreachable`. A URL that is no protocol endpoint (a handshake refused
    with HTTP 403 or 404, or one accepted without the ``pubsub.v1`` subprotocol) stops the
    client at once: waiting commands fail `refused`.

    Raises:
        ValueError: no URL, or one that is not ``ws://`` or ``wss://``.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        token: str | TokenGetter | None = None,
        name: str | None = None,
        min_delay: float = 0.25,
        max_delay: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        open_timeout: float = 10.0,
        request_timeout: float = 10.0,
        stable_after: float = 5.0,
        max_attempts: int | None = None,
        publish_timeout: float = 60.0,
        max_unacknowledged: int = 1000,
    ) -> None:
        super().__init__()
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("GatewayClient needs at least one URL")
        for url in self.urls:
            check_url(url)
        self.name = name
        self.min_delay, self.max_delay = min_delay, max_delay
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.open_timeout, self.request_timeout = open_timeout, request_timeout
        self.stable_after = stable_after
        self.max_attempts = max_attempts
        self.publish_timeout = publish_timeout
        self.max_unacknowledged = max_unacknowledged
        self._unacknowledged: set[_Request] = set()
        self.state: State = "disconnected"
        self.welcome: Frame | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.last_error: str | None = None
        self._token_option = token
        self._token = token if isinstance(token, str) else None
        self._ids = itertools.count(1)
        self._url_index = 0
        self._backoff = Backoff(min_delay, max_delay, stable_after=stable_after)
        self._failures = 0
        self._socket: _Socket | None = None
        self._queue: list[_Request] = []
        self._pending: dict[int, _Request] = {}
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._refusal: GatewayClientError | None = None
        self._connected_waiters: list[asyncio.Future[Frame]] = []
        self._feeds: set[_Messages] = set()
        self._tasks = TaskSet()

    async def __aenter__(self) -> GatewayClient:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def start(self) -> None:
        """Begin connecting (and stay connected) in the background."""
        self._closed = False
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def connected(self) -> Frame:
        """Wait until connected; returns the `welcome` frame (plus ``url``).

        Raises:
            GatewayClientError: the client stopped before connecting.
        """
        if self.state == "connected" and self.welcome is not None:
            return self.welcome
        if self._closed:
            raise GatewayClientError(ClientErrorCode.CLOSED, "the client is closed")
        return await _wait_in(self._connected_waiters)

    async def close(self) -> None:
        """Close for good: nothing reconnects; waiting commands fail with `closed`."""
        runner, self._runner = self._runner, None
        self._closed = True
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        await self._tasks.close()
        was_connected = self.state != "disconnected"
        self.state = "disconnected"
        self._stop(GatewayClientError(ClientErrorCode.CLOSED, "the client was closed"), None)
        if was_connected:
            self._emit(
                "disconnected",
                {"code": 1000, "reason": "closed by the client", "reconnect": False, "delay": None},
            )

    def subscribe(
        self,
        channel: str,
        *,
        since: Position | None = None,
        recover: bool = True,
        token: str | ChannelTokenGetter | None = None,
        latest: bool = False,
    ) -> Subscription:
        """Want ``channel``: subscribed once connected, and again, recovering, after each
        reconnect. ``token`` is a subscription JWT, or a function of the channel returning one.
        With ``latest`` the channel's newest message follows `subscribed` when ``since`` is
        not sent or cannot be recovered (for current-value channels, with ``recover=False``);
        one seen already is not delivered again.

        Raises:
            ValueError: the channel is already subscribed on this client.
        """
        if channel in self.subscriptions:
            raise ValueError(f"already subscribed to {channel!r}")
        subscription = Subscription(self, channel, since, recover, token, latest)
        self.subscriptions[channel] = subscription
        if self.state == "connected":
            self._send_subscribe(subscription)
        return subscription

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> Frame:
        """Publish ``data`` (any JSON value); returns the `published` reply, once.

        Every publish carries an idempotency key (``idempotency_key``, else a random one):
        one not acknowledged when the connection drops is sent again after the reconnect,
        and one refused with a retryable code (`unavailable`...) again after a backoff, so
        its message is delivered once however often it is sent.

        Raises:
            GatewayClientError: the server's error code; `timeout` when not acknowledged
                within ``publish_timeout`` (it may or may not have been published: publish
                again with the same key, within the server's ``idempotency_window``, to
                know); `overflow` at once while ``max_unacknowledged`` publishes wait.
        """
        if self._closed:
            raise GatewayClientError(ClientErrorCode.CLOSED, "the client is closed")
        if len(self._unacknowledged) >= self.max_unacknowledged:
            raise GatewayClientError(
                ClientErrorCode.OVERFLOW, f"{self.max_unacknowledged} publishes wait for a reply"
            )
        key = idempotency_key if idempotency_key is not None else new_idempotency_key()
        frame = {
            "op": "publish",
            "id": next(self._ids),
            "channel": channel,
            "data": data,
            "idempotency_key": key,
        }
        request, future = _Request.awaited(frame)
        request.resend = True
        self._unacknowledged.add(request)
        self._send_request(request)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.publish_timeout)
        except TimeoutError:
            raise GatewayClientError(
                ClientErrorCode.TIMEOUT,
                f"no reply to publish within {self.publish_timeout} s:"
                " it may or may not have been published",
            ) from None
        finally:
            self._unacknowledged.discard(request)
            request.settled = True
            self._pending.pop(request.frame["id"], None)
            with contextlib.suppress(ValueError):
                self._queue.remove(request)

    async def rpc(self, method: str, data: Any = None) -> Any:
        """Call a method the application serves in Python (``@gw.rpc(method)``); returns
        the reply's ``data``.

        Raises:
            GatewayClientError: `unknown_method`, what the method raised, or as `request`.
        """
        reply = await self.request("rpc", method=method, data=data)
        return reply.get("data")

    async def presence(self, channel: str) -> Frame:
        """Who is subscribed to ``channel``: the `presence` reply (``clients``)."""
        return await self.request("presence", channel=channel)

    async def history(
        self, channel: str, *, since: Position | None = None, limit: int | None = None
    ) -> Frame:
        """A channel's retained messages: the `history` reply (``messages``, oldest first).

        The server bounds a reply in bytes: ``more`` is True when matching messages were
        left out; `history_pages` asks for them.
        """
        fields: Frame = {"channel": channel}
        if since is not None:
            fields["since"] = since.as_since()
        if limit is not None:
            fields["limit"] = limit
        return await self.request("history", **fields)

    async def history_pages(
        self, channel: str, *, since: Position | None = None, limit: int | None = None
    ) -> AsyncIterator[Frame]:
        """Every `history` reply it takes to read all the messages that match (those after
        ``since``, else the latest ``limit``), oldest first: each next request asks for
        what follows the last message received, while the reply says ``more``.

        Raises:
            GatewayClientError: as `request`.
        """
        while True:
            reply = await self.history(channel, since=since, limit=limit)
            yield reply
            messages = reply["messages"]
            if not reply.get("more") or not messages:
                return
            since = Position(messages[-1]["offset"], reply["epoch"])
            if limit is not None:
                limit -= len(messages)
                if limit <= 0:
                    return

    async def request(self, op: str, **fields: Any) -> Frame:
        """Send any command (an ``id`` is added) once connected; returns its reply.

        Raises:
            GatewayClientError: an `error` reply (its code), or `closed`, `disconnected`,
                `timeout`, `unreachable`.
        """
        if self._closed:
            raise GatewayClientError(ClientErrorCode.CLOSED, "the client is closed")
        request, future = _Request.awaited({"op": op, "id": next(self._ids), **fields})
        self._send_request(request)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.request_timeout)
        except TimeoutError:
            raise GatewayClientError(
                ClientErrorCode.TIMEOUT, f"no reply to {op} within {self.request_timeout} s"
            ) from None
        finally:
            self._pending.pop(request.frame["id"], None)
            with contextlib.suppress(ValueError):
                self._queue.remove(request)

    async def messages(self) -> AsyncIterator[Message]:
        """Every message of every subscription, in arrival order, from now on."""
        feed = _Messages()
        self._feeds.add(feed)
        try:
            while True:
                try:
                    yield await feed.get()
                except StopAsyncIteration:
                    return
        finally:
            self._feeds.discard(feed)

    # The connection loop.

    async def _run(self) -> None:
        while not self._closed:
            url = self.urls[self._url_index % len(self.urls)]
            self.state = "connecting"
            self._emit("connecting", {"attempt": self._backoff.attempt, "url": url})
            code, reason, retryable, reconnect = await self._session(url)
            self._url_index += 1
            self.welcome = None
            action = close_action(code, reconnect) if retryable else "stop"
            if action == "refresh":
                if callable(self._token_option):
                    self._token = None
                else:
                    action = "stop"
            if action != "stop" and self.max_attempts is not None:
                if self._failures >= self.max_attempts:
                    self.state = "disconnected"
                    error = GatewayClientError(
                        ClientErrorCode.UNREACHABLE,
                        f"no connection after {self._failures} attempts: {reason}",
                    )
                    self._stop(error, {"code": code, "reason": reason})
                    return
            if action == "stop":
                self.state = "disconnected"
                error = self._refusal or GatewayClientError(
                    ClientErrorCode.CLOSED, f"the connection closed with {code}: {reason}"
                )
                self._stop(error, {"code": code, "reason": reason})
                return
            delay = 0.0 if action == "now" else self._backoff.delay()
            self.state = "disconnected"
            self._emit(
                "disconnected", {"code": code, "reason": reason, "reconnect": True, "delay": delay}
            )
            await asyncio.sleep(delay)

    async def _session(self, url: str) -> tuple[int, str, bool, bool | None]:
        """One connection from handshake to close: (close code, reason, may reconnect, the
        ``reconnect`` of the server's `disconnect` frame if it sent one)."""
        self._refusal = None
        try:
            token = await self._connection_token()
        except Exception as exc:
            self._failures += 1
            self._note_error(GatewayClientError("unauthorized", f"token getter failed: {exc}"))
            return 4001, "no token", True, None
        try:
            ws = await connect(
                with_name(url, self.name),
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=2,
                max_size=None,
                compression=None,
            )
        except InvalidStatus as exc:
            self._failures += 1
            status = exc.response.status_code
            why = (exc.response.body or b"").decode(errors="replace").strip()[:REASON_CHARACTERS]
            self.last_error = f"handshake refused with HTTP {status}" + (f": {why}" if why else "")
            if handshake_retryable(status):
                return 1006, self.last_error, True, None
            detail = f"{url} refused the WebSocket handshake with HTTP {status}"
            return self._refuse(f"{detail}: {why}" if why else detail, status)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self._failures += 1
            self.last_error = f"cannot connect to {url}: {exc or type(exc).__name__}"
            return 1006, self.last_error, True, None
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close()
            self._failures += 1
            return self._refuse(
                f"{url} accepted the WebSocket without the {SUBPROTOCOL} subprotocol:"
                " it is not the gateway's protocol endpoint",
                None,
            )
        socket = _Socket(ws, url, token)
        self._socket = socket
        try:
            if token:
                socket.send({"op": "connect", "token": token})
            socket.tasks.spawn(socket.write_loop())
            async with asyncio.timeout(self.open_timeout) as welcome_deadline:
                while not socket.welcomed:
                    await self._receive(socket)
                welcome_deadline.reschedule(None)
                while True:
                    await self._receive(socket)
        except ConnectionClosed:
            pass
        except TimeoutError:
            self.last_error = "no welcome in time"
            self._failures += 1
            return 1006, self.last_error, True, None
        finally:
            await self._detach(socket)
            await ws.close()
        code = ws.close_code if ws.close_code is not None else 1006
        disconnect = socket.disconnect or {}
        reason = ws.close_reason or disconnect.get("reason", "")
        reconnect = disconnect.get("reconnect")
        if not socket.welcomed:
            self._failures += 1
        return code, reason, True, reconnect if isinstance(reconnect, bool) else None

    def _refuse(self, message: str, status: int | None) -> tuple[int, str, bool, bool | None]:
        """A handshake that no retry will change: the client stops with `refused`."""
        self.last_error = message
        self._refusal = GatewayClientError(ClientErrorCode.REFUSED, message, status=status)
        return 1006, message, False, None

    async def _connection_token(self) -> str | None:
        option = self._token_option
        if not callable(option):
            return option
        if self._token is None:
            self._token = await _call(option)
        return self._token

    async def _receive(self, socket: _Socket) -> None:
        raw = await socket.ws.recv()
        if not isinstance(raw, str):
            return
        for line in raw.split("\n"):
            if line.strip():
                try:
                    frame = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    self._note_error(GatewayClientError("bad_frame", f"unparseable frame: {exc}"))
                    continue
                if isinstance(frame, dict):
                    await self._on_frame(socket, frame)

    async def _on_frame(self, socket: _Socket, frame: Frame) -> None:
        op = frame.get("op")
        if op == "welcome":
            if not socket.welcomed:
                await self._on_welcome(socket, frame)
            return
        if op in ("message", "join", "leave"):
            subscription = self.subscriptions.get(frame.get("channel", ""))
            if subscription is None or subscription.state != "subscribed":
                return
            if op != "message":
                subscription._emit(str(op), frame)
                return
            message = subscription._on_message(frame)
            if message is not None:
                for feed in self._feeds:
                    feed.put(message)
            return
        if op == "disconnect":
            socket.disconnect = frame
            return
        request = self._pending.pop(frame["id"], None) if "id" in frame else None
        if request is not None:
            if op == "error" and request.resend and frame.get("code") in RETRYABLE_PUBLISH_ERRORS:
                self._tasks.spawn(self._resend_later(request))
            elif op == "error":
                request.settle(
                    GatewayClientError(frame.get("code", ""), frame.get("message", ""), frame)
                )
            else:
                request.settle(frame)
        elif op == "error" and socket.welcomed:
            self._note_error(
                GatewayClientError(frame.get("code", ""), frame.get("message", ""), frame)
            )

    async def _on_welcome(self, socket: _Socket, frame: Frame) -> None:
        socket.welcomed = True
        socket.welcomed_at = time.monotonic()
        self._failures = 0
        self._backoff.succeeded()
        self.welcome = {**frame, "url": socket.url}
        self.state = "connected"
        if callable(self._token_option) and socket.token:
            socket.tasks.spawn(self._refresh_loop(socket))
        for subscription in list(self.subscriptions.values()):
            self._send_subscribe(subscription)
        queued, self._queue = self._queue, []
        for request in queued:
            if not request.settled:
                self._send_request(request)
        self._emit("connected", self.welcome)
        for waiter in self._connected_waiters:
            if not waiter.done():
                waiter.set_result(self.welcome)

    def _send_request(self, request: _Request) -> None:
        """Send now when connected, else queue until the next `welcome`."""
        socket = self._socket
        if socket is None or not socket.welcomed:
            self._queue.append(request)
            return
        request.socket = socket
        self._pending[request.frame["id"]] = request
        socket.send(request.frame)

    def _send_subscribe(self, subscription: Subscription) -> None:
        socket = self._socket
        if socket is None or self.subscriptions.get(subscription.channel) is not subscription:
            return
        subscription.state = "subscribing"
        token_option = subscription._token
        if callable(token_option):
            socket.tasks.spawn(self._subscribe_with_token(socket, subscription, token_option))
        else:
            self._send_subscribe_command(subscription, token_option)

    async def _subscribe_with_token(
        self, socket: _Socket, subscription: Subscription, getter: ChannelTokenGetter
    ) -> None:
        try:
            token = await _call(getter, subscription.channel)
        except Exception as exc:
            message = f"subscription token getter failed: {exc}"
            self._on_subscribe_error(subscription, GatewayClientError("forbidden", message))
            return
        if socket is self._socket and self.subscriptions.get(subscription.channel) is subscription:
            self._send_subscribe_command(subscription, token)

    def _send_subscribe_command(self, subscription: Subscription, token: str | None) -> None:
        command, since = subscription._command(next(self._ids), token)

        def on_reply(outcome: Outcome) -> None:
            if self.subscriptions.get(subscription.channel) is not subscription:
                return
            if not isinstance(outcome, GatewayClientError):
                subscription._on_subscribed(outcome, since)
            elif outcome.code not in (ClientErrorCode.DISCONNECTED, ClientErrorCode.CLOSED):
                self._on_subscribe_error(subscription, outcome)

        self._send_request(_Request(command, on_reply))

    def _on_subscribe_error(self, subscription: Subscription, error: GatewayClientError) -> None:
        if error.code in RETRYABLE_SUBSCRIBE_ERRORS:
            subscription.state = "pending"
            subscription._emit("error", error)
            delay = subscription._backoff.delay()
            self._tasks.spawn(self._resubscribe_later(subscription, delay))
            return
        del self.subscriptions[subscription.channel]
        subscription._emit("error", error)
        subscription._end("failed", error)

    async def _resend_later(self, request: _Request) -> None:
        """Send a publish refused with a retryable code again, after a backoff."""
        ceiling = min(self.max_delay, self.min_delay * 2.0 ** min(request.attempt, 30))
        request.attempt += 1
        await asyncio.sleep(ceiling * secrets.randbelow(1000) / 1000)
        if not request.settled and request in self._unacknowledged:
            self._send_request(request)

    async def _resubscribe_later(self, subscription: Subscription, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.state == "connected" and subscription.state == "pending":
            self._send_subscribe(subscription)

    def _unsubscribe(self, subscription: Subscription) -> None:
        if self.subscriptions.get(subscription.channel) is not subscription:
            return
        del self.subscriptions[subscription.channel]
        live = subscription.state in ("subscribed", "subscribing")
        subscription._end("unsubscribed", None)
        if live and self.state == "connected":
            unsubscribing = self.request("unsubscribe", channel=subscription.channel)
            self._tasks.spawn(self._quietly(unsubscribing))
        subscription._emit("unsubscribed", {"channel": subscription.channel})

    async def _refresh_loop(self, socket: _Socket) -> None:
        getter = self._token_option
        assert callable(getter)
        exp = token_expiry(socket.token or "")
        while exp is not None:
            await asyncio.sleep(refresh_delay(exp, time.time()))
            try:
                token = await _call(getter)
                reply = await self.request("refresh", token=token)
            except Exception as exc:
                error = exc if isinstance(exc, GatewayClientError) else None
                self._note_error(error or GatewayClientError("unauthorized", str(exc)))
                return
            self._token = socket.token = token
            reply_exp = reply.get("exp")
            exp = float(reply_exp) if isinstance(reply_exp, int | float) else token_expiry(token)

    async def _detach(self, socket: _Socket) -> None:
        if self._socket is socket:
            self._socket = None
        await socket.tasks.close()
        resent: list[_Request] = []
        for command_id, request in list(self._pending.items()):
            if request.socket is socket:
                del self._pending[command_id]
                if request.resend:
                    resent.append(request)
                    continue
                request.settle(
                    GatewayClientError(
                        ClientErrorCode.DISCONNECTED, "the connection closed before the reply"
                    )
                )
        self._queue[:0] = resent
        for subscription in self.subscriptions.values():
            subscription.state = "pending"

    def _stop(self, error: GatewayClientError, closed: Frame | None) -> None:
        """Stop for good: fail what waits, end every iteration."""
        self._closed = True
        for request in [*self._queue, *self._pending.values(), *self._unacknowledged]:
            request.settle(error)
        self._queue.clear()
        self._pending.clear()
        for waiter in self._connected_waiters:
            if not waiter.done():
                waiter.set_exception(error)
        ending = error if closed is not None else None
        for subscription in self.subscriptions.values():
            subscription._messages.end(ending)
            for waiter in subscription._waiters:
                if not waiter.done():
                    waiter.set_exception(error)
        for feed in self._feeds:
            feed.end(ending)
        if closed is not None:
            self._emit("disconnected", {**closed, "reconnect": False, "delay": None})

    def _note_error(self, error: GatewayClientError) -> None:
        self.last_error = str(error)
        self._emit("error", error)

    @staticmethod
    async def _quietly(work: Awaitable[Any]) -> None:
        with contextlib.suppress(GatewayClientError):
            await work


def check_url(url: str) -> None:
    """Check that ``url`` is a WebSocket URL the client can connect to.

    Raises:
        ValueError: it is not ``ws://HOST[:PORT]/PATH`` or ``wss://HOST[:PORT]/PATH``.
    """
    try:
        parse_uri(url)
    except (InvalidURI, ValueError):
        raise ValueError(
            f"{url!r} is not a WebSocket URL: expected ws://HOST[:PORT]/ws or wss://HOST[:PORT]/ws"
        ) from None


async def _wait_in(waiters: list[asyncio.Future[Frame]]) -> Frame:
    """Wait on a new future in ``waiters``, which whoever settles them resolves or fails."""
    waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        return await waiter
    finally:
        with contextlib.suppress(ValueError):
            waiters.remove(waiter)


async def _call(getter: Callable[..., str | Awaitable[str]], *args: Any) -> str:
    value = getter(*args)
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str) or not value:
        raise TypeError("the token getter must return a non-empty string")
    return value
