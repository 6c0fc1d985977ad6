"""What a replica reports of its activity in the registry and ``/api/info``.

Totals only grow while the replica runs, so a reader computes rates from two readings
(and the ``at`` time each was taken); a replica that restarts starts again from zero with
a new ``started_at``. The figures come from counters the hot paths already keep (`Stats`,
the hub's): taking them costs nothing per message.

Top channels are this replica's busiest few, by local subscribers and by publications
received, so the announcement stays small whatever the number of channels.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from gateway.core.hub import Hub
from gateway.core.stats import Stats
from gateway.services.connections import ConnectionRegistry

TOP_CHANNELS = 10
"""Channels listed per ranking (by subscribers, by publications); at most twice this many."""

RANK_CHUNK = 2000
"""Channels ranked between two yields to the event loop."""


def totals(stats: Stats, hub: Hub) -> dict[str, Any]:
    """This replica's counters since it started."""
    results: Counter[str] = Counter()
    for (_, result), count in stats.commands.items():
        results[result] += count
    return {
        "published": stats.published,
        "delivered": hub.delivered,
        "received_bytes": stats.received_bytes,
        "sent_bytes": stats.sent_bytes + hub.sent_bytes,
        "commands": dict(results),
        "errors": dict(stats.errors),
        "slow_consumers": stats.slow_consumers,
        "repairs": hub.repairs,
    }


async def top_channels(
    activity: Iterable[tuple[str, int, int]], count: int = TOP_CHANNELS
) -> list[dict[str, Any]]:
    """The ``count`` channels with the most subscribers, and the ``count`` with the most
    publications (those with any), sorted by subscribers, then publications, then name.

    ``activity`` holds ``(channel, subscribers, messages)``. Ranking yields to the event
    loop every `RANK_CHUNK` channels, so a replica holding very many channels never holds
    fan-out up while it ranks them.
    """
    by_subscribers: list[tuple[int, str, int]] = []
    by_messages: list[tuple[int, str, int]] = []
    for seen, (channel, subscribers, messages) in enumerate(activity, 1):
        if subscribers:
            _keep(by_subscribers, (subscribers, channel, messages), count)
        if messages:
            _keep(by_messages, (messages, channel, subscribers), count)
        if seen % RANK_CHUNK == 0:
            await asyncio.sleep(0)
    chosen = {(channel, subscribers, messages) for subscribers, channel, messages in by_subscribers}
    chosen.update(
        (channel, subscribers, messages) for messages, channel, subscribers in by_messages
    )
    return [
        {"channel": channel, "subscribers": subscribers, "messages": messages}
        for channel, subscribers, messages in sorted(
            chosen, key=lambda row: (-row[1], -row[2], row[0])
        )
    ]


def _keep(heap: list[tuple[int, str, int]], entry: tuple[int, str, int], count: int) -> None:
    """Keep ``entry`` if it is among the ``count`` largest seen (``heap`` is a min-heap)."""
    if len(heap) < count:
        heapq.heappush(heap, entry)
    elif entry > heap[0]:
        heapq.heapreplace(heap, entry)


class NodeReport:
    """What this replica announces about itself: counts, readiness and activity."""

    def __init__(
        self,
        node_id: str,
        stats: Stats,
        hub: Hub,
        connections: ConnectionRegistry,
        readiness: Callable[[], tuple[bool, str]],
    ) -> None:
        self._node_id = node_id
        self._stats = stats
        self._hub = hub
        self._connections = connections
        self._readiness = readiness
        self.started_at = time.time()

    async def state(self) -> dict[str, Any]:
        """The announcement, taken now."""
        hub = self._hub
        ranked = await top_channels(hub.activity())
        ready, readiness = self._readiness()
        return {
            "node": self._node_id,
            "started_at": self.started_at,
            "at": time.time(),
            "connections": len(self._connections),
            "subscriptions": self._connections.subscriptions(),
            "channels": hub.channel_count,
            "ready": ready,
            "readiness": readiness,
            "totals": totals(self._stats, hub),
            "top_channels": ranked,
        }
