"""What a replica reports of its activity in the registry and ``/api/info``.

Totals only grow while the replica runs, so a reader computes rates from two readings
(and the ``at`` time each was taken); a replica that restarts starts again from zero with
a new ``started_at``. The figures come from counters the hot paths already keep (`Stats`,
the hub's): taking them costs nothing per message.

Top channels are this replica's busiest few, by local subscribers and by publications
received, so the announcement stays small whatever the number of channels.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.hub import Hub
    from gateway.metrics import Stats

TOP_CHANNELS = 10
"""Channels listed per ranking (by subscribers, by publications); at most twice this many."""


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
        "slow_consumers": hub.slow_consumers,
        "repairs": hub.repairs,
    }


def top_channels(
    activity: Iterable[tuple[str, int, int]], count: int = TOP_CHANNELS
) -> list[dict[str, Any]]:
    """The ``count`` channels with the most subscribers, and those with the most publications.

    ``activity`` holds ``(channel, subscribers, messages)``; the result is sorted by
    subscribers, then messages, then name.
    """
    channels = list(activity)
    chosen = set(heapq.nlargest(count, channels, key=lambda row: row[1]))
    chosen.update(heapq.nlargest(count, channels, key=lambda row: row[2]))
    ranked = sorted(chosen, key=lambda row: (-row[1], -row[2], row[0]))
    return [
        {"channel": channel, "subscribers": subscribers, "messages": messages}
        for channel, subscribers, messages in ranked
    ]
