"""The in-memory broker frees expired history even if its channels are never used again."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until

MIB = 1024 * 1024
HISTORY_TTL = 5
CHANNELS = 1000
MESSAGE = "x" * (60 * 1024)
WINDOW = 50
"""Publications in flight at once."""


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes (``VmRSS`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def test_expired_history_is_freed_without_another_use() -> None:
    replica = GatewayProcess(
        "memory",
        namespaces=json.dumps({"default": {"history_ttl": HISTORY_TTL}}),
        max_message_bytes=128 * 1024,
        rate=0,
    )
    replica.start()
    try:
        assert replica.process is not None
        pid = replica.process.pid
        async with await ProtocolClient.connect(replica.ws_url) as client:
            await client.publish("warm:up", MESSAGE)
            before = rss(pid)
            for start in range(0, CHANNELS, WINDOW):
                ids = []
                for n in range(start, start + WINDOW):
                    await client.send(
                        {"op": "publish", "id": n, "channel": f"big:{n}", "data": MESSAGE}
                    )
                    ids.append(n)
                for n in ids:
                    reply = await client.expect(lambda f, n=n: f.get("id") == n)
                    assert reply["op"] == "published", reply
            published_at = time.monotonic()
            peak = rss(pid)
            grown = peak - before
            assert grown > CHANNELS * len(MESSAGE) // 2, "the history is held in memory"

            await wait_until(
                lambda: rss(pid) < before + grown // 4,
                HISTORY_TTL + 10,
                "the expired history freed",
            )
            freed_after = time.monotonic() - published_at
            print(
                f"RSS {before / MIB:.0f} MiB -> {peak / MIB:.0f} MiB after {CHANNELS} publications"
                f" -> {rss(pid) / MIB:.0f} MiB {freed_after:.1f}s later"
            )
            assert freed_after >= HISTORY_TTL - 1, "nothing is freed before its time"
    finally:
        replica.stop()
