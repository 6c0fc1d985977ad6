"""`gateway.Publisher` from a separate process (tests/apps/worker.py), beside two real
replicas on a real Redis and on a Redis Cluster: what it publishes takes the next offsets
between the clients' own publications, reaches subscribers on both replicas, and is
recovered from history like any other message."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway import Publisher, load_settings
from gateway.settings import ConfigError
from gateway.wire.errors import GatewayError
from tests.support.client import ProtocolClient
from tests.support.gateways import REPO_ROOT, GatewayProcess, gateway_env
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer


async def run_worker(url: str, channel: str, count: int, *flags: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.apps.worker",
        url,
        channel,
        str(count),
        *flags,
        cwd=REPO_ROOT,
        env=gateway_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def interleaved(first: GatewayProcess, second: GatewayProcess, url: str, *flags: str) -> None:
    channel = "chat:worker" + ("-cluster" if flags else "")
    async with (
        await ProtocolClient.connect(first.ws_url) as one,
        await ProtocolClient.connect(second.ws_url) as two,
    ):
        await one.subscribe(channel)
        joined = await two.subscribe(channel)
        before = await one.publish(channel, "client before")
        positions = await run_worker(url, channel, 5, *flags)
        after = await two.publish(channel, "client after")
        offsets = [before["offset"], *(p["offset"] for p in positions), after["offset"]]
        assert offsets == list(range(joined["offset"] + 1, joined["offset"] + 8))
        assert {p["epoch"] for p in positions} == {joined["epoch"]}
        expected = ["client before", *({"worker": n} for n in range(5)), "client after"]
        for subscriber in (one, two):
            messages = await subscriber.messages(7, channel)
            assert [m["data"] for m in messages] == expected
            assert [m["offset"] for m in messages] == offsets
            assert all("from" not in m for m in messages[1:6])
    async with await ProtocolClient.connect(second.ws_url) as late:
        since = {"offset": before["offset"], "epoch": joined["epoch"]}
        reply = await late.subscribe(channel, since=since)
        assert reply["recovered"] is True
        missed = await late.messages(6, channel)
        assert [m["data"] for m in missed] == expected[1:]


async def test_a_worker_publishes_between_clients_and_every_replica_delivers_and_recovers(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    first, second = gateways(2, redis_url=redis_server.url)
    await interleaved(first, second, redis_server.url)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    cluster.start()
    yield cluster
    cluster.stop()


async def test_a_worker_publishes_through_a_redis_cluster(
    gateways: Callable[..., list[GatewayProcess]], redis_cluster: RedisCluster
) -> None:
    first, second = gateways(2, redis_url=redis_cluster.url, redis_cluster=True)
    await interleaved(first, second, redis_cluster.url, "--cluster")


async def test_the_namespaces_history_options_come_from_the_settings(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    config = REPO_ROOT / "test-artifacts" / "publisher-namespaces.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text("strict_namespaces = true\n[namespaces.feed]\nhistory_size = 0\n")
    settings = load_settings(config, redis_url=redis_server.url)
    async with Publisher(settings=settings) as publisher:
        assert await publisher.publish("feed:x", {"no": "history"}) is None
        with pytest.raises(GatewayError) as unknown:
            await publisher.publish("elsewhere:x", 1)
        assert unknown.value.code.value == "unknown_namespace"
        with pytest.raises(GatewayError) as bad:
            await publisher.publish("bad channel", 1)
        assert bad.value.code.value == "bad_request"
        offsets = await publisher.broadcast(["feed:y", "feed:z"], 1)
        assert offsets == {}


async def test_a_publisher_without_redis_says_so() -> None:
    with pytest.raises(ConfigError, match="Publisher needs Redis"):
        Publisher(settings=load_settings(redis_url=None))
    unreachable = load_settings(redis_url="redis://127.0.0.1:1/0", broker_timeout=0.5)
    with pytest.raises(GatewayError) as down:
        async with Publisher(settings=unreachable):
            pass
    assert down.value.code.value == "unavailable" and "127.0.0.1:1" in down.value.message
