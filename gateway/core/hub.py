"""Local subscriptions of one replica and the fan-out of publications to them.

The broker's reader calls `Hub.on_publication` for each publication; the hub builds the
outgoing frame once and offers it to every local subscriber of the channel. Offering never
awaits: a subscriber whose queue is full is closed as a slow consumer after the pass.

On channels with history the hub also keeps continuity: it knows the last offset it
dispatched, drops duplicates, and when an offset is skipped (Redis pub/sub is at most
once: a replica misses what is published while its connection is down) it reads the
missing range from the channel's history before dispatching anything newer. Connected
clients therefore see every offset exactly once, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol

from gateway.broker.base import Broker, HistoryPolicy, parse_envelope
from gateway.core.outbox import Outgoing
from gateway.wire.errors import SLOW_CONSUMER, Disconnect, GatewayError
from gateway.wire.protocol import StreamPosition

log = logging.getLogger(__name__)

REPAIR_RETRY = 0.1
"""Seconds before a failed history read is retried while the broker is still reachable."""


class Subscriber(Protocol):
    """A local receiver of a channel's publications (a client connection)."""

    def deliver(self, message: Outgoing) -> bool:
        """Take a publication without waiting; False when the subscriber cannot keep up."""
        ...

    def close(self, reason: Disconnect) -> None:
        """Start closing the subscriber's connection; returns at once."""
        ...


Held = tuple[int, str, bytes]
"""A publication kept back while a channel's continuity is restored: offset, epoch, frame."""


class _Members:
    """One channel on this replica: its subscribers and, with history, its position."""

    __slots__ = (
        "epoch",
        "held",
        "history",
        "last",
        "messages",
        "pending",
        "repair",
        "seeding",
        "subscribers",
    )

    def __init__(self, history: HistoryPolicy | None) -> None:
        self.subscribers: dict[Subscriber, None] = {}
        self.pending = 0
        self.messages = 0
        self.history = history
        self.epoch = ""
        self.last = 0
        self.held: list[Held] | None = [] if history is not None else None
        self.seeding: asyncio.Future[None] | None = None
        self.repair: asyncio.Task[None] | None = None

    @property
    def seeded(self) -> bool:
        return self.history is not None and self.epoch != ""


class Hub:
    """Who on this replica is subscribed to what, and delivery to them.

    ``on_latency``, if given, gets each arriving publication's age in seconds.
    """

    def __init__(self, broker: Broker, on_latency: Callable[[float], None] | None = None) -> None:
        self._broker = broker
        self._on_latency = on_latency
        self._channels: dict[str, _Members] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.sent_bytes = 0
        self.repairs = 0

    @property
    def channel_count(self) -> int:
        """Channels with at least one local subscriber (or one on its way)."""
        return len(self._channels)

    def count(self, channel: str) -> int:
        """Local subscribers of a channel."""
        members = self._channels.get(channel)
        return len(members.subscribers) if members else 0

    def activity(self) -> Iterator[tuple[str, int, int]]:
        """Each channel held now: its local subscribers and the publications it received.

        Safe to consume across awaits: it walks a copy of the channel names.
        """
        for name in list(self._channels):
            if (members := self._channels.get(name)) is not None:
                yield name, len(members.subscribers), members.messages

    def position(self, channel: str) -> StreamPosition | None:
        """The last offset dispatched on a history channel held here, with its epoch."""
        members = self._channels.get(channel)
        if members is None or not members.seeded:
            return None
        return StreamPosition(members.last, members.epoch)

    async def subscribe(
        self, channel: str, subscriber: Subscriber, history: HistoryPolicy | None = None
    ) -> StreamPosition | None:
        """Add a local subscriber once the broker delivers the channel to this replica.

        On a history channel, returns the channel's position at the moment the subscriber
        joined: it receives every offset after that one.

        Raises:
            GatewayError: `unavailable` when the broker could not subscribe.
        """
        members = self._channels.get(channel)
        if members is None:
            members = self._channels[channel] = _Members(history)
        members.pending += 1
        try:
            await self._broker.subscribe(channel)
            if members.history is not None and not members.seeded:
                await self._seed(channel, members)
        except BaseException:
            members.pending -= 1
            self._release_if_unused(channel, members)
            raise
        members.pending -= 1
        members.subscribers[subscriber] = None
        if members.history is None:
            return None
        return StreamPosition(members.last, members.epoch)

    def replace(self, channel: str, old: Subscriber, new: Subscriber) -> None:
        """Hand a subscription over from ``old`` to ``new`` between two publications."""
        members = self._channels.get(channel)
        if members is not None and old in members.subscribers:
            del members.subscribers[old]
            members.subscribers[new] = None

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Remove a local subscriber; the broker subscription goes with the last one."""
        members = self._channels.get(channel)
        if members is None:
            return
        members.subscribers.pop(subscriber, None)
        self._release_if_unused(channel, members)

    def on_publication(self, channel: str, envelope: bytes) -> None:
        """Fan a publication out to the channel's local subscribers; never awaits."""
        members = self._channels.get(channel)
        if members is None:
            return
        members.messages += 1
        offset, epoch, published_at, frame = parse_envelope(envelope)
        if published_at and self._on_latency is not None:
            self._on_latency(max(0.0, time.time() - published_at / 1e6))
        if not offset:
            self._fan_out(members, Outgoing(frame))
        elif members.held is not None:
            members.held.append((offset, epoch, frame))
        else:
            self._accept(channel, members, offset, epoch, frame)

    def on_reconnected(self) -> None:
        """The broker is back: catch up every history channel from its stream."""
        for channel, members in self._channels.items():
            if members.seeded and members.repair is None:
                if members.held is None:
                    members.held = []
                self._start_repair(channel, members)

    async def close(self) -> None:
        """Stop the repair tasks."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _accept(
        self, channel: str, members: _Members, offset: int, epoch: str, frame: bytes
    ) -> None:
        if epoch != members.epoch:
            log.warning("hub.epoch_changed channel=%s old=%s new=%s", channel, members.epoch, epoch)
            members.epoch = epoch
            members.last = 0
        if offset <= members.last:
            return
        if offset > members.last + 1:
            members.held = [(offset, epoch, frame)]
            self._start_repair(channel, members)
            return
        members.last = offset
        self._fan_out(members, Outgoing(frame, offset))

    def _fan_out(self, members: _Members, message: Outgoing) -> None:
        subscribers = members.subscribers
        if not subscribers:
            return
        slow: list[Subscriber] = []
        for subscriber in subscribers:
            if not subscriber.deliver(message):
                slow.append(subscriber)
        delivered = len(subscribers) - len(slow)
        self.delivered += delivered
        self.sent_bytes += delivered * len(message.frame)
        for subscriber in slow:
            subscriber.close(SLOW_CONSUMER)

    async def _seed(self, channel: str, members: _Members) -> None:
        """Learn a history channel's position once per replica, before anyone joins it."""
        if members.seeding is None:
            members.seeding = self._spawn(self._read_position(channel, members))
        seeding = members.seeding
        try:
            await asyncio.shield(seeding)
        except GatewayError:
            if members.seeding is seeding:
                members.seeding = None
            raise

    async def _read_position(self, channel: str, members: _Members) -> None:
        assert members.history is not None
        page = await self._broker.read_history(channel, members.history, limit=0)
        members.epoch, members.last = page.epoch, page.top
        self._release_held(channel, members)

    def _start_repair(self, channel: str, members: _Members) -> None:
        if members.repair is not None:
            return
        self.repairs += 1
        members.repair = self._spawn(self._repair(channel, members))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _repair(self, channel: str, members: _Members) -> None:
        """Dispatch what was missed from the stream, then what was held meanwhile."""
        assert members.history is not None
        try:
            delay = REPAIR_RETRY
            while True:
                try:
                    page = await self._broker.read_history(
                        channel, members.history, after=members.last
                    )
                except GatewayError:
                    if not self._broker.accepting:
                        raise
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 5.0)
                    continue
                if page.epoch == members.epoch:
                    break
                log.warning("hub.epoch_changed channel=%s new=%s", channel, page.epoch)
                members.epoch, members.last = page.epoch, 0
            if page.first > members.last + 1:
                log.warning(
                    "hub.history_gap channel=%s missing=%d..%d",
                    channel,
                    members.last + 1,
                    page.first - 1,
                )
            for offset, frame in page.messages:
                if offset > members.last:
                    members.last = offset
                    self._fan_out(members, Outgoing(frame, offset))
        except GatewayError as exc:
            log.warning("hub.repair_deferred channel=%s reason=%s", channel, exc.message)
            return
        finally:
            members.repair = None
        self._release_held(channel, members)

    def _release_held(self, channel: str, members: _Members) -> None:
        held, members.held = members.held, None
        for offset, epoch, frame in held or ():
            if members.held is not None:
                members.held.append((offset, epoch, frame))
            else:
                self._accept(channel, members, offset, epoch, frame)

    def _release_if_unused(self, channel: str, members: _Members) -> None:
        if (
            not members.subscribers
            and not members.pending
            and self._channels.get(channel) is members
        ):
            del self._channels[channel]
            self._broker.unsubscribe(channel)
