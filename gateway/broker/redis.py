"""The Redis broker: one pub/sub connection per replica, commands over a small pool.

A supervisor task owns the pub/sub connection. It connects (with capped, jittered backoff),
re-subscribes every channel the replica holds, then runs two loops until the connection
fails: the reader, which hands each publication to the handler, and the synchroniser, which
turns changes of the wanted channel set into batched SUBSCRIBE/UNSUBSCRIBE commands (the
only writer of those commands, so they reach Redis in the order they were decided) and
pings Redis on a heartbeat so a silent network failure is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.retry import Retry

from gateway import protocol
from gateway.broker import scripts
from gateway.broker.base import (
    Broker,
    BrokerHandler,
    HistoryPage,
    HistoryPolicy,
    envelope,
    new_epoch,
    now_us,
)
from gateway.broker.keys import KeySpace
from gateway.errors import ErrorCode, GatewayError
from gateway.protocol import StreamPosition

log = logging.getLogger(__name__)

SUBSCRIBE_BATCH = 500
"""Channels per SUBSCRIBE/UNSUBSCRIBE command."""


class RedisBroker:
    """Publish/subscribe over Redis; see the module docstring for how the connection is kept."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gw",
        timeout: float = 5.0,
        heartbeat: float = 2.0,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self._url = url
        self._keys = KeySpace(prefix)
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._backoff = backoff
        self._handler: BrokerHandler | None = None
        self._commands: Redis | None = None
        self._subscriber: Redis | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._available = False
        self._wanted: set[str] = set()
        self._sent: set[str] = set()
        self._live: set[str] = set()
        self._unacked: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._dirty = asyncio.Event()
        self._last_pong = 0.0
        self._restoring = False
        self._restore_sent = False
        self.connects = 0
        """Connections established to Redis (the first one included)."""

    @property
    def available(self) -> bool:
        return self._available

    @property
    def keys(self) -> KeySpace:
        """The Redis names this broker uses."""
        return self._keys

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        no_retry = Retry(NoBackoff(), 0)
        self._commands = Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=no_retry,
        )
        self._subscriber = Redis.from_url(
            self._url,
            socket_timeout=None,
            socket_connect_timeout=self._timeout,
            retry=no_retry,
            max_connections=1,
        )
        self._publish_script = self._commands.register_script(scripts.PUBLISH_WITH_HISTORY)
        self._read_script = self._commands.register_script(scripts.READ_HISTORY)
        self._presence_add_script = self._commands.register_script(scripts.PRESENCE_ADD)
        self._presence_refresh_script = self._commands.register_script(scripts.PRESENCE_REFRESH)
        self._presence_read_script = self._commands.register_script(scripts.PRESENCE_READ)
        self._supervisor = asyncio.create_task(self._supervise(), name="redis-broker")

    async def close(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self._set_unavailable()
        for client in (self._commands, self._subscriber):
            if client is not None:
                await client.aclose()
        self._commands = self._subscriber = None

    async def subscribe(self, channel: str) -> None:
        if not self._available:
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker is unreachable; retry later")
        self._wanted.add(channel)
        if channel in self._live:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        self._dirty.set()
        try:
            await asyncio.wait_for(waiter, self._timeout)
        except TimeoutError:
            raise GatewayError(
                ErrorCode.UNAVAILABLE, "the broker did not confirm the subscription in time"
            ) from None

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._dirty.set()

    async def publish(
        self, channel: str, head: bytes, history: HistoryPolicy | None
    ) -> StreamPosition | None:
        commands = self._connected()
        topic = self._keys.topic(channel)
        try:
            if history is None:
                await commands.publish(
                    topic, envelope(protocol.close_message(head), None, now_us())
                )
                return None
            top, epoch = await self._publish_script(
                keys=[self._keys.meta(channel), self._keys.stream(channel)],
                args=[
                    head,
                    history.size,
                    _ms(history.ttl),
                    new_epoch(),
                    topic,
                    "PUBLISH",
                    now_us(),
                ],
                client=commands,
            )
        except (RedisError, OSError) as exc:
            log.warning("broker.publish_failed channel=%s error=%r", channel, exc)
            raise GatewayError(
                ErrorCode.UNAVAILABLE, "the broker did not accept the publication"
            ) from None
        return StreamPosition(int(top), epoch.decode())

    async def read_history(
        self,
        channel: str,
        history: HistoryPolicy,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        commands = self._connected()
        try:
            reply = await self._read_script(
                keys=[self._keys.meta(channel), self._keys.stream(channel)],
                args=[
                    new_epoch(),
                    _ms(history.ttl),
                    -1 if after is None else after,
                    -1 if limit is None else limit,
                ],
                client=commands,
            )
        except (RedisError, OSError) as exc:
            log.warning("broker.history_failed channel=%s error=%r", channel, exc)
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker could not read history") from None
        epoch, top, first, *entries = reply
        messages = [
            (int(entries[index].split(b"-", 1)[0]), entries[index + 1])
            for index in range(0, len(entries), 2)
        ]
        if after is None:
            messages.reverse()
        return HistoryPage(epoch.decode(), int(top), int(first), messages)

    async def presence_add(self, channel: str, client: str, entry: bytes, ttl: float) -> None:
        await self._presence_call(self._presence_add_script, channel, [client, entry, _ms(ttl)])

    async def presence_remove(self, channel: str, client: str) -> None:
        commands = self._connected()
        try:
            async with commands.pipeline(transaction=True) as pipe:
                pipe.hdel(self._keys.presence(channel), client)
                pipe.zrem(self._keys.presence_expiry(channel), client)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise GatewayError(ErrorCode.UNAVAILABLE, f"presence update failed: {exc}") from None

    async def presence_refresh(self, members: list[tuple[str, str, bytes]], ttl: float) -> None:
        by_channel: dict[str, list[str | bytes]] = {}
        for channel, client, entry in members:
            by_channel.setdefault(channel, []).extend((client, entry))
        commands = self._connected()
        try:
            async with commands.pipeline(transaction=False) as pipe:
                for channel, pairs in by_channel.items():
                    await self._presence_refresh_script(
                        keys=self._presence_keys(channel), args=[_ms(ttl), *pairs], client=pipe
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise GatewayError(ErrorCode.UNAVAILABLE, f"presence refresh failed: {exc}") from None

    async def presence(self, channel: str) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
        reply = await self._presence_call(self._presence_read_script, channel, [])
        expired_count = int(reply[0])
        pairs = reply[1:]
        expired = [(pairs[i].decode(), pairs[i + 1]) for i in range(0, 2 * expired_count, 2)]
        live = pairs[2 * expired_count :]
        entries = {live[i].decode(): live[i + 1] for i in range(0, len(live), 2)}
        return entries, expired

    def _connected(self) -> Redis:
        if not self._available or self._commands is None:
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker is unreachable; retry later")
        return self._commands

    def _presence_keys(self, channel: str) -> list[str]:
        return [self._keys.presence(channel), self._keys.presence_expiry(channel)]

    async def _presence_call(self, script: AsyncScript, channel: str, args: list[Any]) -> Any:
        commands = self._connected()
        try:
            return await script(keys=self._presence_keys(channel), args=args, client=commands)
        except (RedisError, OSError) as exc:
            raise GatewayError(ErrorCode.UNAVAILABLE, f"presence call failed: {exc}") from None

    async def _supervise(self) -> None:
        low, high = self._backoff
        delay = low
        this_task = asyncio.current_task()
        while True:
            try:
                await self._session()
            except Exception as exc:  # any failure ends the session; the loop reconnects
                if this_task is not None and this_task.cancelling():
                    # redis-py can turn a cancellation into a timeout error: stop anyway
                    raise asyncio.CancelledError from exc
                if self._available:
                    log.warning("broker.disconnected error=%r", exc)
                delay = low if self._available else min(delay * 2, high)
            self._set_unavailable()
            await asyncio.sleep(random.uniform(0, delay))

    async def _session(self) -> None:
        assert self._commands is not None and self._subscriber is not None
        pubsub = self._subscriber.pubsub()
        try:
            await self._commands.ping()
            await pubsub.execute_command("PING")
            self._sent.clear()
            self._live.clear()
            self._unacked.clear()
            self._last_pong = asyncio.get_running_loop().time()
            self._restoring = True
            self._restore_sent = False
            self._dirty.set()
            self._available = True
            self.connects += 1
            log.info("broker.connected url=%s", _redact(self._url))
            await _first_failure(self._read(pubsub), self._synchronise(pubsub))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub) -> None:
        assert self._handler is not None
        deliver = self._handler.on_publication
        channel_of = self._keys.channel_of
        wanted = self._wanted
        loop = asyncio.get_running_loop()
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                channel = channel_of(message["channel"].decode())
                if channel in wanted:
                    try:
                        deliver(channel, message["data"])
                    except Exception:
                        log.exception("broker.handler_failed channel=%s", channel)
            elif kind == "subscribe":
                channel = channel_of(message["channel"].decode())
                if channel is not None:
                    self._acknowledge(channel)
            elif kind == "pong":
                self._last_pong = loop.time()

    async def _synchronise(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._heartbeat
        while True:
            wait = next_ping - loop.time()
            if wait <= 0:
                if loop.time() - self._last_pong > 3 * self._heartbeat:
                    raise ConnectionError("Redis stopped answering pings")
                await pubsub.execute_command("PING")
                next_ping = loop.time() + self._heartbeat
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), wait)
            if not self._dirty.is_set():
                continue
            self._dirty.clear()
            gone = [channel for channel in self._sent if channel not in self._wanted]
            new = [channel for channel in self._wanted if channel not in self._sent]
            for batch in _batches(gone):
                self._sent.difference_update(batch)
                self._live.difference_update(batch)
                await pubsub.execute_command("UNSUBSCRIBE", *map(self._keys.topic, batch))
            for batch in _batches(new):
                self._sent.update(batch)
                for channel in batch:
                    self._unacked[channel] = self._unacked.get(channel, 0) + 1
                await pubsub.execute_command("SUBSCRIBE", *map(self._keys.topic, batch))
            if self._restoring:
                self._restore_sent = True
                self._check_restored()

    def _check_restored(self) -> None:
        """After a (re)connection: once every channel is held again, let the handler repair."""
        if self._restoring and self._restore_sent and not self._unacked:
            self._restoring = False
            assert self._handler is not None
            try:
                self._handler.on_reconnected()
            except Exception:
                log.exception("broker.handler_failed on_reconnected")

    def _acknowledge(self, channel: str) -> None:
        """Redis confirmed a SUBSCRIBE; the channel is live once every one sent is confirmed."""
        remaining = self._unacked.get(channel, 0) - 1
        if remaining > 0:
            self._unacked[channel] = remaining
            return
        self._unacked.pop(channel, None)
        if channel in self._sent:
            self._live.add(channel)
            for waiter in self._waiters.pop(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)
        self._check_restored()

    def _set_unavailable(self) -> None:
        self._available = False
        self._sent.clear()
        self._live.clear()
        self._unacked.clear()
        waiters, self._waiters = self._waiters, {}
        error = GatewayError(ErrorCode.UNAVAILABLE, "the broker is unreachable; retry later")
        for pending in waiters.values():
            for waiter in pending:
                if not waiter.done():
                    waiter.set_exception(error)

    async def register_node(self, node: str, state: bytes, ttl: float) -> None:
        async with self._registry("register") as redis:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.set(self._keys.node(node), state, px=max(1, int(ttl * 1000)))
                pipe.sadd(self._keys.nodes(), node)
                await pipe.execute()

    async def unregister_node(self, node: str) -> None:
        async with self._registry("unregister") as redis:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.node(node))
                pipe.srem(self._keys.nodes(), node)
                await pipe.execute()

    async def nodes(self) -> dict[str, bytes]:
        async with self._registry("list") as redis:
            members = sorted(_text(member) for member in await redis.smembers(self._keys.nodes()))
            if not members:
                return {}
            states = await redis.mget(map(self._keys.node, members))
            alive = {
                member: state.encode() if isinstance(state, str) else state
                for member, state in zip(members, states, strict=True)
                if state is not None
            }
            gone = [member for member in members if member not in alive]
            if gone:
                await redis.srem(self._keys.nodes(), *gone)
            return alive

    @contextlib.asynccontextmanager
    async def _registry(self, action: str) -> AsyncIterator[Redis]:
        """The command connection for a registry call; Redis errors become `unavailable`."""
        if not self._available or self._commands is None:
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker is unreachable; retry later")
        try:
            yield self._commands
        except (RedisError, OSError) as exc:
            log.warning("broker.registry_failed action=%s error=%r", action, exc)
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker did not answer") from None


async def _first_failure(*loops: Coroutine[Any, Any, None]) -> None:
    """Run endless loops together until one fails; cancel the others and raise its error."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
    raise ConnectionError("a broker loop ended")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _batches(channels: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(channels), SUBSCRIBE_BATCH):
        yield channels[start : start + SUBSCRIBE_BATCH]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if user else f"{scheme}{sep}***@{host}"


_: type[Broker] = RedisBroker
