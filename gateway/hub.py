"""Local subscriptions of one replica and the fan-out of publications to them.

The broker's reader calls `Hub.on_publication` for each publication; the hub builds the
outgoing frame once and offers it to every local subscriber of the channel. Offering never
awaits: a subscriber whose queue is full is closed as a slow consumer after the pass.
"""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.broker.base import Broker
from gateway.errors import SLOW_CONSUMER, Disconnect
from gateway.outbox import Outgoing

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """A local receiver of a channel's publications (a client connection)."""

    def deliver(self, message: Outgoing) -> bool:
        """Take a publication without waiting; False when the subscriber cannot keep up."""
        ...

    def close(self, reason: Disconnect) -> None:
        """Start closing the subscriber's connection; returns at once."""
        ...


class _Members:
    __slots__ = ("pending", "subscribers")

    def __init__(self) -> None:
        self.subscribers: dict[Subscriber, None] = {}
        self.pending = 0


class Hub:
    """Who on this replica is subscribed to what, and delivery to them."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._channels: dict[str, _Members] = {}
        self.slow_consumers = 0
        self.delivered = 0

    @property
    def channel_count(self) -> int:
        """Channels with at least one local subscriber (or one on its way)."""
        return len(self._channels)

    def count(self, channel: str) -> int:
        """Local subscribers of a channel."""
        members = self._channels.get(channel)
        return len(members.subscribers) if members else 0

    def channels(self) -> list[str]:
        """Every channel held on this replica."""
        return list(self._channels)

    async def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Add a local subscriber; returns once the broker delivers the channel to this replica.

        Raises:
            GatewayError: `unavailable` when the broker could not subscribe.
        """
        members = self._channels.get(channel)
        if members is None:
            members = self._channels[channel] = _Members()
        members.pending += 1
        try:
            await self._broker.subscribe(channel)
        except BaseException:
            members.pending -= 1
            self._release_if_unused(channel, members)
            raise
        members.pending -= 1
        members.subscribers[subscriber] = None

    def _release_if_unused(self, channel: str, members: _Members) -> None:
        if not members.subscribers and not members.pending:
            del self._channels[channel]
            self._broker.unsubscribe(channel)

    def unsubscribe(self, channel: str, subscriber: Subscriber) -> None:
        """Remove a local subscriber; the broker subscription goes with the last one."""
        members = self._channels.get(channel)
        if members is None:
            return
        members.subscribers.pop(subscriber, None)
        self._release_if_unused(channel, members)

    def on_publication(self, channel: str, frame: bytes) -> None:
        """Fan a publication out to the channel's local subscribers; never awaits."""
        members = self._channels.get(channel)
        if members is None or not members.subscribers:
            return
        message = Outgoing(frame)
        slow: list[Subscriber] = []
        for subscriber in members.subscribers:
            if not subscriber.deliver(message):
                slow.append(subscriber)
        self.delivered += len(members.subscribers) - len(slow)
        for subscriber in slow:
            self.slow_consumers += 1
            subscriber.close(SLOW_CONSUMER)
