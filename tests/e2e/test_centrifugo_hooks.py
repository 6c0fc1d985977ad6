"""The application's hooks behind Centrifugo's protocol: centrifuge-python, unmodified,
against two ``gateway serve --app tests.apps.hooked:gw`` replicas on a real redis-server,
in JSON and Protobuf, with a ``/ws`` client on the other replica seeing what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from centrifuge import (
    Client,
    ClientState,
    DisconnectedContext,
    PublicationContext,
    ReplyError,
    SubscriptionErrorContext,
    UnsubscribedContext,
)
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from gateway.wire.centrifugo.codec import PROTOBUF_SUBPROTOCOL, Encoding, encode_frame
from gateway.wire.centrifugo.protocol_pb2 import Command
from tests.support.centrifugo_sdks import JSClient, SDKError
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer
from tests.support.tokens import SECRET, connection_token

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.hooked:gw"
PROTOCOLS = ["json", "protobuf"]


@pytest.fixture(scope="module")
def hooked(redis_server: RedisServer) -> Iterator[list[GatewayProcess]]:
    replicas = [
        GatewayProcess(
            f"chook{index}",
            redis_url=redis_server.url,
            rate=0,
            hook_timeout=2,
            jwt_secret=SECRET,
            jwt_require_exp=False,
        )
        for index in (1, 2)
    ]
    for replica in replicas:
        replica.launch("--app", APP)
    for replica in replicas:
        replica.wait_ready()
    yield replicas
    for replica in replicas:
        replica.kill()


def sdk(replica: GatewayProcess, protocol: str, query: str = "", **options: Any) -> Client:
    url = f"ws://127.0.0.1:{replica.port}/connection/websocket{query}"
    return Client(url, use_protobuf=protocol == "protobuf", proxy=None, **options)


def payload(value: Any, protocol: str) -> Any:
    """Data as the SDK takes it: a JSON value in JSON, its bytes under Protobuf."""
    return orjson.dumps(value) if protocol == "protobuf" else value


def value(data: Any) -> Any:
    return orjson.loads(data) if isinstance(data, bytes) else data


@contextlib.asynccontextmanager
async def connected(client: Client) -> AsyncIterator[Client]:
    await client.connect()
    await client.ready(timeout=10)
    try:
        yield client
    finally:
        await client.disconnect()


async def closed_with(client: Client) -> tuple[int, str, ClientState]:
    """Connect a client the server refuses for good: the close code and reason it got, and
    the state the SDK went to."""
    closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def on_disconnected(ctx: DisconnectedContext) -> None:
        if not closed.done():
            closed.set_result((ctx.code, ctx.reason))

    client.events.on_disconnected = on_disconnected
    await client.connect()
    try:
        code, reason = await asyncio.wait_for(closed, 10)
        return code, reason, client.state
    finally:
        await client.disconnect()


def room(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_on_connect_identifies_an_sdk_client_without_a_token(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    async with connected(sdk(hooked[0], protocol, "?as=alice")) as alice:
        whoami = await alice.rpc("whoami", payload(None, protocol))
        seen = value(whoami.data)
        assert seen["user"] == "alice"
        assert seen["info"] == {"name": "Alice"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_on_connect_sees_the_verified_token_claims(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    marker = uuid.uuid4().hex

    async def token() -> str:
        return connection_token("carol", marker=marker)

    async with connected(sdk(hooked[0], protocol, get_token=token)) as carol:
        whoami = value((await carol.rpc("whoami", payload(None, protocol))).data)
        assert whoami["user"] == "carol"
        async with await ProtocolClient.connect(hooked[0].ws_url + "?as=inspector") as inspector:
            reply = await inspector.request("rpc", method="seen", data="connect")
        mine = [seen for seen in reply["data"] if (seen["claims"] or {}).get("marker") == marker]
        assert [seen["transport"] for seen in mine] == ["centrifugo"]
        assert mine[0]["path"] == "/connection/websocket"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_on_connect_refusals_close_with_centrifugo_codes_and_the_hooks_message(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    terminal = ClientState.DISCONNECTED
    assert await closed_with(sdk(hooked[0], protocol, "?refuse=unauthorized")) == (
        3500,
        "log in first",
        terminal,
    )
    assert await closed_with(sdk(hooked[0], protocol, "?refuse=forbidden")) == (
        3507,
        "banned from this gateway",
        terminal,
    )
    url = f"ws://127.0.0.1:{hooked[1].port}/connection/websocket?refuse=boom"
    subprotocols = [Subprotocol(PROTOBUF_SUBPROTOCOL)] if protocol == "protobuf" else None
    wire = Encoding.PROTOBUF if protocol == "protobuf" else Encoding.JSON
    async with ws_connect(url, subprotocols=subprotocols) as socket:
        connect = Command(id=1)
        connect.connect.SetInParent()
        frame = encode_frame([connect], wire)
        await socket.send(frame if wire.binary else frame.decode())
        await asyncio.wait_for(socket.wait_closed(), 10)
    assert socket.close_code == 3004, "a failing hook: a close the SDKs retry after"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_on_subscribe_admits_and_refuses_sdk_subscriptions(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    loop = asyncio.get_running_loop()
    async with connected(sdk(hooked[0], protocol, "?as=alice")) as alice:
        own = alice.new_subscription(room("rooms:alice-"))
        await own.subscribe()
        await own.ready(timeout=10)

        other = alice.new_subscription(room("rooms:bob-"))
        unsubscribed: asyncio.Future[UnsubscribedContext] = loop.create_future()

        async def on_unsubscribed(ctx: UnsubscribedContext) -> None:
            if not unsubscribed.done():
                unsubscribed.set_result(ctx)

        other.events.on_unsubscribed = on_unsubscribed
        await other.subscribe()
        refused = await asyncio.wait_for(unsubscribed, 10)
        assert refused.code == 103
        assert "alice is not a member of" in refused.reason

        broken = alice.new_subscription("rooms:boom")
        failed: asyncio.Future[SubscriptionErrorContext] = loop.create_future()

        async def on_error(ctx: SubscriptionErrorContext) -> None:
            if not failed.done():
                failed.set_result(ctx)

        broken.events.on_error = on_error
        await broken.subscribe()
        error = (await asyncio.wait_for(failed, 10)).error
        await broken.unsubscribe()
        assert isinstance(error, ReplyError) and error.code == 100

        assert alice.state == ClientState.CONNECTED
        later = alice.new_subscription("rooms:open")
        await later.subscribe()
        await later.ready(timeout=10)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_on_publish_validates_and_rewrites_sdk_publications_for_every_dialect(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    channel = room("typed:")
    received: list[Any] = []
    arrived = asyncio.Event()

    async def on_publication(ctx: PublicationContext) -> None:
        received.append(value(ctx.pub.data))
        arrived.set()

    async with (
        connected(sdk(hooked[0], protocol, "?as=dora")) as dora,
        await ProtocolClient.connect(hooked[1].ws_url + "?as=eve") as eve,
    ):
        await eve.subscribe(channel)
        listening = dora.new_subscription(channel)
        listening.events.on_publication = on_publication
        await listening.subscribe()
        await listening.ready(timeout=10)
        with pytest.raises(ReplyError) as invalid:
            await dora.publish(channel, payload({"text": ""}, protocol))
        assert invalid.value.code == 107
        await dora.publish(channel, payload({"text": "hello"}, protocol))
        [message] = await eve.messages(1, channel)
        assert message["data"] == {"text": "HELLO", "by": "dora"}
        async with asyncio.timeout(10):
            await arrived.wait()
        assert received == [{"text": "HELLO", "by": "dora"}]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_publications_of_namespaces_without_a_hook_pass_unchanged(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    channel = room("free:")
    sent = b'{"b": 1.50, "a":  [1,2]}'
    async with (
        connected(sdk(hooked[0], protocol, "?as=fred")) as fred,
        await ProtocolClient.connect(hooked[1].ws_url + "?as=gina") as gina,
    ):
        await gina.subscribe(channel)
        await fred.publish(channel, sent if protocol == "protobuf" else orjson.loads(sent))
        [message] = await gina.messages(1, channel)
        assert message["data"] == {"b": 1.5, "a": [1, 2]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rpc_calls_the_applications_methods(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    async with connected(sdk(hooked[1], protocol, "?as=hal")) as hal:
        echoed = value((await hal.rpc("echo", payload({"n": [1, 2]}, protocol))).data)
        assert echoed == {"data": {"n": [1, 2]}, "thread": True}
        with pytest.raises(ReplyError) as unknown:
            await hal.rpc("no-such-method", payload(None, protocol))
        assert unknown.value.code == 104
        with pytest.raises(ReplyError) as failed:
            await hal.rpc("fail", payload(None, protocol))
        assert failed.value.code == 100
        assert value((await hal.rpc("whoami", payload(None, protocol))).data)["user"] == "hal"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_centrifuge_js_calls_rpc_methods_as_the_user_on_connect_chose(
    hooked: list[GatewayProcess], protocol: str
) -> None:
    url = f"ws://127.0.0.1:{hooked[0].port}/connection/websocket?as=ivy"
    async with JSClient(url, protocol) as js:
        await js.call("connect")
        await js.wait_for(lambda event: event["event"] == "connected", what="js connected")
        whoami = await js.call("rpc", method="whoami", data=None)
        assert whoami["data"]["user"] == "ivy"
        with pytest.raises(SDKError) as refused:
            await js.call("rpc", method="fail", data={})
        assert refused.value.code == 100
