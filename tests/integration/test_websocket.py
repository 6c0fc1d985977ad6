"""Protocol v1 over /ws against one in-process replica (memory broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.client import ProtocolClient
from tests.support.hub import subscribers as local_subscribers
from tests.support.inprocess import LocalGateway
from tests.support.net import wait_until


async def test_welcome_comes_first(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        welcome = client.welcome
        assert welcome["op"] == "welcome" and welcome["version"] == 1
        assert welcome["node"] == "test-node" and welcome["user"] is None
        assert welcome["ping"] == 25 and len(welcome["client"]) >= 12


async def test_offered_subprotocol_is_echoed(gateway: LocalGateway) -> None:
    async with connect(gateway.ws_url, subprotocols=["pubsub.v1"]) as websocket:  # type: ignore[list-item]
        assert websocket.subprotocol == "pubsub.v1"
    async with connect(gateway.ws_url) as websocket:
        assert websocket.subprotocol is None


async def test_publish_reaches_subscribers_with_from(gateway: LocalGateway) -> None:
    async with (
        await ProtocolClient.connect(gateway.ws_url) as alice,
        await ProtocolClient.connect(gateway.ws_url) as bob,
    ):
        subscribed = await alice.subscribe("chat:lobby")
        epoch = subscribed.pop("epoch")
        assert subscribed == {
            "op": "subscribed",
            "id": 1,
            "channel": "chat:lobby",
            "offset": 0,
            "recovered": False,
        }
        assert isinstance(epoch, str) and epoch
        published = await bob.publish("chat:lobby", {"text": "hi"})
        assert published == {"op": "published", "id": 1, "channel": "chat:lobby", "offset": 1}
        [message] = await alice.messages(1)
        assert message == {
            "op": "message",
            "channel": "chat:lobby",
            "data": {"text": "hi"},
            "offset": 1,
            "epoch": epoch,
            "from": {"client": bob.client_id, "user": None},
        }


async def test_replies_come_in_command_order(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        commands = [
            {"op": "subscribe", "id": "a", "channel": "c1"},
            {"op": "ping", "id": "b"},
            {"op": "publish", "id": "c", "channel": "c1", "data": 1},
            {"op": "nope", "id": "d"},
            {"op": "unsubscribe", "id": "e", "channel": "c1"},
            {"op": "unsubscribe", "id": "f", "channel": "c1"},
        ]
        await client.send("\n".join(orjson.dumps(c).decode() for c in commands))
        replies = [await client.expect(lambda f: "id" in f) for _ in commands]
        assert [r["id"] for r in replies] == ["a", "b", "c", "d", "e", "f"]
        assert [r["op"] for r in replies] == [
            "subscribed",
            "pong",
            "published",
            "error",
            "unsubscribed",
            "error",
        ]
        assert replies[3]["code"] == "unknown_op" and replies[5]["code"] == "not_subscribed"


async def test_unsubscribe_stops_delivery(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        await client.subscribe("a")
        await client.subscribe("b")
        await client.request("unsubscribe", channel="a")
        await client.publish("a", "not for me")
        await client.publish("b", "for me")
        [message] = await client.messages(1)
        assert message["channel"] == "b"
        assert [f for f in client.inbox if f["op"] == "message"] == []


async def test_per_publisher_order(serve: Callable[..., Any]) -> None:
    async with (
        serve(rate=0) as gateway,
        await ProtocolClient.connect(gateway.ws_url) as sub,
        await ProtocolClient.connect(gateway.ws_url) as pub,
    ):
        await sub.subscribe("seq")
        batch = "\n".join(
            orjson.dumps({"op": "publish", "channel": "seq", "data": n}).decode()
            for n in range(300)
        )
        await pub.send(batch)
        received = await sub.messages(300, timeout=20)
        assert [m["data"] for m in received] == list(range(300))


@pytest.mark.parametrize(
    ("frame", "code", "echoed_id"),
    [
        ("{not json", "bad_request", None),
        ("[1, 2]", "bad_request", None),
        ('"just a string"', "bad_request", None),
        ('{"op":"teleport","id":11}', "unknown_op", 11),
        ('{"id":12}', "bad_request", 12),
        ('{"op":"subscribe","id":13}', "bad_request", 13),
        ('{"op":"subscribe","id":14,"channel":"has space"}', "bad_request", 14),
        ('{"op":"subscribe","id":15,"channel":""}', "bad_request", 15),
        ('{"op":"publish","id":16,"channel":"c"}', "bad_request", 16),
        (
            '{"op":"publish","id":"' + "i" * 65 + '","channel":"c","data":1}',
            "bad_request",
            "i" * 65,
        ),
        ('{"op":"unsubscribe","id":17,"channel":"never"}', "not_subscribed", 17),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_stays(
    gateway: LocalGateway, frame: str, code: str, echoed_id: Any
) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        await client.send(frame)
        error = await client.expect(lambda f: f["op"] == "error")
        assert error["code"] == code and error.get("id") == echoed_id
        assert error["message"]
        assert (await client.request("ping"))["op"] == "pong"


async def test_binary_frame_is_refused_and_the_connection_stays(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        await client.send(b'{"op":"ping"}')
        error = await client.expect(lambda f: f["op"] == "error")
        assert error["code"] == "bad_request" and "binary" in error["message"]
        assert (await client.request("ping"))["op"] == "pong"


async def test_double_subscribe_is_refused(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        await client.subscribe("c")
        error = await client.request("subscribe", channel="c")
        assert error["op"] == "error" and error["code"] == "already_subscribed"
        assert local_subscribers(gateway.replica.hub, "c") == 1


async def test_too_many_subscriptions(serve: Callable[..., Any]) -> None:
    async with serve(max_subscriptions=2) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            await client.subscribe("a")
            await client.subscribe("b")
            error = await client.request("subscribe", channel="c")
            assert error["code"] == "too_many_subscriptions"
            await client.request("unsubscribe", channel="a")
            await client.subscribe("c")


async def test_frame_over_the_limit_closes_with_1009(serve: Callable[..., Any]) -> None:
    async with serve(max_message_bytes=1024) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            payload = orjson.dumps({"op": "publish", "channel": "c", "data": "x" * 2000}).decode()
            await client.send(payload)
            code, _ = await client.closed()
            assert code == 1009


async def test_publication_over_the_limit_is_too_large(serve: Callable[..., Any]) -> None:
    async with serve(max_message_bytes=200) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            error = await client.request("publish", channel="c", data="x" * 150)
            assert error["code"] == "too_large"


async def test_bad_input_costs_other_clients_nothing(gateway: LocalGateway) -> None:
    async with (
        await ProtocolClient.connect(gateway.ws_url) as good,
        await ProtocolClient.connect(gateway.ws_url) as bad,
        await ProtocolClient.connect(gateway.ws_url) as publisher,
    ):
        await good.subscribe("room")
        await bad.subscribe("room")
        for index in range(50):
            await bad.send(["{oops", "[]", '{"op":"x"}', b"\x00\x01"][index % 4])
            await publisher.send({"op": "publish", "channel": "room", "data": index})
        received = await good.messages(50)
        assert [m["data"] for m in received] == list(range(50))


async def test_closing_a_socket_releases_its_subscriptions(gateway: LocalGateway) -> None:
    client = await ProtocolClient.connect(gateway.ws_url)
    for channel in ("a", "b", "c"):
        await client.subscribe(channel)
    assert gateway.replica.hub.channel_count == 3
    await client.close()
    await wait_until(lambda: gateway.replica.hub.channel_count == 0, 5, "channels released")
    await wait_until(lambda: not gateway.replica.connections, 5, "connection forgotten")


async def test_slow_consumer_is_closed_with_4008_and_the_neighbour_gets_all(
    serve: Callable[..., Any],
) -> None:
    async with serve(max_queue=16, rate=0) as gateway:
        slow = await ProtocolClient.connect(gateway.ws_url, max_queue=1)
        async with (
            await ProtocolClient.connect(gateway.ws_url) as neighbour,
            await ProtocolClient.connect(gateway.ws_url) as publisher,
        ):
            await slow.subscribe("firehose")
            await neighbour.subscribe("firehose")
            blob = "x" * 32_000
            count = 400
            for index in range(count):
                await publisher.send(
                    {"op": "publish", "channel": "firehose", "data": [index, blob]}
                )
            received = await neighbour.messages(count, timeout=30)
            assert [m["data"][0] for m in received] == list(range(count))
            code, frames = await slow.closed(timeout=10)
            assert code == 4008
            disconnect = [f for f in frames if f["op"] == "disconnect"]
            assert disconnect == [
                {"op": "disconnect", "code": 4008, "reason": "slow consumer", "reconnect": True}
            ]
            assert gateway.replica.stats.slow_consumers == 1


async def test_health_and_readiness(gateway: LocalGateway) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_demo_page_is_served(gateway: LocalGateway) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert '<base href="/">' in page.text and "./client/gateway.js" in page.text


async def test_full_replica_refuses_handshakes_with_503(serve: Callable[..., Any]) -> None:
    async with serve(max_connections=1) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url):
            with pytest.raises(InvalidStatus) as refused:
                await ProtocolClient.connect(gateway.ws_url)
            assert refused.value.response.status_code == 503
            assert b"full" in refused.value.response.body


async def test_many_clients_fan_out(gateway: LocalGateway) -> None:
    clients = [await ProtocolClient.connect(gateway.ws_url) for _ in range(20)]
    try:
        for client in clients:
            await client.subscribe("wide")
        await clients[0].publish("wide", "hello all")
        for client in clients:
            [message] = await client.messages(1)
            assert message["data"] == "hello all"
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_a_batch_longer_than_the_queue_is_slowed_not_dropped(
    serve: Callable[..., Any],
) -> None:
    async with serve(max_queue=8, rate=0) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            batch = "\n".join(orjson.dumps({"op": "ping", "id": n}).decode() for n in range(200))
            await client.send(batch)
            replies = [await client.expect(lambda f, n=n: f.get("id") == n) for n in range(200)]
            assert {r["op"] for r in replies} == {"pong"}


async def test_pipelined_publishes_answer_in_command_order(serve: Callable[..., Any]) -> None:
    async with serve(namespaces={"ro": {"publish": False}}, rate=0) as gateway:
        async with (
            await ProtocolClient.connect(gateway.ws_url) as client,
            await ProtocolClient.connect(gateway.ws_url) as reader,
        ):
            await reader.subscribe("pipe")
            commands = [
                {"op": "publish", "id": 1, "channel": "pipe", "data": "a"},
                {"op": "publish", "id": 2, "channel": "bad channel", "data": "x"},
                {"op": "publish", "id": 3, "channel": "ro:news", "data": "y"},
                {"op": "publish", "id": 4, "channel": "pipe", "data": "b"},
                {"op": "ping", "id": 5},
                {"op": "publish", "id": 6, "channel": "pipe", "data": "c"},
            ]
            await client.send("\n".join(orjson.dumps(c).decode() for c in commands))
            replies = [await client.expect(lambda f, n=n: f.get("id") == n) for n in range(1, 7)]
            assert [r["op"] for r in replies] == [
                "published",
                "error",
                "error",
                "published",
                "pong",
                "published",
            ]
            assert [r.get("code") for r in replies] == [
                None,
                "bad_request",
                "forbidden",
                None,
                None,
                None,
            ]
            assert [r["offset"] for r in replies if r["op"] == "published"] == [1, 2, 3]
            received = await reader.messages(3)
            assert [m["data"] for m in received] == ["a", "b", "c"]
