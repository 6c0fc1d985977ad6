"""Centrifugo's own SDKs, unmodified, against two replicas on Redis: centrifuge-python
(PyPI) in this process and centrifuge-js (npm) under node, each in JSON and Protobuf; the
`cent` API library against ``POST /api/<method>``; and ``/ws`` clients on the same channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cent import AsyncClient as CentClient
from cent import (
    BroadcastRequest,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    PresenceRequest,
    PublishRequest,
    SubscribeRequest,
)
from cent import StreamPosition as CentPosition
from centrifuge import (
    Client,
    ClientState,
    DeltaType,
    DisconnectedContext,
    JoinContext,
    PublicationContext,
    ReplyError,
    ServerPublicationContext,
    ServerSubscribedContext,
)
from websockets.asyncio.client import connect as ws_connect

from tests.support.centrifugo_raw import RawClient, raw_connection
from tests.support.centrifugo_sdks import JSClient, SDKError
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess, start_all
from tests.support.redis_server import RedisServer
from tests.support.tokens import SECRET, connection_token, sign, subscription_token

pytestmark = pytest.mark.timeout(120)

API_KEY = "centrifugo-sdk-tests-api-key"
PROTOCOLS = ["json", "protobuf"]
CONFIG = f"""
jwt_secret = "{SECRET}"
jwt_require_exp = false
personal_channel = true
api_key = "{API_KEY}"
rate = 0
ping_seconds = 5

[namespaces.default]
history_size = 100
history_ttl = 300
presence = true
join_leave = true
force_push_join_leave = true
force_recovery = true
allowed_delta_types = ["fossil"]

[namespaces.quiet]
history_size = 0
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("centrifugo") / "gateway.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def replicas(redis_server: RedisServer, config: Path) -> Iterator[list[GatewayProcess]]:
    pair = [
        GatewayProcess(f"c{index}", redis_url=redis_server.url, config=str(config))
        for index in (1, 2)
    ]
    start_all(pair)
    yield pair
    for replica in pair:
        replica.kill()


def url(replica: GatewayProcess) -> str:
    return f"ws://127.0.0.1:{replica.port}/connection/websocket"


def channel(prefix: str = "room") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def payload(value: Any, protocol: str) -> Any:
    """Data as an SDK takes it: a JSON value in JSON, its bytes under Protobuf."""
    return orjson.dumps(value) if protocol == "protobuf" else value


def as_value(data: Any) -> Any:
    return orjson.loads(data) if isinstance(data, bytes) else data


async def fresh_token() -> str:
    return connection_token("42")


async def sub_token(name: str) -> str:
    return subscription_token("42", name)


def py_client(replica: GatewayProcess, protocol: str, **options: Any) -> Client:
    options.setdefault("get_token", fresh_token)
    return Client(url(replica), use_protobuf=protocol == "protobuf", proxy=None, **options)


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


class Inbox:
    """Publications one subscription received, awaitable."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    async def on_publication(self, ctx: PublicationContext | ServerPublicationContext) -> None:
        self.items.append(ctx.pub)
        self._changed.set()

    async def wait(self, count: int, timeout: float = 10.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items


@contextlib.asynccontextmanager
async def connected(client: Client) -> AsyncIterator[Client]:
    await client.connect()
    await client.ready(timeout=10)
    try:
        yield client
    finally:
        await client.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_python_sdk_across_replicas(replicas: list[GatewayProcess], protocol: str) -> None:
    name = channel()
    inbox = Inbox()
    joins: list[str] = []

    async def on_join(ctx: JoinContext) -> None:
        joins.append(ctx.info.client)

    async with (
        connected(py_client(replicas[0], protocol)) as alice,
        connected(py_client(replicas[1], protocol)) as bob,
    ):
        listening = alice.new_subscription(name, get_token=sub_token)
        listening.events.on_publication = inbox.on_publication
        listening.events.on_join = on_join
        await listening.subscribe()
        await listening.ready(timeout=10)
        speaking = bob.new_subscription(name, get_token=sub_token)
        await speaking.subscribe()
        await speaking.ready(timeout=10)
        await until(lambda: len(joins) >= 2, what="alice sees both joins")
        for number in range(3):
            await speaking.publish(payload({"n": number, "text": "across"}, protocol))
        received = await inbox.wait(3)
        assert [as_value(pub.data)["n"] for pub in received] == [0, 1, 2]
        assert [pub.offset for pub in received] == [1, 2, 3]
        assert received[0].info is not None and received[0].info.user == "42"

        history = await listening.history(limit=-1)
        assert [pub.offset for pub in history.publications] == [1, 2, 3]
        assert history.epoch and history.offset == 3
        assert (await listening.history(limit=0)).publications == []
        newest = await listening.history(limit=2, reverse=True)
        assert [pub.offset for pub in newest.publications] == [3, 2]
        presence = await listening.presence()
        assert len(presence.clients) == 2
        stats = await listening.presence_stats()
        assert (stats.num_clients, stats.num_users) == (2, 1)
        with pytest.raises(ReplyError) as refused:
            await alice.rpc("whoami", payload({}, protocol))
        assert refused.value.code == 104, "no rpc method of that name on this gateway"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_js_sdk_and_python_sdk_see_each_other(
    replicas: list[GatewayProcess], protocol: str
) -> None:
    name = channel()
    inbox = Inbox()
    async with JSClient(url(replicas[0]), protocol, token=connection_token("7")) as js:
        await js.call("connect")
        await js.wait_for(lambda event: event["event"] == "connected", what="js connected")
        await js.call("subscribe", channel=name)
        await js.wait_for(lambda e: e["event"] == "subscribed" and e.get("channel") == name)
        async with connected(py_client(replicas[1], protocol)) as python:
            sub = python.new_subscription(name, get_token=sub_token)
            sub.events.on_publication = inbox.on_publication
            await sub.subscribe()
            await sub.ready(timeout=10)
            await sub.publish(payload({"from": "python"}, protocol))
            event = await js.wait_for(lambda e: e["event"] == "publication")
            assert event["data"] == {"from": "python"} and event["offset"] == 1
            await js.call("publish", channel=name, data={"from": "js"})
            received = await inbox.wait(2)
            assert as_value(received[1].data) == {"from": "js"}
            assert received[1].info.user == "7"
            history = await js.call("history", channel=name, limit=10)
            assert [pub["data"] for pub in history["publications"]] == [
                {"from": "python"},
                {"from": "js"},
            ]
            stats = await js.call("presence_stats", channel=name)
            assert stats == {"numClients": 2, "numUsers": 2}
            with pytest.raises(SDKError) as refused:
                await js.call("rpc", method="whoami", data={})
            assert refused.value.code == 104


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_bad_token_closes_with_3500_and_the_sdk_stops(
    replicas: list[GatewayProcess], protocol: str
) -> None:
    closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    connecting = 0

    async def bad_token() -> str:
        nonlocal connecting
        connecting += 1
        return sign({"sub": "42"}, key="not-the-secret-but-long-enough-0123456789abcdef")

    async def on_disconnected(ctx: DisconnectedContext) -> None:
        if not closed.done():
            closed.set_result(ctx.code)

    client = py_client(replicas[0], protocol, get_token=bad_token)
    client.events.on_disconnected = on_disconnected
    await client.connect()
    assert await asyncio.wait_for(closed, 10) == 3500
    assert client.state == ClientState.DISCONNECTED
    assert connecting == 1
    await client.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_anonymous_token_and_refresh_before_expiry(
    replicas: list[GatewayProcess], protocol: str
) -> None:
    tokens: list[str] = []

    async def short_token() -> str:
        token = sign({"sub": "", "exp": int(time.time()) + 3})
        tokens.append(token)
        return token

    async with connected(py_client(replicas[0], protocol, get_token=short_token)) as client:
        await until(lambda: len(tokens) >= 2, timeout=15, what="the SDK refreshes its token")
        await asyncio.sleep(0)
        await until(lambda: time.time() > orjson.loads(_claims(tokens[0]))["exp"] + 6, 15)
        assert client.state == ClientState.CONNECTED
        name = channel()
        sub = client.new_subscription(name)
        await sub.subscribe()
        await sub.ready(timeout=10)
        await sub.publish(payload({"anonymous": True}, protocol))
        history = await sub.history(limit=-1)
        assert history.publications[0].info.user == ""


def _claims(token: str) -> bytes:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_recovery_after_a_replica_is_killed(
    redis_server: RedisServer, config: Path, replicas: list[GatewayProcess], protocol: str
) -> None:
    doomed = GatewayProcess("c-doomed", redis_url=redis_server.url, config=str(config)).start()
    name = channel()
    inbox = Inbox()
    recovered: list[tuple[bool, bool]] = []

    async def on_subscribed(ctx: Any) -> None:
        recovered.append((ctx.was_recovering, ctx.recovered))

    try:
        async with connected(py_client(doomed, protocol, max_reconnect_delay=0.5)) as client:
            sub = client.new_subscription(name, get_token=sub_token)
            sub.events.on_publication = inbox.on_publication
            sub.events.on_subscribed = on_subscribed
            await sub.subscribe()
            await sub.ready(timeout=10)
            async with connected(py_client(replicas[1], protocol)) as publisher:
                await publisher.publish(name, payload({"n": 0}, protocol))
                await inbox.wait(1)
                doomed.kill()
                for number in range(1, 6):
                    await publisher.publish(name, payload({"n": number}, protocol))
                doomed.start()
                received = await inbox.wait(6, timeout=30)
        assert [as_value(pub.data)["n"] for pub in received] == list(range(6))
        assert recovered == [(False, False), (True, True)]
    finally:
        doomed.kill()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_fossil_deltas_reach_both_sdks_intact(
    replicas: list[GatewayProcess], protocol: str
) -> None:
    name = channel()
    inbox = Inbox()
    text = "a long text that repeats, so that a delta of the next one is small. " * 8
    bodies = [{"text": text, "n": number} for number in range(4)] + [{"short": 1}]
    async with (
        JSClient(url(replicas[0]), protocol, token=connection_token("7")) as js,
        connected(py_client(replicas[0], protocol)) as python,
        connected(py_client(replicas[1], protocol)) as publisher,
    ):
        await js.call("connect")
        await js.call("subscribe", channel=name, delta="fossil")
        await js.wait_for(lambda e: e["event"] == "subscribed" and e.get("channel") == name)
        sub = python.new_subscription(name, get_token=sub_token, delta=DeltaType.FOSSIL)
        sub.events.on_publication = inbox.on_publication
        await sub.subscribe()
        await sub.ready(timeout=10)
        async with raw_client(replicas[0], protocol) as raw:
            await raw.command(subscribe={"channel": name, "delta": "fossil"})
            for body in bodies:
                await publisher.publish(name, payload(body, protocol))
            pushes = await raw.pushes(len(bodies))
        received = await inbox.wait(len(bodies))
        assert [as_value(pub.data) for pub in received] == bodies
        js_data = [
            (await js.wait_for(lambda e, n=n: e["event"] == "publication" and e["offset"] == n))[
                "data"
            ]
            for n in range(1, len(bodies) + 1)
        ]
        assert js_data == bodies
        assert [push.push.pub.delta for push in pushes] == [False, True, True, True, False]


@contextlib.asynccontextmanager
async def raw_client(
    replica: GatewayProcess, protocol: str, token: str | None = None
) -> AsyncIterator[RawClient]:
    async with raw_connection(url(replica), protocol, token or connection_token("42")) as raw:
        yield raw


async def test_ws_clients_and_sdks_share_channels_and_tags(
    replicas: list[GatewayProcess],
) -> None:
    name = channel()
    inbox = Inbox()
    async with (
        connected(py_client(replicas[0], "json")) as python,
        await ProtocolClient.connect(
            replicas[1].ws_url + f"?token={connection_token('ws-user')}"
        ) as ws,
    ):
        sub = python.new_subscription(name, get_token=sub_token)
        sub.events.on_publication = inbox.on_publication
        await sub.subscribe()
        await sub.ready(timeout=10)
        await ws.subscribe(name)
        reply = await ws.publish(name, {"hello": "sdk"}, tags={"kind": "greeting"})
        assert reply["op"] == "published"
        received = await inbox.wait(1)
        assert as_value(received[0].data) == {"hello": "sdk"}
        assert received[0].tags == {"kind": "greeting"}
        assert received[0].info.user == "ws-user"
        await sub.publish({"hello": "ws"})
        messages = await ws.messages(2, name)
        assert messages[1]["data"] == {"hello": "ws"}
        assert messages[1]["from"]["user"] == "42"
        assert messages[0]["tags"] == {"kind": "greeting"}


async def test_cent_publishes_reads_and_manages_connections(
    replicas: list[GatewayProcess],
) -> None:
    name = channel()
    inbox = Inbox()
    personal = Inbox()
    server_subscribed: list[str] = []
    closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_subscribed(ctx: ServerSubscribedContext) -> None:
        server_subscribed.append(ctx.channel)

    async def on_disconnected(ctx: DisconnectedContext) -> None:
        if not closed.done():
            closed.set_result(ctx.code)

    client = py_client(replicas[0], "protobuf")
    client.events.on_subscribed = on_subscribed
    client.events.on_publication = personal.on_publication
    client.events.on_disconnected = on_disconnected
    cent = CentClient(f"{replicas[1].http_url}/api", API_KEY)
    try:
        await client.connect()
        await client.ready(timeout=10)
        sub = client.new_subscription(name, get_token=sub_token)
        sub.events.on_publication = inbox.on_publication
        await sub.subscribe()
        await sub.ready(timeout=10)
        result = await cent.publish(
            PublishRequest(channel=name, data={"by": "cent"}, tags={"source": "api"})
        )
        assert result.offset == 1 and result.epoch
        received = await inbox.wait(1)
        assert as_value(received[0].data) == {"by": "cent"} and received[0].tags == {
            "source": "api"
        }
        broadcast = await cent.broadcast(BroadcastRequest(channels=[name, "#42"], data={"b": 1}))
        assert len(broadcast.responses) == 2
        assert all(response.error is None for response in broadcast.responses)
        await personal.wait(1)
        history = await cent.history(HistoryRequest(channel=name, limit=-1))
        assert [pub.data for pub in history.publications] == [{"by": "cent"}, {"b": 1}]
        await cent.history_remove(HistoryRemoveRequest(channel=name))
        emptied = await cent.history(HistoryRequest(channel=name, limit=-1))
        assert emptied.publications == []
        assert (emptied.offset, emptied.epoch) == (history.offset, history.epoch)
        since = CentPosition(offset=1, epoch=history.epoch)
        after = await cent.history(HistoryRequest(channel=name, limit=-1, since=since))
        assert after.publications == [] and after.offset == history.offset
        presence = await cent.presence(PresenceRequest(channel=name))
        assert [info.user for info in presence.presence.values()] == ["42"]
        extra = channel("extra")
        await cent.subscribe(SubscribeRequest(user="42", channel=extra))
        await until(lambda: extra in server_subscribed, what="the server-side subscribe push")
        await cent.publish(PublishRequest(channel=extra, data={"server": "side"}))
        assert as_value((await personal.wait(2))[1].data) == {"server": "side"}
        await cent.disconnect(DisconnectRequest(user="42"))
        assert await asyncio.wait_for(closed, 10) == 3503
    finally:
        await client.disconnect()
        await cent.close()


async def test_bad_frames_and_refusals(replicas: list[GatewayProcess]) -> None:
    async with ws_connect(url(replicas[0])) as socket:
        await socket.send('{"id":1,"subscribe":{"channel":"x"}}')
        await socket.wait_closed()
        assert socket.close_code == 3501, "a command before connect"
    async with ws_connect(url(replicas[0])) as socket:
        await socket.send("not json")
        await socket.wait_closed()
        assert socket.close_code == 3501
    async with raw_client(replicas[0], "protobuf") as raw:
        published = await raw.command(publish={"channel": channel(), "data": b"\xff not json"})
        assert published.error.code == 107
        foreign = await raw.command(subscribe={"channel": "#43"})
        assert foreign.error.code == 103
        control = await raw.command(subscribe={"channel": "#control"})
        assert control.error.code == 102
        bad_filter = await raw.command(
            subscribe={"channel": channel(), "tf": {"key": "k", "cmp": "regex"}}
        )
        assert bad_filter.error.code == 107
        no_history = await raw.command(history={"channel": "quiet:x", "limit": 1})
        assert no_history.error.code == 108
        left = await raw.command(unsubscribe={"channel": "never-held"})
        assert left.HasField("unsubscribe") and not left.HasField("error")
    async with raw_client(replicas[0], "json") as raw:
        name = channel()
        await raw.command(
            subscribe={"channel": name, "tf": {"key": "kind", "cmp": "eq", "val": "keep"}}
        )
        async with connected(py_client(replicas[1], "json")) as publisher:
            cent = CentClient(f"{replicas[1].http_url}/api", API_KEY)
            try:
                for kind in ("drop", "keep"):
                    await cent.publish(
                        PublishRequest(channel=name, data={"kind": kind}, tags={"kind": kind})
                    )
            finally:
                await cent.close()
            del publisher
        (push,) = await raw.pushes(1)
        assert orjson.loads(push.push.pub.data) == {"kind": "keep"}


async def test_the_api_answers_like_centrifugo(replicas: list[GatewayProcess]) -> None:
    import httpx

    base = f"{replicas[0].http_url}/api"
    async with httpx.AsyncClient() as http:
        wrong = await http.post(f"{base}/publish", headers={"X-API-Key": "nope"}, json={})
        assert wrong.status_code == 401
        unknown = await http.post(f"{base}/nothing", headers={"X-API-Key": API_KEY}, json={})
        assert unknown.status_code == 200 and unknown.json()["error"]["code"] == 104
        invalid = await http.post(
            f"{base}/publish", headers={"X-API-Key": API_KEY}, json={"channel": "x"}
        )
        assert invalid.json()["error"]["code"] == 107
        batch = await http.post(
            f"{base}/batch",
            headers={"X-API-Key": API_KEY},
            json={"commands": [{"publish": {"channel": channel(), "data": 1}}, {"info": {}}]},
        )
        replies = batch.json()["result"]["replies"]
        assert replies[0]["publish"]["offset"] == 1
        assert len(replies[1]["info"]["nodes"]) >= 2
        ours = await http.post(f"{base}/publish", json={"channel": "x", "data": 1})
        assert ours.status_code == 401, "without X-API-Key: the Bearer API"
