"""Real replicas (``gateway serve`` subprocesses) sharing one real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer


async def test_message_crosses_replicas(cluster: list[GatewayProcess]) -> None:
    first, second = cluster
    async with (
        await ProtocolClient.connect(first.ws_url) as alice,
        await ProtocolClient.connect(second.ws_url) as bob,
    ):
        assert alice.welcome["node"] == "m1" and bob.welcome["node"] == "m2"
        await alice.subscribe("cross:room")
        await bob.subscribe("cross:room")
        await bob.publish("cross:room", {"text": "from m2"})
        await alice.publish("cross:room", {"text": "from m1"})
        for client in (alice, bob):
            received = await client.messages(2)
            by_text = {m["data"]["text"]: m["from"]["client"] for m in received}
            assert by_text == {"from m2": bob.client_id, "from m1": alice.client_id}


async def test_order_of_one_publisher_across_replicas(cluster: list[GatewayProcess]) -> None:
    first, second = cluster
    async with (
        await ProtocolClient.connect(first.ws_url) as receiver,
        await ProtocolClient.connect(second.ws_url) as sender,
    ):
        await receiver.subscribe("order:1")
        lines = [
            orjson.dumps({"op": "publish", "channel": "order:1", "data": n}).decode()
            for n in range(500)
        ]
        for start in range(0, 500, 50):
            await sender.send("\n".join(lines[start : start + 50]))
        received = await receiver.messages(500, timeout=30)
        assert [m["data"] for m in received] == list(range(500))


async def test_unsubscribe_across_replicas(cluster: list[GatewayProcess]) -> None:
    first, second = cluster
    async with (
        await ProtocolClient.connect(first.ws_url) as receiver,
        await ProtocolClient.connect(second.ws_url) as sender,
    ):
        await receiver.subscribe("unsub:a")
        await receiver.subscribe("unsub:b")
        await receiver.request("unsubscribe", channel="unsub:a")
        await sender.publish("unsub:a", "dropped")
        await sender.publish("unsub:b", "kept")
        [message] = await receiver.messages(1)
        assert message["channel"] == "unsub:b"
        assert not [f for f in receiver.inbox if f.get("op") == "message"]


async def test_one_redis_subscription_per_replica_and_none_after_close(
    cluster: list[GatewayProcess], redis_server: RedisServer
) -> None:
    topic = "gw:{count:room}"
    clients = [
        await ProtocolClient.connect(replica.ws_url) for replica in cluster for _ in range(5)
    ]
    for client in clients:
        await client.subscribe("count:room")
    assert redis_server.numsub(topic) == 2
    await asyncio.gather(*(client.close() for client in clients))
    await wait_until(lambda: redis_server.numsub(topic) == 0, 10, "Redis subscriptions released")


async def test_abrupt_disconnect_releases_subscriptions(
    cluster: list[GatewayProcess], redis_server: RedisServer
) -> None:
    client = await ProtocolClient.connect(cluster[0].ws_url)
    await client.subscribe("abrupt:1")
    assert redis_server.numsub("gw:{abrupt:1}") == 1
    client.connection.transport.abort()
    await wait_until(lambda: redis_server.numsub("gw:{abrupt:1}") == 0, 10, "released")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{broken", "bad_request"),
        ("42", "bad_request"),
        ('{"op":"warp","id":1}', "unknown_op"),
        ('{"op":"publish","id":2,"channel":"bad channel","data":1}', "bad_request"),
        ('{"op":"ping","id":"' + "z" * 65 + '"}', "bad_request"),
        ('{"op":"unsubscribe","id":3,"channel":"nope"}', "not_subscribed"),
    ],
)
async def test_rejections_on_a_replica(
    cluster: list[GatewayProcess], frame: str, code: str
) -> None:
    async with await ProtocolClient.connect(cluster[0].ws_url) as client:
        await client.send(frame)
        error = await client.expect(lambda f: f["op"] == "error")
        assert error["code"] == code
        assert (await client.request("ping"))["op"] == "pong"


async def test_binary_and_oversized_frames_on_a_replica(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    [replica] = gateways(1, redis_url=redis_server.url, max_message_bytes=4096)
    async with await ProtocolClient.connect(replica.ws_url) as client:
        await client.send(b"\x01\x02")
        assert (await client.expect(lambda f: f["op"] == "error"))["code"] == "bad_request"
        await client.subscribe("s1")
        error = await client.request("subscribe", channel="s1")
        assert error["code"] == "already_subscribed"
        await client.send("x" * 5000)
        code, _ = await client.closed()
        assert code == 1009


async def test_slow_consumer_4008_while_neighbour_on_same_replica_gets_all(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    receiving, publishing = gateways(2, redis_url=redis_server.url, max_queue=16, rate=0)
    slow = await ProtocolClient.connect(receiving.ws_url, max_queue=1)
    async with (
        await ProtocolClient.connect(receiving.ws_url) as neighbour,
        await ProtocolClient.connect(publishing.ws_url) as publisher,
    ):
        await slow.subscribe("slow:hose")
        await neighbour.subscribe("slow:hose")
        blob = "y" * 32_000
        count = 400
        for index in range(count):
            await publisher.send({"op": "publish", "channel": "slow:hose", "data": [index, blob]})
        received = await neighbour.messages(count, timeout=60)
        assert [m["data"][0] for m in received] == list(range(count))
        code, frames = await slow.closed(timeout=10)
        assert code == 4008
        assert {
            "op": "disconnect",
            "code": 4008,
            "reason": "slow consumer",
            "reconnect": True,
        } in frames


async def test_plain_text_lines_reach_every_replica(cluster: list[GatewayProcess]) -> None:
    first, second = cluster
    async with (
        connect(f"{first.plain_url}?channel=plain:room") as one,
        connect(f"{second.plain_url}?channel=plain:room") as two,
        await ProtocolClient.connect(second.ws_url) as protocol_client,
    ):
        await protocol_client.subscribe("plain:room")
        await one.send("hello from one")
        assert await asyncio.wait_for(two.recv(), 5) == "hello from one"
        assert await asyncio.wait_for(one.recv(), 5) == "hello from one"
        [message] = await protocol_client.messages(1)
        assert message["data"] == "hello from one" and message["from"]["client"]
        await protocol_client.publish("plain:room", {"json": [1, 2]})
        await protocol_client.publish("plain:room", "bare text")
        assert orjson.loads(await asyncio.wait_for(one.recv(), 5)) == {"json": [1, 2]}
        assert await asyncio.wait_for(one.recv(), 5) == "bare text"
        assert await asyncio.wait_for(two.recv(), 5) == '{"json":[1,2]}'


async def test_plain_text_binary_frame_closes_with_1003(cluster: list[GatewayProcess]) -> None:
    async with connect(cluster[0].plain_url) as client:
        await client.send(b"\x00")
        await asyncio.wait_for(client.wait_closed(), 5)
        assert client.protocol.close_rcvd is not None
        assert client.protocol.close_rcvd.code == 1003


async def test_plain_text_bad_channel_is_refused_with_400(cluster: list[GatewayProcess]) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{cluster[0].plain_url}?channel=bad%20name"):
            pass
    assert refused.value.response.status_code == 400


async def test_readyz_follows_redis(
    gateways: Callable[..., list[GatewayProcess]], fresh_redis: RedisServer
) -> None:
    [replica] = gateways(1, redis_url=fresh_redis.url)
    async with httpx.AsyncClient(base_url=replica.http_url) as http:

        async def status() -> int:
            return (await http.get("/readyz")).status_code

        assert await status() == 200
        async with await ProtocolClient.connect(replica.ws_url) as client:
            await client.subscribe("outage:1")
            fresh_redis.kill()
            await wait_until(lambda: _is(status, 503), 10, "/readyz 503")
            error = await client.request("publish", channel="outage:1", data="lost?")
            assert error["op"] == "error" and error["code"] == "unavailable"
            fresh_redis.start()
            await wait_until(lambda: _is(status, 200), 15, "/readyz 200 again")
            await client.publish("outage:1", "back")
            [message] = await client.messages(1)
            assert message["data"] == "back"


async def _is(status: Callable[[], Any], expected: int) -> bool:
    return bool(await status() == expected)
