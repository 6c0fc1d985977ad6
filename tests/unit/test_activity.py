"""What a replica announces of its activity: totals and top channels."""

from __future__ import annotations

import asyncio

from gateway.broker.memory import MemoryBroker
from gateway.core.hub import Hub
from gateway.core.stats import Stats
from gateway.ops.activity import RANK_CHUNK, top_channels, totals


def test_totals_sum_commands_by_result_and_add_the_hubs_bytes() -> None:
    stats, hub = Stats(), Hub(MemoryBroker())
    stats.commands.update({("publish", "ok"): 3, ("subscribe", "ok"): 2})
    stats.commands.update({("publish", "forbidden"): 1, ("subscribe", "forbidden"): 1})
    stats.errors["forbidden"] = 2
    stats.published, stats.received_bytes, stats.sent_bytes = 3, 100, 40
    hub.delivered, hub.sent_bytes, hub.repairs = 7, 60, 2
    stats.slow_consumers = 1
    assert totals(stats, hub) == {
        "published": 3,
        "delivered": 7,
        "received_bytes": 100,
        "sent_bytes": 100,
        "commands": {"ok": 5, "forbidden": 2},
        "errors": {"forbidden": 2},
        "slow_consumers": 1,
        "repairs": 2,
    }


async def test_top_channels_are_the_most_subscribed_and_the_busiest() -> None:
    activity = [(f"crowd:{n}", 100 + n, 0) for n in range(5)]
    activity += [(f"quiet:{n}", 1, 0) for n in range(50)]
    activity += [("ticker", 1, 10_000), ("feed", 2, 500)]
    top = await top_channels(activity, count=2)
    assert [row["channel"] for row in top] == ["crowd:4", "crowd:3", "feed", "ticker"]
    assert top[0] == {"channel": "crowd:4", "subscribers": 104, "messages": 0}


async def test_top_channels_list_each_channel_once() -> None:
    top = await top_channels([("both", 10, 10), ("other", 1, 1)], count=1)
    assert top == [{"channel": "both", "subscribers": 10, "messages": 10}]


async def test_idle_channels_are_not_ranked_by_publications() -> None:
    top = await top_channels([("held", 1, 0), ("joining", 0, 0), ("busy", 0, 3)], count=5)
    assert [row["channel"] for row in top] == ["held", "busy"]


async def test_no_channels_no_top() -> None:
    assert await top_channels([]) == []


async def test_ranking_many_channels_lets_other_tasks_run() -> None:
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    await top_channels((f"c:{n}", n % 7, n % 5) for n in range(5 * RANK_CHUNK))
    task.cancel()
    assert turns >= 5
