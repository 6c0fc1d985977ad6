"""The Centrifugo codec against Centrifugo's real SDKs, in JSON and in Protobuf.

centrifuge-python (in-process) and centrifuge-js (under node) talk to a tiny server of
ours (tests/support/centrifugo_fake.py) that parses every frame they send with
``gateway.wire.centrifugo.codec`` and answers with replies the codec encodes: the SDKs reaching
their connected, subscribed and publication states is the proof that they accept those
replies; the captured frames are checked field by field.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from centrifuge import (
    Client,
    DeltaType,
    PublicationContext,
    SubscribedContext,
)

from gateway.wire.centrifugo.codec import Encoding
from gateway.wire.centrifugo.protocol_pb2 import Command
from tests.support.centrifugo_fake import FakeCentrifugo
from tests.support.centrifugo_sdks import JS_SDK_DIR, JSClient, js_sdk_version

ENCODINGS = [Encoding.JSON, Encoding.PROTOBUF]
LONG = "a payload long enough for a fossil delta to be smaller than the data itself, "


def payloads() -> list[dict[str, Any]]:
    """Publications that differ a little from one to the next, then a lot."""
    return [
        {"text": LONG * 3, "n": 1},
        {"text": LONG * 3, "n": 2},
        {"text": LONG * 3 + "и немного кириллицы", "n": 3},
        {"short": True},
    ]


def sent(server: FakeCentrifugo, method: str) -> list[Command]:
    return [command for command in server.commands if command.HasField(method)]  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[FakeCentrifugo]:
    async with FakeCentrifugo() as fake:
        yield fake


def as_bytes(value: Any, encoding: Encoding) -> Any:
    return json.dumps(value).encode() if encoding is Encoding.PROTOBUF else value


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_centrifuge_python_frames(server: FakeCentrifugo, encoding: Encoding) -> None:
    client = Client(
        server.url,
        use_protobuf=encoding is Encoding.PROTOBUF,
        token="a-connection-token",
        proxy=None,
    )
    connected: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_connected(ctx: Any) -> None:
        connected.set_result(ctx.client)

    client.events.on_connected = on_connected
    received: asyncio.Queue[Any] = asyncio.Queue()
    subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()

    async def on_publication(ctx: PublicationContext) -> None:
        await received.put(ctx.pub.data)

    async def on_subscribed(ctx: SubscribedContext) -> None:
        await subscribed.put(ctx)

    sub = client.new_subscription("chat:room", delta=None)
    sub.events.on_publication = on_publication
    sub.events.on_subscribed = on_subscribed
    delta_sub = client.new_subscription("chat:delta", delta=DeltaType.FOSSIL)
    delta_sub.events.on_publication = on_publication
    try:
        await client.connect()
        assert await asyncio.wait_for(connected, 10) == server.connections[0].client
        assert all(received.encoding is encoding for received in server.frames)
        (connect,) = sent(server, "connect")
        assert connect.connect.token == "a-connection-token"
        assert connect.connect.name == "python"

        await sub.subscribe()
        context = await asyncio.wait_for(subscribed.get(), 10)
        assert context.channel == "chat:room"
        assert sent(server, "subscribe")[0].subscribe.channel == "chat:room"

        payload = {"input": "hello", "list": [1, 2.5, None]}
        await sub.publish(as_bytes(payload, encoding))
        assert await asyncio.wait_for(received.get(), 10) == as_bytes(payload, encoding)
        (publish,) = sent(server, "publish")
        assert orjson.loads(publish.publish.data) == payload

        history = await sub.history(limit=-1)
        assert [publication.offset for publication in history.publications] == [1]
        assert history.epoch
        assert len((await sub.presence()).clients) == 1
        assert (await sub.presence_stats()).num_clients == 1

        await server.ping_all()
        await server.wait_for(lambda: server.pongs >= 1)

        await delta_sub.subscribe()
        await server.wait_for(lambda: "chat:delta" in server.connections[0].subscriptions)
        assert sent(server, "subscribe")[-1].subscribe.delta == "fossil"
        for data in payloads():
            await server.publish("chat:delta", json.dumps(data).encode())
            assert await asyncio.wait_for(received.get(), 10) == as_bytes(data, encoding)
        assert server.deltas_sent("chat:delta") >= 2
    finally:
        await client.disconnect()


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_centrifuge_js_frames(server: FakeCentrifugo, encoding: Encoding) -> None:
    async with JSClient(server.url, encoding.value, token="a-connection-token") as js:
        await js.call("connect")
        connected = await js.wait_for(lambda event: event["event"] == "connected")
        assert connected["client"] == server.connections[0].client
        assert all(received.encoding is encoding for received in server.frames)
        (connect,) = sent(server, "connect")
        assert connect.connect.token == "a-connection-token"
        assert connect.connect.name == "js"

        await js.call("subscribe", channel="chat:room")
        await js.wait_for(lambda event: event["event"] == "subscribed")
        assert sent(server, "subscribe")[0].subscribe.channel == "chat:room"

        payload = {"input": "hello", "list": [1, 2.5, None]}
        assert await js.call("publish", channel="chat:room", data=payload) == {}
        publication = await js.wait_for(lambda event: event["event"] == "publication")
        assert publication["data"] == payload
        assert publication["info"]["client"] == connected["client"]
        (publish,) = sent(server, "publish")
        assert orjson.loads(publish.publish.data) == payload

        history = await js.call("history", channel="chat:room", limit=-1)
        assert [item["offset"] for item in history["publications"]] == [1]
        presence = await js.call("presence", channel="chat:room")
        assert list(presence["clients"]) == [connected["client"]]
        stats = await js.call("presence_stats", channel="chat:room")
        assert stats["numClients"] == 1

        await server.ping_all()
        await server.wait_for(lambda: server.pongs >= 1)

        await js.call("subscribe", channel="chat:delta", delta="fossil")
        await server.wait_for(lambda: "chat:delta" in server.connections[0].subscriptions)
        assert sent(server, "subscribe")[-1].subscribe.delta == "fossil"
        for index, data in enumerate(payloads()):
            await server.publish("chat:delta", json.dumps(data).encode())
            event = await js.wait_for(
                lambda event, index=index: (
                    event["event"] == "publication"
                    and event["channel"] == "chat:delta"
                    and event["offset"] == index + 1
                )
            )
            assert event["data"] == data
        assert server.deltas_sent("chat:delta") >= 2


def test_js_sdk_is_the_pinned_version() -> None:
    lock = json.loads((JS_SDK_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/centrifuge"]["version"] == js_sdk_version()
