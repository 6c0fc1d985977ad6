"""The one path every publication takes: protocol clients (pipelined or not), plain-text
clients, the server HTTP API, presence announcements, and whatever publishes next.

`Publisher` builds the `message` frame (once, here), checks its size, hands it to the
broker's pub/sub and counts it. Who may publish is decided before, by the caller (a
session's guard); server-side publications are trusted.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.broker.base import PubSub
from gateway.core.stats import Stats
from gateway.services.namespaces import Namespaces, history_policy
from gateway.settings import NamespaceOptions
from gateway.wire import protocol
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.protocol import StreamPosition, check_idempotency_key

POSITION_BYTES = 64
"""Room kept for the offset and epoch a stored message gains."""


@dataclass(frozen=True, slots=True)
class Sender:
    """Who published: the ``from`` of the message (the server API has none)."""

    client: str
    user: str | None
    info: Any = None


class Publisher:
    """Publishes on the broker for one replica.

    ``on_roundtrip`` gets the seconds each accepted publication took to reach the broker.
    """

    def __init__(
        self,
        broker: PubSub,
        namespaces: Namespaces,
        stats: Stats,
        max_message_bytes: int,
        on_roundtrip: Callable[[float], None] | None = None,
    ) -> None:
        self._broker = broker
        self._namespaces = namespaces
        self._stats = stats
        self._limit = max_message_bytes
        self._on_roundtrip = on_roundtrip

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        sender: Sender | None = None,
        options: NamespaceOptions | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        """Publish ``data`` to ``channel`` now, and wait until the broker took it; its
        position where the namespace keeps history, else None. ``options`` are the
        channel's namespace options when the caller looked them up already; ``tags``
        travel with the message (`protocol.message_head`).

        A publication whose ``idempotency_key`` was accepted on the channel within the
        idempotency window is not stored or delivered again: the first one's position is
        returned.

        Raises:
            GatewayError: `unknown_namespace`; `bad_request` for data JSON cannot hold or
                an invalid ``idempotency_key``; `too_large` over ``max_message_bytes``;
                `unavailable` when the broker did not accept it.
        """
        options = options if options is not None else self._namespaces.of(channel)
        head = self._head(channel, data, sender, tags)
        started = time.perf_counter()
        position = await self._broker.publish(
            channel,
            head,
            history_policy(options),
            idempotency_key=check_idempotency_key(idempotency_key),
        )
        self._accepted(started)
        return position

    def publish_later(
        self,
        channel: str,
        data: Any,
        *,
        sender: Sender | None = None,
        options: NamespaceOptions | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> asyncio.Future[StreamPosition | None]:
        """Check a publication now and queue it: publications queued in one event-loop pass
        travel to the broker together (pipelining). The future resolves as `publish`
        returns, or fails with `unavailable`.

        Raises:
            GatewayError: as `publish`, except `unavailable`, which fails the future.
        """
        options = options if options is not None else self._namespaces.of(channel)
        head = self._head(channel, data, sender, tags)
        future = self._broker.publish_later(
            channel,
            head,
            history_policy(options),
            idempotency_key=check_idempotency_key(idempotency_key),
        )
        future.add_done_callback(functools.partial(self._settled, time.perf_counter()))
        return future

    async def broadcast(
        self,
        channels: Iterable[str],
        data: Any,
        tags: dict[str, str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, int]:
        """Publish ``data`` to each channel as the server; the offsets of those with history.

        Every channel's namespace is checked before anything is published. An
        ``idempotency_key`` applies on each channel on its own.

        Raises:
            GatewayError: as `publish`.
        """
        options = {channel: self._namespaces.of(channel) for channel in channels}
        positions = await asyncio.gather(
            *(
                self.publish(
                    channel, data, options=opts, tags=tags, idempotency_key=idempotency_key
                )
                for channel, opts in options.items()
            )
        )
        return {
            channel: position.offset
            for channel, position in zip(options, positions, strict=True)
            if position is not None
        }

    async def announce(self, channel: str, event: bytes) -> None:
        """Publish a presence event (`protocol.presence_head`) to ``channel``'s subscribers:
        not stored, not counted as a message.

        Raises:
            GatewayError: `unavailable`.
        """
        await self._broker.publish(channel, event, None)

    def _head(
        self, channel: str, data: Any, sender: Sender | None, tags: dict[str, str] | None
    ) -> bytes:
        if sender is None:
            head = protocol.message_head(channel, data, None, None, tags=tags)
        else:
            head = protocol.message_head(
                channel, data, sender.client, sender.user, sender.info, tags
            )
        if len(head) + POSITION_BYTES > self._limit:
            raise GatewayError(ErrorCode.TOO_LARGE, f"the message would exceed {self._limit} bytes")
        return head

    def _accepted(self, started: float) -> None:
        self._stats.published += 1
        if self._on_roundtrip is not None:
            self._on_roundtrip(time.perf_counter() - started)

    def _settled(self, started: float, future: asyncio.Future[StreamPosition | None]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._accepted(started)
