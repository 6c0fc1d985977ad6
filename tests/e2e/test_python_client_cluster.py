"""The asyncio client against real replicas on a real redis-server, one of them killed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway_client import GatewayClient, Message, Subscription
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer


def fast_client(urls: list[str]) -> GatewayClient:
    return GatewayClient(urls, min_delay=0.02, max_delay=0.2, request_timeout=5)


async def take(subscription: Subscription, count: int, timeout: float = 10) -> list[Message]:
    async with asyncio.timeout(timeout):
        return [await anext(subscription) for _ in range(count)]


async def test_killed_replica_is_replaced_and_subscriptions_come_back(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    doomed, survivor = gateways(2, redis_url=redis_server.url)
    async with (
        fast_client([doomed.ws_url, survivor.ws_url]) as client,
        await ProtocolClient.connect(survivor.ws_url) as publisher,
    ):
        connections: list[dict[str, Any]] = []
        client.on("connected", connections.append)
        subscription = client.subscribe("pyc:kill")
        await subscription.subscribed()
        assert client.welcome is not None and client.welcome["node"] == doomed.node_id
        await publisher.publish("pyc:kill", "before")
        assert [m.data for m in await take(subscription, 1)] == ["before"]
        resubscribed = asyncio.ensure_future(_resubscribed(subscription))
        doomed.kill()
        await resubscribed
        assert connections[-1]["node"] == survivor.node_id
        await publisher.publish("pyc:kill", "after")
        assert [m.data for m in await take(subscription, 1)] == ["after"]


async def test_messages_published_while_away_are_recovered_once_in_order(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    doomed, survivor = gateways(2, redis_url=redis_server.url)
    async with (
        TcpProxy(None) as way_back,
        fast_client([doomed.ws_url, way_back.ws_url]) as client,
        await ProtocolClient.connect(survivor.ws_url) as publisher,
    ):
        subscription = client.subscribe("pyc:recover")
        await subscription.subscribed()
        await publisher.publish("pyc:recover", 0)
        assert [m.data for m in await take(subscription, 1)] == [0]
        disconnected = asyncio.Event()
        client.on("disconnected", lambda _: disconnected.set())
        resubscribed = asyncio.ensure_future(_resubscribed(subscription))
        doomed.kill()
        await asyncio.wait_for(disconnected.wait(), 10)
        for n in (1, 2, 3):
            await publisher.publish("pyc:recover", n)
        way_back.target = survivor.port
        detail = await resubscribed
        assert detail["recovered"] is True and detail["missed"] == 3
        await publisher.publish("pyc:recover", 4)
        received = await take(subscription, 4)
        assert [m.data for m in received] == [1, 2, 3, 4]
        offsets = [m.offset for m in received]
        assert offsets == sorted(set(offsets)) and len(offsets) == 4


async def _resubscribed(subscription: Subscription) -> dict[str, Any]:
    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def on_subscribed(detail: dict[str, Any]) -> None:
        if detail["resubscribed"] and not done.done():
            done.set_result(detail)

    off = subscription.on("subscribed", on_subscribed)
    try:
        return await asyncio.wait_for(done, 15)
    finally:
        off()


async def test_cluster_fixture_replicas_see_each_others_publications_through_the_client(
    cluster: list[GatewayProcess],
) -> None:
    first, second = cluster
    async with fast_client([first.ws_url]) as alice, fast_client([second.ws_url]) as bob:
        subscription = bob.subscribe("pyc:cross")
        await subscription.subscribed()
        await alice.publish("pyc:cross", {"n": 1})
        [message] = await take(subscription, 1)
        assert message.data == {"n": 1} and message.client == (await alice.connected())["client"]
        await wait_until(lambda: bob.state == "connected", 1, "still connected")
