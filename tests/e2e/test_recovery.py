"""Nothing lost, across real replicas and a real redis-server that may die."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer

NAMESPACES = json.dumps(
    {
        "small": {"history_size": 5},
        "durable": {"history_size": 1000},
        "room": {"presence": True, "join_leave": True},
    }
)


async def publish_batch(client: ProtocolClient, channel: str, values: list[Any]) -> list[int]:
    tag = f"b{id(values)}-"
    await client.send(
        "\n".join(
            orjson.dumps(
                {"op": "publish", "id": f"{tag}{i}", "channel": channel, "data": v}
            ).decode()
            for i, v in enumerate(values)
        )
    )
    offsets = []
    for index in range(len(values)):
        reply = await client.expect(lambda f, i=index: f.get("id") == f"{tag}{i}")
        assert reply["op"] == "published", reply
        offsets.append(reply["offset"])
    return offsets


async def test_recovery_on_another_replica(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    first, second = gateways(2, redis_url=redis_server.url)
    async with await ProtocolClient.connect(second.ws_url) as publisher:
        reader = await ProtocolClient.connect(first.ws_url)
        subscribed = await reader.subscribe("recover:x")
        await publish_batch(publisher, "recover:x", ["a", "b"])
        seen = await reader.messages(2)
        await reader.close()
        missed = [f"m{n}" for n in range(7)]
        await publish_batch(publisher, "recover:x", missed)
        async with await ProtocolClient.connect(second.ws_url) as back:
            since = {"offset": seen[-1]["offset"], "epoch": subscribed["epoch"]}
            reply = await back.subscribe("recover:x", since=since)
            assert reply["recovered"] is True
            received = await back.messages(7)
            assert [m["data"] for m in received] == missed
            assert [m["offset"] for m in received] == list(range(3, 10))
            await publish_batch(publisher, "recover:x", ["live"])
            [live] = await back.messages(1)
            assert live["data"] == "live" and live["offset"] == 10


async def test_gap_beyond_the_retained_window_is_not_recovered(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    first, second = gateways(2, redis_url=redis_server.url, namespaces=NAMESPACES)
    async with await ProtocolClient.connect(second.ws_url) as publisher:
        reader = await ProtocolClient.connect(first.ws_url)
        subscribed = await reader.subscribe("small:gap")
        await publish_batch(publisher, "small:gap", [0])
        [seen] = await reader.messages(1)
        await reader.close()
        await publish_batch(publisher, "small:gap", list(range(1, 9)))
        async with await ProtocolClient.connect(first.ws_url) as back:
            since = {"offset": seen["offset"], "epoch": subscribed["epoch"]}
            reply = await back.subscribe("small:gap", since=since)
            assert reply["recovered"] is False and reply["offset"] == 9
            history = await back.request("history", channel="small:gap")
            assert [m["offset"] for m in history["messages"]] == [5, 6, 7, 8, 9]


async def test_concurrent_publishers_on_three_replicas_get_every_offset_once(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    replicas = gateways(3, redis_url=redis_server.url, rate=0)
    reader = await ProtocolClient.connect(replicas[0].ws_url)
    await reader.subscribe("race:1")
    publishers = [await ProtocolClient.connect(r.ws_url) for r in replicas]
    per_publisher = 150
    try:
        results = await asyncio.gather(
            *(
                publish_batch(p, "race:1", [f"{i}-{n}" for n in range(per_publisher)])
                for i, p in enumerate(publishers)
            )
        )
        total = per_publisher * len(publishers)
        assert sorted(o for offsets in results for o in offsets) == list(range(1, total + 1))
        for offsets in results:
            assert offsets == sorted(offsets), "one publisher's messages keep their order"
        received = await reader.messages(total, timeout=30)
        assert [m["offset"] for m in received] == list(range(1, total + 1))
    finally:
        await asyncio.gather(*(p.close() for p in publishers), reader.close())


async def test_redis_killed_and_restarted_loses_nothing_acknowledged(
    gateways: Callable[..., list[GatewayProcess]],
) -> None:
    redis = RedisServer(None, "--appendonly", "yes", "--appendfsync", "always")
    redis.start()
    try:
        receiving, publishing = gateways(2, redis_url=redis.url, namespaces=NAMESPACES, rate=0)
        subscriber = await ProtocolClient.connect(receiving.ws_url)
        publisher = await ProtocolClient.connect(publishing.ws_url)
        await subscriber.subscribe("durable:1")
        acknowledged: dict[int, int] = {}
        failures = 0
        killed = restarted = False
        deadline = time.monotonic() + 60
        n = 0
        while len(acknowledged) < 200 and time.monotonic() < deadline:
            reply = await publisher.request("publish", channel="durable:1", data=n)
            if reply["op"] == "published":
                acknowledged[reply["offset"]] = n
            else:
                assert reply["code"] == "unavailable", reply
                failures += 1
                if killed and not restarted:
                    redis.start()
                    restarted = True
                await wait_until(publishing.ready, 20, "the publishing replica to be ready")
            n += 1
            if len(acknowledged) == 60 and not killed:
                redis.kill()
                killed = True
        assert killed and restarted and failures >= 1
        assert len(acknowledged) >= 200
        newest = max(acknowledged)

        async def drain_inbox() -> bool:
            try:
                await subscriber.expect(lambda f: f.get("offset") == newest, timeout=0.2)
            except TimeoutError:
                return False
            return True

        await wait_until(drain_inbox, 30, "the subscriber to catch up")
        received = [f for f in subscriber.inbox if f.get("op") == "message"]
        offsets = [m["offset"] for m in received] + [newest]
        assert offsets == list(range(offsets[0], newest + 1)), "no hole, no repeat"
        data_by_offset = {m["offset"]: m["data"] for m in received}
        data_by_offset[newest] = acknowledged[newest]
        for offset, value in acknowledged.items():
            assert data_by_offset.get(offset) == value, f"acknowledged offset {offset} lost"
        await asyncio.gather(subscriber.close(), publisher.close())
    finally:
        redis.kill()


async def test_killed_replica_leaves_no_ghosts(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    doomed, survivor = gateways(
        2, redis_url=redis_server.url, namespaces=NAMESPACES, presence_ttl=1.5
    )
    watcher = await ProtocolClient.connect(survivor.ws_url)
    await watcher.subscribe("room:ghost")
    ghost = await ProtocolClient.connect(doomed.ws_url)
    await ghost.subscribe("room:ghost")
    join = await watcher.expect(lambda f: f["op"] == "join" and f["client"] == ghost.client_id)
    assert join["channel"] == "room:ghost"
    presence = await watcher.request("presence", channel="room:ghost")
    assert set(presence["clients"]) == {watcher.client_id, ghost.client_id}

    doomed.kill()
    leave = await watcher.expect(
        lambda f: f["op"] == "leave" and f["client"] == ghost.client_id, timeout=15
    )
    assert leave["channel"] == "room:ghost"
    presence = await watcher.request("presence", channel="room:ghost")
    assert set(presence["clients"]) == {watcher.client_id}
    await watcher.publish("room:ghost", "still here")
    [message] = await watcher.messages(1)
    assert message["data"] == "still here"
    await watcher.close()


async def test_sigterm_drains_clients_to_the_other_replica(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    draining, staying = gateways(2, redis_url=redis_server.url, drain_seconds=1.5)
    clients = [await ProtocolClient.connect(draining.ws_url) for _ in range(12)]
    positions = []
    for client in clients:
        reply = await client.subscribe("drain:1")
        positions.append({"offset": reply["offset"], "epoch": reply["epoch"]})

    draining.signal(signal.SIGTERM)
    async with httpx.AsyncClient(base_url=draining.http_url) as http:

        async def not_ready() -> bool:
            return (await http.get("/readyz")).status_code == 503

        await wait_until(not_ready, 5, "/readyz 503 on the draining replica")
    with pytest.raises(InvalidStatus) as refused:
        await ProtocolClient.connect(draining.ws_url)
    assert refused.value.response.status_code == 503

    closes: list[tuple[int | None, float]] = []

    async def await_close(client: ProtocolClient) -> None:
        code, frames = await client.closed(timeout=15)
        closes.append((code, time.monotonic()))
        assert {
            "op": "disconnect",
            "code": 1012,
            "reason": "replica restarting",
            "reconnect": True,
        } in frames

    async with await ProtocolClient.connect(staying.ws_url) as publisher:
        watchers = asyncio.gather(*(await_close(c) for c in clients))
        await publish_batch(publisher, "drain:1", ["during"])
        await watchers
        assert {code for code, _ in closes} == {1012}
        arrival = [at for _, at in closes]
        assert max(arrival) - min(arrival) >= 0.5, "closes are spread over the drain window"
        assert draining.process is not None
        assert await asyncio.to_thread(draining.process.wait, 20) == 0

        await publish_batch(publisher, "drain:1", ["after"])
        for client, position in zip(clients[:3], positions[:3], strict=True):
            del client
            async with await ProtocolClient.connect(staying.ws_url) as back:
                reply = await back.subscribe("drain:1", since=position)
                assert reply["recovered"] is True
                got = [m["data"] for m in await back.messages(2)]
                assert got == ["during", "after"]
