"""The broker contract, one `Protocol` per capability, as centrifuge splits its ``Broker``
and ``PresenceManager``: pub/sub, history, presence and the node registry.

The memory and Redis brokers implement every capability (`Broker`); each service depends
only on the capability it uses (the publisher on `PubSub`, presence on `PresenceStore`,
the registry on `NodeStore`, the hub on its own `gateway.core.hub.ChannelFeed`). What
travels on a channel's topic is an envelope (`gateway.wire.envelope`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.core.history import HistoryPage, HistoryPolicy
from gateway.wire.protocol import StreamPosition

__all__ = [
    "Broker",
    "BrokerHandler",
    "BrokerRoutes",
    "HistoryPage",
    "HistoryPolicy",
    "HistoryStore",
    "NodeStore",
    "PresenceStore",
    "PubSub",
]


class BrokerHandler(Protocol):
    """Receives what the broker pushes; called from the broker's reader, must never await."""

    def on_publication(self, channel: str, envelope: bytes) -> None:
        """A publication on a client channel this replica holds."""
        ...

    def on_control(self, envelope: bytes) -> None:
        """A command on the control channel (`gateway.wire.channels.CONTROL_CHANNEL`).

        The broker routes it here where it maps the topic to a channel, so no publication
        is compared with the control channel on its way to the hub.
        """
        ...

    def on_reconnected(self) -> None:
        """The broker is back after an outage and holds every channel again.

        Called when a pub/sub link is restored (publications made meanwhile were not
        delivered) and when the command link is (history reads may have failed
        meanwhile); the handler repairs what it can.
        """
        ...


@dataclass(frozen=True, slots=True)
class BrokerRoutes:
    """A `BrokerHandler` made of three functions: publications straight to the hub, control
    commands to the control channel, reconnections to whoever repairs (no call between)."""

    on_publication: Callable[[str, bytes], None]
    on_control: Callable[[bytes], None]
    on_reconnected: Callable[[], None]


class PubSub(Protocol):
    """Publish/subscribe between replicas.

    Delivery is at most once per replica subscription; a replica holds one broker
    subscription per channel however many local clients want it. On channels with
    history, storing a publication, assigning its offset and publishing it are one atomic
    step, so offsets are consecutive per channel and nothing is published unstored.

    Publishing, history, presence and the registry travel on the command link and depend on
    it alone; subscriptions and the delivery of publications travel on the pub/sub link(s).
    While a pub/sub link reconnects, publishing goes on and the hub repairs what its
    subscribers missed (`BrokerHandler.on_reconnected`).
    """

    @property
    def accepting(self) -> bool:
        """True while commands (publish, history, presence, registry) reach the backend.

        While False they fail at once with `unavailable`; it turns True again by itself
        when the backend answers.
        """
        ...

    @property
    def listening(self) -> bool:
        """True while every pub/sub link is connected: publications reach this replica."""
        ...

    @property
    def ready(self) -> bool:
        """True when the replica can serve clients: `accepting`, and every pub/sub link
        connected or reconnecting for a moment (a dropped connection, back within about a
        second; subscriptions made meanwhile wait for it). What readiness follows.
        """
        ...

    @property
    def reconnects(self) -> int:
        """Times a pub/sub link was re-established after a loss (first connections not
        counted): the ``gateway_broker_reconnects`` metric."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Hold a subscription to ``channel``; returns once it is live on the backend.

        Raises:
            GatewayError: `unavailable` when the backend cannot be reached in time.
        """
        ...

    def unsubscribe(self, channel: str) -> None:
        """Release the subscription to ``channel``: nothing more is delivered for it.

        The backend subscription is dropped in the background; this never blocks.
        """
        ...

    async def publish(
        self,
        channel: str,
        head: bytes,
        history: HistoryPolicy | None,
        *,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        """Publish a message to every replica; ``head`` is a frame built by
        `gateway.wire.protocol.message_head` (or `presence_head`), without its closing brace.

        With a history policy the message is first stored with the next offset of the
        channel, and its position is returned. Returns once the backend accepted it.

        With an ``idempotency_key`` already accepted on the channel within the broker's
        idempotency window, nothing is stored or delivered, and the first publication's
        position is returned. Checking the key, assigning the offset and storing the key
        are one atomic step, whichever replicas race with the same key.

        Raises:
            GatewayError: `unavailable` when the backend did not accept it.
        """
        ...

    def publish_later(
        self,
        channel: str,
        head: bytes,
        history: HistoryPolicy | None,
        *,
        idempotency_key: str | None = None,
    ) -> asyncio.Future[StreamPosition | None]:
        """`publish` without waiting: the future resolves as `publish` would return or raise.

        Publications queued in one event-loop pass may travel together (one round trip);
        they reach the backend in the order they were queued.
        """
        ...


class HistoryStore(Protocol):
    """Each channel's retained messages, with their offsets and epoch."""

    async def read_history(
        self,
        channel: str,
        history: HistoryPolicy,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        """Read a channel's history in one consistent step.

        With ``after``, the messages with a greater offset (the oldest ``limit`` of them);
        without it, the newest ``limit`` (none when ``limit`` is None). A channel with no
        history yet gets its epoch here, so a subscriber's position stays valid when the
        first message is published.

        Raises:
            GatewayError: `unavailable` when the backend cannot be reached.
        """
        ...

    async def remove_history(self, channel: str) -> None:
        """Drop a channel's retained messages, keeping its epoch and latest offset: a
        subscriber recovering from before then learns that the messages are gone, and the
        next publication takes the next offset.

        Raises:
            GatewayError: `unavailable` when the backend cannot be reached.
        """
        ...


class PresenceStore(Protocol):
    """Who is subscribed to each channel, on every replica, with a time to live."""

    @property
    def accepting(self) -> bool:
        """True while presence calls reach the backend (see `PubSub.accepting`)."""
        ...

    async def presence_add(self, channel: str, client: str, entry: bytes, ttl: float) -> None:
        """Record a subscribed client (``entry`` is its JSON `{user, info}`) for ``ttl`` seconds."""
        ...

    async def presence_remove(self, channel: str, client: str) -> None:
        """Forget a client that left the channel."""
        ...

    async def presence_refresh(self, members: list[tuple[str, str, bytes]], ttl: float) -> None:
        """Extend the life of the ``(channel, client, entry)`` this replica still serves."""
        ...

    async def presence(self, channel: str) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
        """Who is subscribed, as ``{client: entry}``, dropping entries whose time ran out.

        Also returns the ``(client, entry)`` pairs dropped by this call, so the caller can
        announce that they left.
        """
        ...


class NodeStore(Protocol):
    """The replica registry (``/api/info``): each replica announces itself on a heartbeat."""

    async def register_node(self, node: str, state: bytes, ttl: float) -> None:
        """Announce replica ``node`` as alive for ``ttl`` seconds, with its state (JSON).

        Raises:
            GatewayError: `unavailable` when the backend did not accept it.
        """
        ...

    async def unregister_node(self, node: str) -> None:
        """Forget replica ``node`` at once (it is shutting down).

        Raises:
            GatewayError: `unavailable` when the backend cannot be reached.
        """
        ...

    async def nodes(self) -> dict[str, bytes]:
        """The last announced state of every replica whose announcement has not expired.

        Raises:
            GatewayError: `unavailable` when the backend cannot be reached.
        """
        ...


class Broker(PubSub, HistoryStore, PresenceStore, NodeStore, Protocol):
    """Every capability, and the life cycle of the connections behind them."""

    async def start(self, handler: BrokerHandler) -> None:
        """Begin delivering publications to ``handler``; does not wait for the backend."""
        ...

    async def close(self) -> None:
        """Stop every task and release every connection."""
        ...
