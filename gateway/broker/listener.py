"""One pub/sub connection to one Redis node, kept alive, holding a set of channels.

A supervisor task owns the connection. It connects (with capped, jittered backoff; each
failed attempt and the reconnection logged as `links.Outage` says), counts the link up
once Redis answered a PING on it, re-subscribes every channel wanted, then runs two loops
until the connection fails: the reader, which hands each publication on, and the
synchroniser, which turns changes of the wanted set into batched
(S)SUBSCRIBE/(S)UNSUBSCRIBE commands — the only writer of those commands, so they reach
Redis in the order they were decided — and pings Redis on a heartbeat so that a silent
network failure is noticed (no answer for three heartbeats).

A standalone Redis needs one listener per replica; a Redis Cluster one per master, using
sharded pub/sub (``SSUBSCRIBE``), so each node only carries its own channels' messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from gateway.aio.backoff import Backoff
from gateway.broker.keys import KeySpace
from gateway.broker.links import Outage, stop_if_cancelled
from gateway.wire.channels import CONTROL_CHANNEL
from gateway.wire.errors import unavailable

log = logging.getLogger(__name__)

SUBSCRIBE_BATCH = 500
"""Channels per SUBSCRIBE/UNSUBSCRIBE command."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The pub/sub commands and message types of classic or sharded pub/sub."""

    subscribe: str
    unsubscribe: str
    message: str
    subscribed: str
    unsubscribed: str


CLASSIC = Dialect("SUBSCRIBE", "UNSUBSCRIBE", "message", "subscribe", "unsubscribe")
SHARDED = Dialect("SSUBSCRIBE", "SUNSUBSCRIBE", "smessage", "ssubscribe", "sunsubscribe")


@dataclass(frozen=True, slots=True)
class ListenerEvents:
    """What a listener reports, all called from its reader and never awaited."""

    deliver: Callable[[str, bytes], None]
    """A publication on a wanted client channel."""
    control: Callable[[bytes], None]
    """A command on the control channel."""
    restored: Callable[[], None]
    """After a (re)connection, every wanted channel is held again."""
    lost: Callable[[str], None]
    """The server dropped a wanted channel on its own (a cluster slot moved away)."""


class Listener:
    """Holds the wanted channels on one Redis node; see the module docstring."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        events: ListenerEvents,
        *,
        name: str,
        address: str,
        dialect: Dialect = CLASSIC,
        timeout: float = 5.0,
        heartbeat: float = 2.0,
        backoff: tuple[float, float] = (0.05, 2.0),
        grace: float = 1.0,
    ) -> None:
        self._client = client
        self._keys = keys
        self._events = events
        self.name = name
        self.address = address
        """Where the node is (``host:port``), for the log."""
        self._grace = grace
        self._down_since: float | None = None
        self._dialect = dialect
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._backoff = backoff
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
        """Connections established (the first one included)."""

    @property
    def available(self) -> bool:
        """True while connected to the node (Redis answered on this connection)."""
        return self._available

    @property
    def reconnecting(self) -> bool:
        """True while a link that was up has been down for less than its grace: a dropped
        connection about to be back (subscriptions wait for it)."""
        if self._available or self._down_since is None:
            return False
        return asyncio.get_running_loop().time() - self._down_since < self._grace

    def holds(self, channel: str) -> bool:
        """True when ``channel`` is wanted here (live or on its way)."""
        return channel in self._wanted

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name=f"listener-{self.name}")

    async def close(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self._set_unavailable()
        await self._client.aclose()

    async def subscribe(self, channel: str) -> None:
        """Hold ``channel``; returns once Redis confirmed the subscription.

        While the link reconnects (down for less than ``grace`` seconds), the subscription
        waits for it.

        Raises:
            GatewayError: `unavailable` when the node is unreachable or too slow.
        """
        if not self._available and not self.reconnecting:
            raise unavailable()
        self._wanted.add(channel)
        if channel in self._live:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        self._dirty.set()
        try:
            async with asyncio.timeout(self._timeout):
                await waiter
        except TimeoutError:
            raise unavailable("the broker did not confirm the subscription in time") from None

    def unsubscribe(self, channel: str) -> None:
        """Stop wanting ``channel``: nothing more is delivered for it."""
        self._wanted.discard(channel)
        self._dirty.set()

    async def _supervise(self) -> None:
        backoff = Backoff(*self._backoff)
        outage = Outage("pubsub", self.address)
        while True:
            try:
                await self._session(outage, backoff)
            except Exception as exc:  # any failure ends the session; the loop reconnects
                stop_if_cancelled(exc)
                delay = backoff.delay()
                if self._available:
                    outage.lost(exc)
                else:
                    outage.failed(exc, delay)
            self._set_unavailable()
            await asyncio.sleep(delay)

    async def _session(self, outage: Outage, backoff: Backoff) -> None:
        pubsub = self._client.pubsub()
        try:
            async with asyncio.timeout(self._timeout):
                await _handshake(pubsub)
            self._sent.clear()
            self._live.clear()
            self._unacked.clear()
            self._last_pong = asyncio.get_running_loop().time()
            self._restoring = True
            self._restore_sent = False
            self._dirty.set()
            self._available = True
            self._down_since = None
            self.connects += 1
            outage.connected()
            backoff.reset()
            await _first_failure(self._read(pubsub), self._synchronise(pubsub))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub) -> None:
        deliver = self._events.deliver
        control = self._events.control
        control_topic = self._keys.control_topic().encode()
        channel_of = self._keys.channel_of
        wanted = self._wanted
        dialect = self._dialect
        loop = asyncio.get_running_loop()
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == dialect.message:
                topic = message["channel"]
                if topic == control_topic:
                    if CONTROL_CHANNEL in wanted:
                        try:
                            control(message["data"])
                        except Exception:
                            log.exception("broker.handler_failed channel=%s", CONTROL_CHANNEL)
                    continue
                channel = channel_of(topic.decode())
                if channel in wanted:
                    try:
                        deliver(channel, message["data"])
                    except Exception:
                        log.exception("broker.handler_failed channel=%s", channel)
            elif kind == dialect.subscribed:
                channel = channel_of(message["channel"].decode())
                if channel is not None:
                    self._acknowledge(channel)
            elif kind == dialect.unsubscribed:
                channel = channel_of(message["channel"].decode())
                if channel is not None:
                    self._dropped(channel)
            elif kind == "pong":
                self._last_pong = loop.time()

    async def _synchronise(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._heartbeat
        topic = self._keys.topic
        while True:
            wait = next_ping - loop.time()
            if wait <= 0:
                if loop.time() - self._last_pong > 3 * self._heartbeat:
                    raise ConnectionError("Redis stopped answering pings")
                await pubsub.execute_command("PING")
                next_ping = loop.time() + self._heartbeat
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._dirty.wait()
            if not self._dirty.is_set():
                continue
            self._dirty.clear()
            gone = [channel for channel in self._sent if channel not in self._wanted]
            new = [channel for channel in self._wanted if channel not in self._sent]
            for batch in _batches(gone):
                self._sent.difference_update(batch)
                self._live.difference_update(batch)
                await pubsub.execute_command(self._dialect.unsubscribe, *map(topic, batch))
            for batch in _batches(new):
                self._sent.update(batch)
                for channel in batch:
                    self._unacked[channel] = self._unacked.get(channel, 0) + 1
                await pubsub.execute_command(self._dialect.subscribe, *map(topic, batch))
            if self._restoring:
                self._restore_sent = True
                self._check_restored()

    def _check_restored(self) -> None:
        """After a (re)connection: once every channel is held again, report it."""
        if self._restoring and self._restore_sent and not self._unacked:
            self._restoring = False
            try:
                self._events.restored()
            except Exception:
                log.exception("broker.handler_failed restored")

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

    def _dropped(self, channel: str) -> None:
        """An unsubscription confirmed; unasked for if we still want the channel."""
        if channel in self._sent and channel in self._wanted and channel not in self._unacked:
            self._sent.discard(channel)
            self._live.discard(channel)
            self._wanted.discard(channel)
            log.warning("broker.channel_lost node=%s channel=%s", self.name, channel)
            try:
                self._events.lost(channel)
            except Exception:
                log.exception("broker.handler_failed lost")

    def _set_unavailable(self) -> None:
        if self._available:
            self._down_since = asyncio.get_running_loop().time()
        self._available = False
        self._sent.clear()
        self._live.clear()
        self._unacked.clear()
        waiters, self._waiters = self._waiters, {}
        error = unavailable()
        for pending in waiters.values():
            for waiter in pending:
                if not waiter.done():
                    waiter.set_exception(error)


async def _handshake(pubsub: PubSub) -> None:
    """Connect and wait for Redis's answer to a PING: a link is up once Redis has spoken."""
    await pubsub.execute_command("PING")
    while True:
        message: dict[str, Any] | None = await pubsub.get_message(timeout=None)
        if message is not None and message["type"] == "pong":
            return


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


def _batches(channels: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(channels), SUBSCRIBE_BATCH):
        yield channels[start : start + SUBSCRIBE_BATCH]
