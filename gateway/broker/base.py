"""The broker contract every backend fulfils, and the values that cross it.

What travels on a channel's pub/sub topic is an *envelope*: the complete frame clients
receive, preceded by a one-line header a replica reads without decoding the JSON:
``#<offset>:<epoch>:<published at>\\n`` on channels with history (continuity checks), else
``!<published at>\\n``. The publication time (microseconds since the Unix epoch, on the
publishing replica's clock) feeds the publish-to-deliver latency metric.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

from gateway.wire.protocol import StreamPosition

HISTORY_MARK = 0x23  # "#": an envelope with a position header
TIME_MARK = 0x21  # "!": an envelope with only the publication time


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a channel's history is kept: ``size`` messages for ``ttl`` seconds."""

    size: int
    ttl: float


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A consistent read of a channel's history.

    ``top`` is the latest offset (0 before the first publication), ``first`` the oldest
    offset still retained (``top + 1`` when nothing is), ``messages`` the requested
    ``(offset, frame)`` pairs in offset order.
    """

    epoch: str
    top: int
    first: int
    messages: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.top, self.epoch)


def new_epoch() -> str:
    """A fresh epoch: random, short, and safe to splice into JSON without escaping."""
    return secrets.token_hex(6)


def now_us() -> int:
    """The publication time stamped on envelopes."""
    return time.time_ns() // 1000


def envelope(frame: bytes, position: StreamPosition | None, published_at: int) -> bytes:
    """What a publication looks like on the pub/sub topic."""
    if position is None:
        return b"!%d\n%s" % (published_at, frame)
    return b"#%d:%s:%d\n%s" % (position.offset, position.epoch.encode(), published_at, frame)


def parse_envelope(data: bytes) -> tuple[int, str, int, bytes]:
    """Split an envelope into ``(offset, epoch, published at, frame)``.

    Offset 0 and epoch "" without a position; published at 0 for a bare frame.
    """
    if not data or data[0] not in (HISTORY_MARK, TIME_MARK):
        return 0, "", 0, data
    newline = data.index(b"\n")
    header, frame = data[1:newline], data[newline + 1 :]
    if data[0] == TIME_MARK:
        return 0, "", int(header), frame
    offset, epoch, published_at = header.split(b":")
    return int(offset), epoch.decode(), int(published_at), frame


class BrokerHandler(Protocol):
    """Receives what the broker pushes; called from the broker's reader, must never await."""

    def on_publication(self, channel: str, envelope: bytes) -> None:
        """A publication on a channel this replica holds (see the module docstring)."""
        ...

    def on_reconnected(self) -> None:
        """The broker is back after an outage and holds every channel again.

        Called when a pub/sub link is restored (publications made meanwhile were not
        delivered) and when the command link is (history reads may have failed
        meanwhile); the handler repairs what it can.
        """
        ...


class Broker(Protocol):
    """Publish/subscribe between replicas, with per-channel history and presence.

    Delivery is at most once per replica subscription; a replica holds one broker
    subscription per channel however many local clients want it. On channels with
    history, storing a publication, assigning its offset and publishing it are one atomic
    step, so offsets are consecutive per channel and nothing is published unstored.
    """

    # What can be asked of the broker now. Publishing, history, presence and the registry
    # travel on the command link and depend on it alone; subscriptions and the delivery of
    # publications travel on the pub/sub link(s). While a pub/sub link reconnects,
    # publishing goes on and the hub repairs what its subscribers missed
    # (`BrokerHandler.on_reconnected`).

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

    async def start(self, handler: BrokerHandler) -> None:
        """Begin delivering publications to ``handler``; does not wait for the backend."""
        ...

    async def close(self) -> None:
        """Stop every task and release every connection."""
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
        self, channel: str, head: bytes, history: HistoryPolicy | None
    ) -> StreamPosition | None:
        """Publish a message frame built by `protocol.message_head` to every replica.

        With a history policy the message is first stored with the next offset of the
        channel, and its position is returned. Returns once the backend accepted it.

        Raises:
            GatewayError: `unavailable` when the backend did not accept it.
        """
        ...

    def publish_soon(
        self, channel: str, head: bytes, history: HistoryPolicy | None
    ) -> asyncio.Future[StreamPosition | None]:
        """`publish` without waiting: the future resolves as `publish` would return or raise.

        Publications queued in one event-loop pass may travel together (one round trip);
        they reach the backend in the order they were queued.
        """
        ...

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

    # The replica registry (``/api/info``): each replica announces itself on a heartbeat.

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
