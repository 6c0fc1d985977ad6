"""Everyday Redis faults, seen by clients of real replicas on a real redis-server.

A Redis restart, a killed pub/sub connection and a faulty network path between a replica
and Redis (through `tests.support.proxy.TcpProxy`) must not lose an acknowledged message,
must not leave a replica stuck, and `/readyz` must say the truth meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from gateway.broker.keys import KeySpace
from tests.e2e.test_recovery import publish_batch
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess, start_all
from tests.support.net import free_port, wait_until
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer

NAMESPACES = json.dumps({"durable": {"history_size": 5000}})
BROKER_TIMEOUT = 1.0
"""The replicas' ``broker_timeout``: how long a silent Redis takes to be noticed."""
SETTINGS: dict[str, Any] = {
    "namespaces": NAMESPACES,
    "rate": 0,
    "broker_timeout": BROKER_TIMEOUT,
    "max_queue": 20000,
}
"""Room in each outbox for a repair of everything published during a fault: what is
tested here is the repair, not the slow-consumer limit (a repair larger than
``max_queue`` closes the subscriber with 4008, and it recovers when it reconnects)."""
RECOVERY_BOUND = 6.0
"""Seconds a replica may take to be ready again once its path to Redis is healthy: the
longest reconnection backoff (2 s) plus a broker timeout, with room for a loaded machine."""


@contextlib.asynccontextmanager
async def replicas(*processes: GatewayProcess) -> AsyncIterator[tuple[GatewayProcess, ...]]:
    """Start replicas of different settings at once; kill them afterwards."""
    try:
        await asyncio.to_thread(start_all, list(processes))
        yield processes
    finally:
        for process in processes:
            process.kill()


async def status(replica: GatewayProcess) -> int:
    """The replica's ``/readyz`` status (0 when it does not answer in time)."""
    try:
        async with httpx.AsyncClient(base_url=replica.http_url, timeout=2) as http:
            return (await http.get("/readyz")).status_code
    except httpx.HTTPError:
        return 0


async def wait_for_status(replica: GatewayProcess, code: int, timeout: float) -> float:
    """Wait until ``/readyz`` answers ``code``; the seconds it took."""
    started = time.monotonic()

    async def reached() -> bool:
        return await status(replica) == code

    await wait_until(reached, timeout, f"/readyz {code} on {replica.node_id}")
    return time.monotonic() - started


@dataclass
class Publishing:
    """A client publishing 0, 1, 2, ... one at a time, keeping every reply."""

    client: ProtocolClient
    channel: str
    replies: list[dict[str, Any]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            reply = await self.client.request(
                "publish", channel=self.channel, data=n, timeout=4 * BROKER_TIMEOUT + 5
            )
            assert reply["op"] in ("published", "error"), reply
            if reply["op"] == "error":
                assert reply["code"] == "unavailable", reply
                await asyncio.sleep(0.01)  # a client's pause before it tries again
            self.replies.append(reply)
            n += 1

    @property
    def acknowledged(self) -> list[int]:
        return [reply["offset"] for reply in self.replies if reply["op"] == "published"]

    @property
    def refused(self) -> int:
        return sum(reply["op"] == "error" for reply in self.replies)

    async def publish(self, count: int) -> list[dict[str, Any]]:
        """``count`` more publications, in order; their replies."""
        replies = []
        for n in range(count):
            reply = await self.client.request("publish", channel=self.channel, data=-n)
            replies.append(reply)
            self.replies.append(reply)
        return replies


def stored_offsets(redis: RedisServer, channel: str) -> set[int]:
    """The offsets the channel's Redis stream holds (read with a plain client)."""
    with redis.client() as client:
        entries = client.xrange(KeySpace("gw").stream(channel))
    return {int(entry_id.split(b"-")[0]) for entry_id, _ in entries}


async def received_offsets(subscriber: ProtocolClient, channel: str, newest: int) -> list[int]:
    """Every offset the subscriber got on ``channel``, once it got ``newest``."""
    await subscriber.expect(
        lambda f: f.get("op") == "message" and f.get("offset") == newest, timeout=15
    )
    kept = [f["offset"] for f in subscriber.inbox if f.get("op") == "message"]
    return [*kept, newest]


async def test_every_publish_after_a_redis_restart_succeeds(
    gateways: Callable[..., list[GatewayProcess]], fresh_redis: RedisServer
) -> None:
    [replica] = gateways(1, redis_url=fresh_redis.url, rate=0, broker_timeout=BROKER_TIMEOUT)
    publishers = [await ProtocolClient.connect(replica.ws_url) for _ in range(4)]
    try:
        # several publishers at once leave several connections in the replica's pool
        await asyncio.gather(
            *(publish_batch(p, f"restart:{i}", list(range(100))) for i, p in enumerate(publishers))
        )

        fresh_redis.kill()
        await wait_for_status(replica, 503, 5)
        fresh_redis.start()
        await wait_for_status(replica, 200, RECOVERY_BOUND)
        replies = [
            await publishers[n % 4].request("publish", channel="restart:after", data=n)
            for n in range(40)
        ]
        succeeded = sum(reply["op"] == "published" for reply in replies)
        print(f"publish success after the restart: {succeeded}/{len(replies)}")
        assert succeeded == len(replies), [r for r in replies if r["op"] != "published"][:3]
    finally:
        await asyncio.gather(*(p.close() for p in publishers))


async def test_a_killed_pubsub_connection_refuses_no_publish(
    gateways: Callable[..., list[GatewayProcess]], fresh_redis: RedisServer
) -> None:
    [replica] = gateways(
        1, redis_url=fresh_redis.url, namespaces=NAMESPACES, rate=0, broker_timeout=BROKER_TIMEOUT
    )
    channel = "durable:kill"
    subscriber = await ProtocolClient.connect(replica.ws_url)
    publisher = Publishing(await ProtocolClient.connect(replica.ws_url), channel)
    try:
        await subscriber.subscribe(channel)
        await publisher.publish(20)
        with fresh_redis.client() as redis:
            for _ in range(5):
                await wait_until(lambda: pubsub_clients(redis) > 0, 5, "the listener connected")
                assert redis.client_kill_filter(_type="pubsub") == 1
                await publisher.publish(60)
        refused = publisher.refused
        total = len(publisher.replies)
        print(f"publish success across pub/sub kills: {total - refused}/{total}")
        assert refused == 0, [r for r in publisher.replies if r["op"] != "published"][:3]
        acknowledged = publisher.acknowledged
        got = await received_offsets(subscriber, channel, max(acknowledged))
        assert got == list(range(1, max(acknowledged) + 1)), "every offset once, in order"
    finally:
        await asyncio.gather(subscriber.close(), publisher.client.close())


def pubsub_clients(redis: Any) -> int:
    return len(redis.client_list(_type="pubsub"))


FAULTS = {
    "blackhole": lambda proxy: proxy.blackhole(),
    "half-open, requests lost": lambda proxy: proxy.blackhole(downstream=False),
    "half-open, replies lost": lambda proxy: proxy.blackhole(upstream=False),
    "reset": lambda proxy: proxy.cut(),
    "delay": lambda proxy: proxy.delay(0.2),
}
CUT_OFF = {"blackhole", "half-open, requests lost", "half-open, replies lost"}
"""Faults after which the replica cannot reach Redis (until the path heals)."""


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_faulty_path_to_redis_loses_nothing_acknowledged(
    fresh_redis: RedisServer, fault: str
) -> None:
    channel = "durable:path"
    async with (
        TcpProxy(fresh_redis.port) as path,
        replicas(
            GatewayProcess("faulty", redis_url=path.redis_url, **SETTINGS),
            GatewayProcess("healthy", redis_url=fresh_redis.url, **SETTINGS),
        ) as (faulty, healthy),
    ):
        subscriber = await ProtocolClient.connect(faulty.ws_url)
        await subscriber.subscribe(channel)
        local = Publishing(await ProtocolClient.connect(faulty.ws_url), channel)
        remote = Publishing(await ProtocolClient.connect(healthy.ws_url), channel)
        loops = [asyncio.create_task(p.run()) for p in (local, remote)]
        try:
            await wait_until(
                lambda: len(local.acknowledged) >= 20, 5, "publishing before the fault"
            )
            FAULTS[fault](path)
            if fault in CUT_OFF:
                noticed = await wait_for_status(faulty, 503, BROKER_TIMEOUT + 4)
                print(f"{fault}: /readyz 503 after {noticed:.2f}s")
                await wait_until(lambda: local.refused >= 1, 2 * BROKER_TIMEOUT + 5, "a refusal")
            else:
                before = len(local.acknowledged)
                await wait_until(
                    lambda: len(local.acknowledged) >= before + 3, 10, "publishing through it"
                )
            path.heal()
            recovered = await wait_for_status(faulty, 200, RECOVERY_BOUND)
            print(f"{fault}: /readyz 200 again {recovered:.2f}s after the path healed")
            for publisher in (local, remote):
                publisher.stop.set()
            await asyncio.gather(*loops)
            after = await local.publish(20)
            assert [r["op"] for r in after] == ["published"] * 20, after[:3]
            if fault == "delay":
                assert local.refused == 0, "a slow path refuses no publish"
            if fault == "reset":
                assert local.refused <= 1, "only the publication in flight may be refused"
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

        acknowledged = set(local.acknowledged) | set(remote.acknowledged)
        assert len(acknowledged) == len(local.acknowledged) + len(remote.acknowledged)
        assert acknowledged <= stored_offsets(fresh_redis, channel), "acknowledged is stored"
        got = await received_offsets(subscriber, channel, max(acknowledged))
        assert got == sorted(set(got)), "no repeat, in order"
        assert acknowledged <= set(got), "every acknowledged message reached the subscriber"
        await asyncio.gather(subscriber.close(), local.client.close(), remote.client.close())


def warnings_naming(replica: GatewayProcess, address: str) -> list[dict[str, Any]]:
    """The replica's warning log lines that name ``address``."""
    lines = []
    for line in replica.log.read_text(errors="replace").splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("level") == "warning" and address in entry.get("message", ""):
            lines.append(entry)
    return lines


async def test_an_unreachable_redis_is_logged_until_it_is_reached(
    gateways: Callable[..., list[GatewayProcess]],
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    replica = GatewayProcess("lonely", redis_url=f"redis://:hunter2@{address}/0")
    replica.launch()
    redis = RedisServer(port, password="hunter2")
    try:
        started = time.monotonic()
        await wait_until(
            lambda: bool(warnings_naming(replica, address)), 5, "a warning naming Redis"
        )
        print(f"first warning {time.monotonic() - started:.2f}s after start")
        await wait_until(
            lambda: len(retries(replica, address)) >= 5, 10, "warnings at each failed retry"
        )
        delays = [entry["retry_in"] for entry in retries(replica, address)[:5]]
        # capped exponential backoff with full jitter: the n-th delay is below 0.05 * 2^n
        ceilings = [min(2.0, 0.05 * 2**n) for n in range(5)]
        assert all(d <= c + 0.005 for d, c in zip(delays, ceilings, strict=True)), delays
        assert await status(replica) == 503

        await asyncio.to_thread(redis.start)
        await wait_for_status(replica, 200, RECOVERY_BOUND)
        await wait_until(
            lambda: any("reconnected" in e["message"] for e in warnings_naming(replica, address)),
            5,
            "the reconnection logged",
        )
        assert "hunter2" not in replica.log.read_text(errors="replace")
    finally:
        replica.kill()
        redis.kill()


def retries(replica: GatewayProcess, address: str) -> list[dict[str, Any]]:
    """The failed attempts of one link to reach Redis, with the delay before the next."""
    found = []
    for entry in warnings_naming(replica, address):
        fields = dict(part.split("=", 1) for part in entry["message"].split() if "=" in part)
        if fields.get("link") == "pubsub" and "retry_in" in fields:
            found.append({**entry, "retry_in": float(fields["retry_in"].rstrip("s"))})
    return found
