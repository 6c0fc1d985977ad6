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
from collections.abc import Callable, Iterator
from typing import Protocol

from gateway.aio.backoff import Backoff
from gateway.aio.tasks import TaskSet
from gateway.core.frames import Outgoing
from gateway.core.history import HistoryPage, HistoryPolicy
from gateway.wire.continuity import DUPLICATE, EPOCH, GAP, judge
from gateway.wire.envelope import parse_envelope
from gateway.wire.errors import SLOW_CONSUMER, Disconnect, GatewayError
from gateway.wire.protocol import StreamPosition

log = logging.getLogger(__name__)

REPAIR_RETRY = (0.1, 5.0)
"""Backoff of a failed history read (first and longest delay, in seconds), retried while
the broker is still reachable."""


class ChannelFeed(Protocol):
    """What the hub asks of the broker: hold a channel's subscription, read its history.

    The brokers satisfy it structurally; the hub knows nothing else of them.
    """

    @property
    def accepting(self) -> bool:
        """True while history reads can reach the backend."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Hold ``channel``; returns once its publications reach this replica.

        Raises:
            GatewayError: `unavailable`.
        """
        ...

    def unsubscribe(self, channel: str) -> None:
        """Release ``channel``; never blocks."""
        ...

    async def read_history(
        self,
        channel: str,
        history: HistoryPolicy,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        """Read a channel's history (see `gateway.broker.base.HistoryStore`).

        Raises:
            GatewayError: `unavailable`.
        """
        ...


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


class _LocalChannel:
    """One channel on this replica: its local subscribers and, with history, the position of
    its stream here (the last offset dispatched, its epoch, and what is held during a repair)."""

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

    def __init__(
        self, feed: ChannelFeed, on_latency: Callable[[float], None] | None = None
    ) -> None:
        self._feed = feed
        self._on_latency = on_latency
        self._channels: dict[str, _LocalChannel] = {}
        self._tasks = TaskSet()
        self.delivered = 0
        self.sent_bytes = 0
        self.repairs = 0

    @property
    def channel_count(self) -> int:
        """Channels with at least one local subscriber (or one on its way)."""
        return len(self._channels)

    def activity(self) -> Iterator[tuple[str, int, int]]:
        """Each channel held now: its local subscribers and the publications it received.

        Safe to consume across awaits: it walks a copy of the channel names.
        """
        for name in list(self._channels):
            if (local := self._channels.get(name)) is not None:
                yield name, len(local.subscribers), local.messages

    async def subscribe(
        self, channel: str, subscriber: Subscriber, history: HistoryPolicy | None = None
    ) -> StreamPosition | None:
        """Add a local subscriber once the broker delivers the channel to this replica.

        On a history channel, returns the channel's position at the moment the subscriber
        joined: it receives every offset after that one.

        Raises:
            GatewayError: `unavailable` when the broker could not subscribe.
        """
        local = self._channels.get(channel)
        if local is None:
            local = self._channels[channel] = _LocalChannel(history)
        local.pending += 1
        try:
            await self._feed.subscribe(channel)
            if local.history is not None and not local.seeded:
                await self._seed(channel, local)
        except BaseException:
            local.pending -= 1
            self._release_if_unused(channel, local)
            raise
        local.pending -= 1
        local.subscribers[subscriber] = None
        if local.history is None:
            return None
        return StreamPosition(local.last, local.epoch)

    def replace(self, channel: str, old: Subscriber, new: Subscriber) -> None:
        """Hand a subscription over from ``old`` to ``new`` between two publications."""
        local = self._channels.get(channel)
        if local is not None and old in local.subscribers:
            del local.subscribers[old]
            local.subscribers[new] = None

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Remove a local subscriber; the broker subscription goes with the last one."""
        local = self._channels.get(channel)
        if local is None:
            return
        local.subscribers.pop(subscriber, None)
        self._release_if_unused(channel, local)

    def on_publication(self, channel: str, envelope: bytes) -> None:
        """Fan a publication out to the channel's local subscribers; never awaits."""
        local = self._channels.get(channel)
        if local is None:
            return
        local.messages += 1
        offset, epoch, published_at, frame = parse_envelope(envelope)
        if published_at and self._on_latency is not None:
            self._on_latency(max(0.0, time.time() - published_at / 1e6))
        if not offset:
            self._fan_out(local, Outgoing(frame))
        elif local.held is not None:
            local.held.append((offset, epoch, frame))
        else:
            self._accept(channel, local, offset, epoch, frame)

    def on_reconnected(self) -> None:
        """The broker is back: catch up every history channel from its stream."""
        for channel, local in self._channels.items():
            if local.seeded and local.repair is None:
                if local.held is None:
                    local.held = []
                self._start_repair(channel, local)

    async def close(self) -> None:
        """Stop the repair tasks."""
        await self._tasks.close()

    def _accept(
        self, channel: str, local: _LocalChannel, offset: int, epoch: str, frame: bytes
    ) -> None:
        verdict = judge(local.last, local.epoch, offset, epoch)
        if verdict == EPOCH:
            log.warning("hub.epoch_changed channel=%s old=%s new=%s", channel, local.epoch, epoch)
            local.epoch = epoch
            local.last = 0
            verdict = judge(0, epoch, offset, epoch)
        if verdict == DUPLICATE:
            return
        if verdict == GAP:
            local.held = [(offset, epoch, frame)]
            self._start_repair(channel, local)
            return
        local.last = offset
        self._fan_out(local, Outgoing(frame, offset))

    def _fan_out(self, local: _LocalChannel, message: Outgoing) -> None:
        subscribers = local.subscribers
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

    async def _seed(self, channel: str, local: _LocalChannel) -> None:
        """Learn a history channel's position once per replica, before anyone joins it."""
        if local.seeding is None:
            local.seeding = self._tasks.spawn(self._read_position(channel, local))
        seeding = local.seeding
        try:
            await asyncio.shield(seeding)
        except GatewayError:
            if local.seeding is seeding:
                local.seeding = None
            raise

    async def _read_position(self, channel: str, local: _LocalChannel) -> None:
        assert local.history is not None
        page = await self._feed.read_history(channel, local.history, limit=0)
        local.epoch, local.last = page.epoch, page.top
        self._release_held(channel, local)

    def _start_repair(self, channel: str, local: _LocalChannel) -> None:
        if local.repair is not None:
            return
        self.repairs += 1
        local.repair = self._tasks.spawn(self._repair(channel, local))

    async def _repair(self, channel: str, local: _LocalChannel) -> None:
        """Dispatch what was missed from the stream, then what was held meanwhile."""
        assert local.history is not None
        try:
            backoff = Backoff(*REPAIR_RETRY)
            while True:
                try:
                    page = await self._feed.read_history(channel, local.history, after=local.last)
                except GatewayError:
                    if not self._feed.accepting:
                        raise
                    await asyncio.sleep(backoff.delay())
                    continue
                if page.epoch == local.epoch:
                    break
                log.warning("hub.epoch_changed channel=%s new=%s", channel, page.epoch)
                local.epoch, local.last = page.epoch, 0
            if page.first > local.last + 1:
                log.warning(
                    "hub.history_gap channel=%s missing=%d..%d",
                    channel,
                    local.last + 1,
                    page.first - 1,
                )
            for offset, frame in page.messages:
                if offset > local.last:
                    local.last = offset
                    self._fan_out(local, Outgoing(frame, offset))
        except GatewayError as exc:
            log.warning("hub.repair_deferred channel=%s reason=%s", channel, exc.message)
            return
        finally:
            local.repair = None
        self._release_held(channel, local)

    def _release_held(self, channel: str, local: _LocalChannel) -> None:
        held, local.held = local.held, None
        for offset, epoch, frame in held or ():
            if local.held is not None:
                local.held.append((offset, epoch, frame))
            else:
                self._accept(channel, local, offset, epoch, frame)

    def _release_if_unused(self, channel: str, local: _LocalChannel) -> None:
        if not local.subscribers and not local.pending and self._channels.get(channel) is local:
            del self._channels[channel]
            self._feed.unsubscribe(channel)
