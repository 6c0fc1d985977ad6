"""A publish whose reply is lost is sent again by the Python client, with its idempotency
key, and delivered once: when its replica is killed (SIGKILL) and the resend goes to
another, and when Redis restarts under it. Real replicas, a real redis-server, and a
loopback proxy that stops the replies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from gateway_client import GatewayClient
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer

FAST = {"min_delay": 0.05, "max_delay": 0.3, "request_timeout": 5.0}


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A redis-server that writes every command to its append-only file before answering,
    so that a restart (even after SIGKILL) keeps everything it acknowledged."""
    server = RedisServer(None, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    yield server
    server.kill()


async def warm_up(replica: GatewayProcess, channel: str) -> None:
    """Have the replica load its scripts into Redis and open several pooled connections,
    so that the publish under test needs no other round trip first (a script's first use
    asks Redis to load it, a new connection waits for the answers to its handshake)."""
    clients = [await ProtocolClient.connect(replica.ws_url) for _ in range(4)]
    try:
        await clients[0].publish(f"{channel}:warm", "warm")
        await asyncio.gather(*(c.request("history", channel=channel) for c in clients))
    finally:
        for c in clients:
            await c.close()


async def test_a_publish_in_flight_when_its_replica_is_killed_is_delivered_once(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    victim, survivor = gateways(2, redis_url=redis_server.url)
    channel = "once:killed"
    async with (
        TcpProxy(victim.port) as proxy,
        await ProtocolClient.connect(survivor.ws_url) as reader,
        GatewayClient([proxy.ws_url, survivor.ws_url], **FAST) as client,
    ):
        await reader.subscribe(channel)
        welcome = await client.connected()
        assert welcome["node"] == victim.node_id
        proxy.blackhole(upstream=False)  # the publish reaches the victim; its reply does not
        publishing = asyncio.create_task(client.publish(channel, "once"))
        [delivered] = await reader.messages(1)
        victim.kill()
        proxy.cut()
        reply = await asyncio.wait_for(publishing, 20)
        assert client.welcome is not None and client.welcome["node"] == survivor.node_id
        assert reply["offset"] == delivered["offset"]
        await client.publish(channel, "after")
        [after] = await reader.messages(1)
        assert (after["data"], after["offset"]) == ("after", delivered["offset"] + 1)
        assert reader.inbox == []


async def test_a_publish_whose_reply_redis_lost_in_a_restart_is_delivered_once(
    gateways: Callable[..., list[GatewayProcess]], durable_redis: RedisServer
) -> None:
    async with TcpProxy(durable_redis.port) as redis_path:
        # started from a thread: the proxy forwards in this event loop meanwhile
        [publisher_side] = await asyncio.to_thread(gateways, 1, redis_url=redis_path.redis_url)
        [reader_side] = gateways(1, redis_url=durable_redis.url)
        channel = "once:restart"
        async with (
            await ProtocolClient.connect(reader_side.ws_url) as reader,
            GatewayClient(publisher_side.ws_url, **FAST) as client,
        ):
            await reader.subscribe(channel)
            await client.connected()
            await warm_up(publisher_side, channel)
            redis_path.blackhole(upstream=False)  # Redis runs the script; the reply is lost
            publishing = asyncio.create_task(client.publish(channel, "once"))
            [delivered] = await reader.messages(1)
            durable_redis.kill()
            redis_path.cut()
            redis_path.heal()
            durable_redis.start()
            reply = await asyncio.wait_for(publishing, 30)
            assert reply["offset"] == delivered["offset"]
            await client.publish(channel, "after")
            [after] = await reader.messages(1, timeout=20)
            assert (after["data"], after["offset"]) == ("after", delivered["offset"] + 1)
            assert reader.inbox == []


async def test_a_publish_refused_while_redis_is_down_is_sent_again_and_delivered_once(
    gateways: Callable[..., list[GatewayProcess]], fresh_redis: RedisServer
) -> None:
    publisher_side, reader_side = gateways(2, redis_url=fresh_redis.url)
    channel = "once:down"
    async with (
        await ProtocolClient.connect(reader_side.ws_url) as reader,
        GatewayClient(publisher_side.ws_url, **FAST) as client,
    ):
        await reader.subscribe(channel)
        await client.connected()
        refusals: list[object] = []
        fresh_redis.kill()
        async with await ProtocolClient.connect(publisher_side.ws_url) as probe:
            refused = await probe.request("publish", channel=channel, data="probe")
            assert refused["op"] == "error" and refused["code"] == "unavailable"
            refusals.append(refused)
        publishing = asyncio.create_task(client.publish(channel, "once"))
        fresh_redis.start()
        reply = await asyncio.wait_for(publishing, 30)
        [delivered] = await reader.messages(1, timeout=20)
        assert delivered["data"] == "once" and reply["offset"] == delivered["offset"]
        await client.publish(channel, "after")
        [after] = await reader.messages(1, timeout=20)
        assert after["data"] == "after"
        assert reader.inbox == []
