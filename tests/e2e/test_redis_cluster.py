"""Replicas on a real three-master Redis Cluster: sharded pub/sub, history per shard."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until
from tests.support.redis_cluster import RedisCluster


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    cluster.start()
    yield cluster
    cluster.stop()


def channels_on_every_shard(cluster: RedisCluster) -> dict[int, str]:
    """One channel name per master, keyed by the master's port."""
    found: dict[int, str] = {}
    with cluster.client() as client:
        for index in range(200):
            channel = f"shard:{index}"
            node = client.get_node_from_key(f"gw:{{{channel}}}")
            found.setdefault(node.port, channel)
            if len(found) == len(cluster.ports):
                return found
    raise AssertionError("no channel name found for every shard")


def shard_subscribers(port: int, topic: str) -> int:
    with redis.Redis(host="127.0.0.1", port=port) as node:
        reply = node.execute_command("PUBSUB", "SHARDNUMSUB", topic)
        return int(reply[1])


def classic_subscribers(port: int, topic: str) -> int:
    with redis.Redis(host="127.0.0.1", port=port) as node:
        return int(node.execute_command("PUBSUB", "NUMSUB", topic)[1])


async def test_messages_and_history_cross_replicas_on_every_shard(
    gateways: Callable[..., list[GatewayProcess]], redis_cluster: RedisCluster
) -> None:
    first, second = gateways(2, redis_url=redis_cluster.url, redis_cluster=True)
    by_port = channels_on_every_shard(redis_cluster)
    async with (
        await ProtocolClient.connect(first.ws_url) as reader,
        await ProtocolClient.connect(second.ws_url) as writer,
    ):
        for port, channel in by_port.items():
            subscribed = await reader.subscribe(channel)
            await writer.subscribe(channel)
            topic = f"gw:{{{channel}}}"
            assert shard_subscribers(port, topic) == 2, "one sharded subscription per replica"
            for other in redis_cluster.ports:
                assert classic_subscribers(other, topic) == 0
            offsets = [(await writer.publish(channel, n))["offset"] for n in range(3)]
            assert offsets == [1, 2, 3]
            received = await reader.messages(3, channel=channel)
            assert [m["data"] for m in received] == [0, 1, 2]
            assert {m["epoch"] for m in received} == {subscribed["epoch"]}
            history = await reader.request("history", channel=channel)
            assert [m["offset"] for m in history["messages"]] == [1, 2, 3]


async def test_recovery_on_a_cluster(
    gateways: Callable[..., list[GatewayProcess]], redis_cluster: RedisCluster
) -> None:
    first, second = gateways(2, redis_url=redis_cluster.url, redis_cluster=True)
    for channel in channels_on_every_shard(redis_cluster).values():
        channel = f"{channel}:rec"
        async with await ProtocolClient.connect(second.ws_url) as writer:
            reader = await ProtocolClient.connect(first.ws_url)
            subscribed = await reader.subscribe(channel)
            await writer.publish(channel, "seen")
            [seen] = await reader.messages(1)
            await reader.close()
            for n in range(4):
                await writer.publish(channel, n)
            async with await ProtocolClient.connect(first.ws_url) as back:
                reply = await back.subscribe(
                    channel, since={"offset": seen["offset"], "epoch": subscribed["epoch"]}
                )
                assert reply["recovered"] is True
                assert [m["data"] for m in await back.messages(4)] == [0, 1, 2, 3]


def node_ids(cluster: RedisCluster) -> dict[int, tuple[str, int]]:
    """Port -> (node id, number of slots) for every master."""
    found: dict[int, tuple[str, int]] = {}
    with redis.Redis(host="127.0.0.1", port=cluster.ports[0]) as client:
        for line in client.execute_command("CLUSTER", "NODES").decode().splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            slots = 0
            for part in fields[8:]:
                if "-" in part and not part.startswith("["):
                    low, high = part.split("-")
                    slots += int(high) - int(low) + 1
                elif part.isdigit():
                    slots += 1
            found[port] = (fields[0], slots)
    return found


async def test_a_moved_slot_is_followed_without_losing_messages(
    gateways: Callable[..., list[GatewayProcess]],
) -> None:
    cluster = RedisCluster()
    cluster.start()
    try:
        first, second = gateways(2, redis_url=cluster.url, redis_cluster=True)
        source_port, channel = next(iter(channels_on_every_shard(cluster).items()))
        target_port = next(port for port in cluster.ports if port != source_port)
        ids = node_ids(cluster)
        reader = await ProtocolClient.connect(first.ws_url)
        writer = await ProtocolClient.connect(second.ws_url)
        await reader.subscribe(channel)
        acknowledged = [(await writer.publish(channel, n))["offset"] for n in range(20)]

        reshard = await asyncio.create_subprocess_exec(
            cluster.cli,
            "--cluster",
            "reshard",
            f"127.0.0.1:{source_port}",
            "--cluster-from",
            ids[source_port][0],
            "--cluster-to",
            ids[target_port][0],
            "--cluster-slots",
            str(ids[source_port][1]),
            "--cluster-yes",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        n = 20
        deadline = time.monotonic() + 60
        while reshard.returncode is None and time.monotonic() < deadline:
            reply = await writer.request("publish", channel=channel, data=n)
            if reply["op"] == "published":
                acknowledged.append(reply["offset"])
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reshard.wait()), 0.01)
        assert await reshard.wait() == 0, (await reshard.stderr.read()).decode()  # type: ignore[union-attr]
        assert node_ids(cluster)[source_port][1] == 0

        async def more_published() -> bool:
            reply = await writer.request("publish", channel=channel, data="after")
            if reply["op"] == "published":
                acknowledged.append(reply["offset"])
            return shard_subscribers(target_port, f"gw:{{{channel}}}") == 1

        await wait_until(more_published, 20, "the reader's replica to follow the slot")
        assert shard_subscribers(source_port, f"gw:{{{channel}}}") == 0
        for _ in range(5):
            acknowledged.append((await writer.publish(channel, "final"))["offset"])
        received = await reader.messages(len(acknowledged), channel=channel, timeout=30)
        offsets = [m["offset"] for m in received]
        assert offsets == sorted(acknowledged) == list(range(1, len(acknowledged) + 1))
        await asyncio.gather(reader.close(), writer.close())
    finally:
        cluster.stop()
