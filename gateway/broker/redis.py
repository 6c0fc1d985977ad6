"""The Redis broker: pub/sub through listeners, commands and scripts over a small pool.

On a standalone Redis a replica has one listener (one pub/sub connection). With
``redis_cluster`` it uses sharded pub/sub: one listener per master, each holding the
channels whose slot that master owns, and SPUBLISH inside the publish script. Every key of
a channel carries the channel as a hash tag, so each script touches one slot. When a slot
moves, the master that lost it drops the channel's subscription; the broker then re-reads
the cluster's layout and subscribes at the new owner, and the hub repairs what was missed
from the history.

Commands (publish, history, presence, the registry) travel over a connection pool whose
state `links.CommandLink` keeps, apart from the listeners: a dropped pub/sub connection
refuses no publish. A pooled connection that Redis already closed is reconnected before a
command is written on it (`_reconnect_closed_connections`); nothing else is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.retry import Retry

from gateway.aio.tasks import TaskSet
from gateway.broker import scripts
from gateway.broker.base import Broker, BrokerHandler, HistoryPage, HistoryPolicy
from gateway.broker.keys import KeySpace
from gateway.broker.links import CommandLink, describe
from gateway.broker.listener import CLASSIC, SHARDED, Dialect, Listener, ListenerEvents
from gateway.redaction import redact_url
from gateway.wire import protocol
from gateway.wire.envelope import envelope, new_epoch, now_us
from gateway.wire.errors import GatewayError, unavailable
from gateway.wire.protocol import StreamPosition

log = logging.getLogger(__name__)

OFFSET_LIMIT = 2**63 - 1
"""No offset reaches it (offsets are below 2^63)."""


class RedisBroker:
    """Publish/subscribe, history and presence on Redis or a Redis Cluster."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gw",
        timeout: float = 5.0,
        heartbeat: float | None = None,
        backoff: tuple[float, float] = (0.05, 2.0),
        cluster: bool = False,
        idempotency_window: float = 300.0,
    ) -> None:
        self._url = url
        self._once_ms = _ms(idempotency_window)
        self._keys = KeySpace(prefix)
        self._timeout = timeout
        self._heartbeat = heartbeat if heartbeat is not None else min(2.0, timeout / 3)
        self._backoff = backoff
        self._cluster = cluster
        self._handler: BrokerHandler | None = None
        self._commands: Redis | RedisCluster | None = None
        self._link: CommandLink | None = None
        self._listeners: dict[str, Listener] = {}
        self._routes: dict[str, Listener] = {}
        self._rerouting: asyncio.Task[None] | None = None
        self.replaced_connections = 0
        """Pooled connections found closed by Redis before a command was written on them,
        and reconnected instead (see `_reconnect_closed_connections`)."""
        self._outgoing: list[_Publication] = []
        self._send_scheduled = False
        self._sending = TaskSet()

    @property
    def accepting(self) -> bool:
        """Commands reach Redis: the command link is up (see `links.CommandLink`)."""
        return self._link is not None and self._link.up

    @property
    def listening(self) -> bool:
        """Every pub/sub link is connected."""
        listeners = self._listeners
        return bool(listeners) and all(listener.available for listener in listeners.values())

    @property
    def ready(self) -> bool:
        """Commands reach Redis, and every pub/sub link is connected or reconnecting within
        its grace (a dropped connection back in a moment)."""
        listeners = self._listeners
        return (
            self.accepting
            and bool(listeners)
            and all(listener.available or listener.reconnecting for listener in listeners.values())
        )

    @property
    def reconnects(self) -> int:
        """Pub/sub connections re-established after a loss, over every listener."""
        return sum(max(0, listener.connects - 1) for listener in self._listeners.values())

    @property
    def keys(self) -> KeySpace:
        """The Redis names this broker uses."""
        return self._keys

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._open_commands()
        if not self._cluster:
            self._add_listener(redact_url(self._url), CLASSIC, None)
        assert self._link is not None
        self._link.start()

    async def start_publishing(self) -> None:
        """Open the command link only, without pub/sub listeners: for a process that
        publishes and reads but never subscribes (`gateway.Publisher`). Returns once Redis
        answered.

        Raises:
            GatewayError: `unavailable` when Redis did not answer within the timeout.
        """
        self._open_commands()
        assert self._link is not None
        try:
            await self._link.open()
        except (RedisError, OSError, TimeoutError) as exc:
            await self.close()
            message = f"Redis at {_address(self._url)} did not answer: {describe(exc)}"
            raise unavailable(message) from None

    def _open_commands(self) -> None:
        no_retry = Retry(NoBackoff(), 0)
        options: dict[str, Any] = {
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            "retry": no_retry,
        }
        commands: Redis | RedisCluster
        if self._cluster:
            commands = RedisCluster.from_url(self._url, **options)
        else:
            commands = Redis.from_url(self._url, **options)
        self._commands = commands
        _reconnect_closed_connections(commands, self._replaced)
        self._link = CommandLink(
            self._probe,
            self._restored,
            address=_address(self._url),
            timeout=self._timeout,
            backoff=self._backoff,
        )
        self._publish_script = self._commands.register_script(scripts.PUBLISH_WITH_HISTORY)
        self._publish_once_script = self._commands.register_script(
            scripts.PUBLISH_WITH_HISTORY_ONCE
        )
        self._publish_once_bare_script = self._commands.register_script(scripts.PUBLISH_ONCE)
        self._read_script = self._commands.register_script(scripts.READ_HISTORY)
        self._presence_add_script = self._commands.register_script(scripts.PRESENCE_ADD)
        self._presence_refresh_script = self._commands.register_script(scripts.PRESENCE_REFRESH)
        self._presence_read_script = self._commands.register_script(scripts.PRESENCE_READ)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
        if self._rerouting is not None:
            self._rerouting.cancel()
            await asyncio.gather(self._rerouting, return_exceptions=True)
        await self._sending.close()
        listeners, self._listeners = list(self._listeners.values()), {}
        self._routes.clear()
        for listener in listeners:
            await listener.close()
        if self._commands is not None:
            await self._commands.aclose()
            self._commands = None

    async def subscribe(self, channel: str) -> None:
        listener = self._route(channel)
        self._routes[channel] = listener
        await listener.subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        listener = self._routes.pop(channel, None)
        if listener is not None:
            listener.unsubscribe(channel)

    def _route(self, channel: str) -> Listener:
        """The listener of the node that carries ``channel``."""
        if not self._cluster:
            return next(iter(self._listeners.values()))
        cluster = self._commands
        if not isinstance(cluster, RedisCluster) or not self._listeners:
            raise unavailable()
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(self._keys.topic(channel)))
        listener = self._listeners.get(node.name)
        if listener is None:
            listener = self._add_listener(node.name, SHARDED, (node.host, int(node.port)))
        return listener

    def _add_listener(
        self, name: str, dialect: Dialect, address: tuple[str, int] | None
    ) -> Listener:
        options: dict[str, Any] = {
            "socket_timeout": None,
            "socket_connect_timeout": self._timeout,
            "retry": Retry(NoBackoff(), 0),
            "max_connections": 1,
        }
        client = Redis.from_url(self._url, **options)
        if address is not None:
            kwargs = client.connection_pool.connection_kwargs
            kwargs["host"], kwargs["port"] = address
            where = f"{address[0]}:{address[1]}"
        else:
            where = _address(self._url)
        assert self._handler is not None
        handler = self._handler
        events = ListenerEvents(
            handler.on_publication, handler.on_control, self._restored, self._lost
        )
        listener = Listener(
            client,
            self._keys,
            events,
            name=name,
            address=where,
            dialect=dialect,
            timeout=self._timeout,
            heartbeat=self._heartbeat,
            backoff=self._backoff,
        )
        self._listeners[name] = listener
        listener.start()
        return listener

    def _restored(self) -> None:
        assert self._handler is not None
        self._handler.on_reconnected()

    def _lost(self, channel: str) -> None:
        """A master dropped one of our channels: its slot moved; follow it."""
        if self._rerouting is None or self._rerouting.done():
            self._rerouting = asyncio.get_running_loop().create_task(self._reroute())

    def _replaced(self) -> None:
        self.replaced_connections += 1

    async def _probe(self) -> None:
        """One attempt to reach Redis for the command link: PING (every master of a
        cluster, once its layout is read and a listener runs for each)."""
        commands = self._commands
        if isinstance(commands, RedisCluster):
            await commands.initialize()
            for node in commands.get_primaries():
                if self._handler is not None and node.name not in self._listeners:
                    self._add_listener(node.name, SHARDED, (node.host, int(node.port)))
            await commands.ping(target_nodes=RedisCluster.PRIMARIES)
        elif commands is not None:
            await commands.ping()

    async def _reroute(self) -> None:
        """Re-read the cluster's layout and move every channel to the master that owns it."""
        cluster = self._commands
        assert isinstance(cluster, RedisCluster)
        try:
            await cluster.nodes_manager.initialize()
        except (RedisError, OSError) as exc:
            log.warning("broker.cluster_layout_failed error=%s", describe(exc))
        moved = [
            channel
            for channel, listener in self._routes.items()
            if not listener.holds(channel) or self._route(channel) is not listener
        ]
        for channel in moved:
            old = self._routes[channel]
            old.unsubscribe(channel)
            new = self._route(channel)
            self._routes[channel] = new
            try:
                await new.subscribe(channel)
            except GatewayError as exc:
                log.warning("broker.reroute_failed channel=%s reason=%s", channel, exc.message)
        if moved:
            log.info("broker.rerouted channels=%d", len(moved))
            self._restored()

    def publish_later(
        self,
        channel: str,
        head: bytes,
        history: HistoryPolicy | None,
        *,
        idempotency_key: str | None = None,
    ) -> asyncio.Future[StreamPosition | None]:
        """Queue a publication; every publication queued in one event-loop pass goes to Redis
        in one pipeline (one round trip), in the order they were queued."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StreamPosition | None] = loop.create_future()
        if not self.accepting or self._commands is None:
            future.set_exception(unavailable())
            return future
        self._outgoing.append(_Publication(channel, head, history, future, idempotency_key))
        if not self._send_scheduled:
            self._send_scheduled = True
            loop.call_soon(self._send_outgoing)
        return future

    async def publish(
        self,
        channel: str,
        head: bytes,
        history: HistoryPolicy | None,
        *,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        """One publication on its own, without waiting for the end of the loop pass."""
        item = _Publication(channel, head, history, None, idempotency_key)
        [result] = await self._round_trip([item])
        return _position(item, result)

    def _send_outgoing(self) -> None:
        self._send_scheduled = False
        batch, self._outgoing = self._outgoing, []
        self._sending.spawn(self._send(batch))

    async def _send(self, batch: list[_Publication]) -> None:
        try:
            results = await self._round_trip(batch)
        except GatewayError as error:
            results = [error] * len(batch)
        for item, result in zip(batch, results, strict=True):
            future = item.future
            if future is None or future.done():
                continue
            try:
                future.set_result(_position(item, result))
            except GatewayError as error:
                future.set_exception(error)

    async def _round_trip(self, batch: list[_Publication]) -> list[Any]:
        """Send publications to Redis; one result (or error) each, in order.

        Raises:
            GatewayError: `unavailable` when Redis could not be reached.
        """
        try:
            results = await self._pipeline(batch)
            unloaded = [
                index for index, result in enumerate(results) if isinstance(result, NoScriptError)
            ]
            if unloaded:
                # Redis lost its script cache (it restarted): load the scripts, resend those
                commands = self._connected()
                for script in _PUBLISH_SCRIPTS:
                    await commands.script_load(script)
                again = await self._pipeline([batch[index] for index in unloaded])
                for index, result in zip(unloaded, again, strict=True):
                    results[index] = result
        except (RedisError, OSError) as exc:
            self._failed(exc)
            log.warning("broker.publish_failed count=%d error=%s", len(batch), describe(exc))
            raise unavailable("the broker did not accept the publication") from None
        return results

    async def _pipeline(self, batch: list[_Publication]) -> list[Any]:
        """Send publications, in one pipeline when there are several; results (or errors)
        in the same order."""
        commands = self._connected()
        if len(batch) == 1:
            try:
                return [await commands.execute_command(*self._publish_command(batch[0]))]
            except ResponseError as error:
                return [error]
        async with commands.pipeline(transaction=False) as pipe:
            for item in batch:
                pipe.execute_command(*self._publish_command(item))
            return list(await pipe.execute(raise_on_error=False))

    def _publish_command(self, item: _Publication) -> tuple[Any, ...]:
        publish = "SPUBLISH" if self._cluster else "PUBLISH"
        keys = self._keys
        topic = keys.topic(item.channel)
        once = item.idempotency_key
        if item.history is None:
            frame = envelope(protocol.close_message(item.head), None, now_us())
            if once is None:
                return publish, topic, frame
            once_key = keys.once(item.channel, once)
            sha = self._publish_once_bare_script.sha
            return "EVALSHA", sha, 1, once_key, frame, topic, publish, self._once_ms
        channel, history = item.channel, item.history
        stored = (keys.meta(channel), keys.stream(channel))
        script_args = (item.head, history.size, _ms(history.ttl), new_epoch(), topic, publish)
        if once is not None:
            sha = self._publish_once_script.sha
            once_key = keys.once(channel, once)
            return "EVALSHA", sha, 3, *stored, once_key, *script_args, now_us(), self._once_ms
        return "EVALSHA", self._publish_script.sha, 2, *stored, *script_args, now_us()

    async def read_history(
        self,
        channel: str,
        history: HistoryPolicy,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        commands = self._connected()
        if after is not None:
            if after >= OFFSET_LIMIT:  # nothing comes after it; Lua's numbers would not hold it
                after, limit = None, 0
            else:
                after = max(after, 0)
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
            self._failed(exc)
            log.warning("broker.history_failed channel=%s error=%s", channel, describe(exc))
            raise unavailable("the broker could not read history") from None
        epoch, top, first, *entries = reply
        messages = [
            (int(entries[index].split(b"-", 1)[0]), entries[index + 1])
            for index in range(0, len(entries), 2)
        ]
        if after is None:
            messages.reverse()
        return HistoryPage(epoch.decode(), int(top), int(first), messages)

    async def remove_history(self, channel: str) -> None:
        commands = self._connected()
        try:
            await commands.delete(self._keys.stream(channel))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            log.warning("broker.history_remove_failed channel=%s error=%s", channel, describe(exc))
            raise unavailable("the broker could not remove history") from None

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
            self._failed(exc)
            raise unavailable(f"presence update failed: {exc}") from None

    async def presence_refresh(self, members: list[tuple[str, str, bytes]], ttl: float) -> None:
        by_channel: dict[str, list[str | bytes]] = {}
        for channel, client, entry in members:
            by_channel.setdefault(channel, []).extend((client, entry))
        commands = self._connected()
        calls = [
            self._presence_refresh_script(
                keys=self._presence_keys(channel), args=[_ms(ttl), *pairs], client=commands
            )
            for channel, pairs in by_channel.items()
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            self._failed(failures[0])
            raise unavailable(f"presence refresh failed: {failures[0]!r}") from None

    async def presence(self, channel: str) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
        reply = await self._presence_call(self._presence_read_script, channel, [])
        expired_count = int(reply[0])
        pairs = reply[1:]
        expired = [(pairs[i].decode(), pairs[i + 1]) for i in range(0, 2 * expired_count, 2)]
        live = pairs[2 * expired_count :]
        entries = {live[i].decode(): live[i + 1] for i in range(0, len(live), 2)}
        return entries, expired

    def _connected(self) -> Redis | RedisCluster:
        if not self.accepting or self._commands is None:
            raise unavailable()
        return self._commands

    def _failed(self, error: BaseException) -> None:
        """A command failed: the command link is down if Redis could not be reached."""
        if self._link is not None:
            self._link.failed(error)

    def _presence_keys(self, channel: str) -> list[str]:
        return [self._keys.presence(channel), self._keys.presence_expiry(channel)]

    async def _presence_call(self, script: AsyncScript, channel: str, args: list[Any]) -> Any:
        commands = self._connected()
        try:
            return await script(keys=self._presence_keys(channel), args=args, client=commands)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            raise unavailable(f"presence call failed: {exc}") from None

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
    async def _registry(self, action: str) -> AsyncIterator[Redis | RedisCluster]:
        """The command connection for a registry call; Redis errors become `unavailable`."""
        commands = self._connected()
        try:
            yield commands
        except (RedisError, OSError) as exc:
            self._failed(exc)
            log.warning("broker.registry_failed action=%s error=%s", action, describe(exc))
            raise unavailable("the broker did not answer") from None


@dataclass(frozen=True, slots=True)
class _Publication:
    channel: str
    head: bytes
    history: HistoryPolicy | None
    future: asyncio.Future[StreamPosition | None] | None
    idempotency_key: str | None = None


_PUBLISH_SCRIPTS = (
    scripts.PUBLISH_WITH_HISTORY,
    scripts.PUBLISH_WITH_HISTORY_ONCE,
    scripts.PUBLISH_ONCE,
)


def _position(item: _Publication, result: Any) -> StreamPosition | None:
    """A publication's position from its Redis reply.

    Raises:
        GatewayError: `unavailable` when the reply is an error.
    """
    if isinstance(result, Exception):
        log.warning("broker.publish_failed channel=%s error=%s", item.channel, describe(result))
        raise unavailable("the broker did not accept the publication")
    if item.history is None:
        return None
    top, epoch = result[0], result[1]
    return StreamPosition(int(top), epoch.decode())


def _reconnect_closed_connections(
    client: Redis | RedisCluster, replaced: Callable[[], None]
) -> None:
    """Make every connection of ``client`` check, before a command is written on it,
    whether Redis already closed it (a pooled connection idle across a Redis restart, a
    ``CLIENT KILL`` or a reset), and reconnect first if so.

    Such a command provably never reached Redis: Redis closes a connection in both
    directions at once, so nothing written after its close is read. ``replaced`` is
    called for each connection reconnected this way. A command on a connection that
    fails later (while writing, or waiting for the reply) may have reached Redis and is
    not sent again.
    """
    if isinstance(client, RedisCluster):
        manager = client.nodes_manager
        checked = _checking(manager.connection_kwargs.get("connection_class"), replaced)
        manager.connection_kwargs["connection_class"] = checked
        for node in manager.startup_nodes.values():
            node.connection_class = checked
    else:
        pool = client.connection_pool
        pool.connection_class = _checking(pool.connection_class, replaced)


def _checking(base: Any, replaced: Callable[[], None]) -> Any:
    """A subclass of the connection class ``base`` that reconnects a closed connection
    before writing on it."""
    if base is None:
        from redis.asyncio.connection import Connection as base

    class ReconnectingWhenClosed(base):  # type: ignore[misc]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if _closed_by_server(self):
                log.info("broker.connection_replaced address=%s", self._host_error())
                replaced()
                await self.disconnect(nowait=True)
            await super().send_packed_command(command, check_health)

    ReconnectingWhenClosed.__name__ = f"ReconnectingWhenClosed{base.__name__}"
    return ReconnectingWhenClosed


def _closed_by_server(connection: AbstractConnection) -> bool:
    """True when the socket of a connected ``connection`` already saw the server's end:
    end of stream (FIN) or a reset."""
    reader = getattr(connection, "_reader", None)
    writer = getattr(connection, "_writer", None)
    if not isinstance(reader, asyncio.StreamReader) or not isinstance(writer, asyncio.StreamWriter):
        return False
    return reader.at_eof() or reader.exception() is not None or writer.transport.is_closing()


def _address(url: str) -> str:
    """Where a Redis URL points, for the log: ``host:port`` (or the socket path); never
    the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        return redact_url(url)
    return f"{parts.hostname or 'localhost'}:{port}"


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_: type[Broker] = RedisBroker
