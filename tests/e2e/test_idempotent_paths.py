"""Idempotent publishing on every publish path, against two real replicas (``gateway serve
--app tests.apps.hooked:gw``) on a real redis-server: ``publish`` on ``/ws``, ``POST
/api/publish`` and ``/api/broadcast``, ``POST /publish``, Centrifugo's server API and its
client protocol (JSON and Protobuf), ``gw.publish`` inside a replica and ``Publisher``
beside them.

Each path sends the same key to both replicas at once: one offset, the same offset in both
replies (where the path's reply carries one), and one delivery to subscribers on each
replica. One key is one publication whichever path resends it, and every path refuses a
key that is not 1-64 characters, publishing nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway import Publisher
from gateway.wire.errors import ErrorCode, GatewayError
from tests.support.centrifugo_raw import raw_connection
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess, start_all
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.hooked:gw"
API_KEY = "idempotent-paths-api-key"
KEYS = 6

Send = Callable[[GatewayProcess, str, str, Any], Awaitable[int | None]]
"""Publish ``data`` to a channel through one path on one replica with an idempotency key;
the offset of the reply (None where the path's reply carries none)."""


@pytest.fixture(scope="module")
def replicas(redis_server: RedisServer) -> Iterator[list[GatewayProcess]]:
    pair = [
        GatewayProcess(f"once{index}", redis_url=redis_server.url, rate=0, api_key=API_KEY)
        for index in (1, 2)
    ]
    yield start_all(pair, "--app", APP)
    for replica in pair:
        replica.kill()


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def centrifugo_url(replica: GatewayProcess) -> str:
    return f"ws://127.0.0.1:{replica.port}/connection/websocket"


async def post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(url, json=body, headers=headers)


async def via_ws(replica: GatewayProcess, channel: str, key: str, data: Any) -> int | None:
    async with await ProtocolClient.connect(replica.ws_url) as client:
        reply = await client.request("publish", channel=channel, data=data, idempotency_key=key)
        assert reply["op"] == "published", reply
        return reply.get("offset")


async def via_server_api(replica: GatewayProcess, channel: str, key: str, data: Any) -> int | None:
    body = {"channel": channel, "data": data, "idempotency_key": key}
    answer = await post(f"{replica.http_url}/api/publish", body, authorization=f"Bearer {API_KEY}")
    assert answer.status_code == 200, answer.text
    return answer.json().get("offset")


async def via_broadcast(replica: GatewayProcess, channel: str, key: str, data: Any) -> int | None:
    body = {"channels": [channel], "data": data, "idempotency_key": key}
    answer = await post(
        f"{replica.http_url}/api/broadcast", body, authorization=f"Bearer {API_KEY}"
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["offsets"].get(channel)


async def via_http(replica: GatewayProcess, channel: str, key: str, data: Any) -> int | None:
    body = {"channel": channel, "data": data, "idempotency_key": key}
    answer = await post(f"{replica.http_url}/publish", body)
    assert answer.status_code == 200, answer.text
    return answer.json().get("offset")


async def via_centrifugo_api(
    replica: GatewayProcess, channel: str, key: str, data: Any
) -> int | None:
    body = {"channel": channel, "data": data, "idempotency_key": key}
    answer = await post(f"{replica.http_url}/api/publish", body, **{"x-api-key": API_KEY})
    assert answer.status_code == 200, answer.text
    assert "error" not in answer.json(), answer.json()
    return answer.json()["result"].get("offset")


def via_centrifugo_client(protocol: str) -> Send:
    async def send(replica: GatewayProcess, channel: str, key: str, data: Any) -> int | None:
        async with raw_connection(centrifugo_url(replica), protocol) as client:
            request = {"channel": channel, "data": orjson.dumps(data), "idempotency_key": key}
            reply = await client.command(publish=request)
            assert reply.HasField("publish") and not reply.HasField("error"), reply
            return None  # Centrifugo's PublishResult carries no offset

    return send


async def via_gw_publish(replica: GatewayProcess, channel: str, key: str, data: Any) -> int | None:
    """``gw.publish`` inside the replica's process (the app's ``announce`` rpc calls it)."""
    async with await ProtocolClient.connect(replica.ws_url) as client:
        fields = {"channel": channel, "data": data, "idempotency_key": key}
        reply = await client.request("rpc", method="announce", data=fields)
        assert reply["op"] == "rpc", reply
        return int(reply["data"]["offset"])


def via_publisher(redis_url: str) -> Send:
    """A worker's ``Publisher`` on the replicas' Redis (one of its own per call)."""

    async def send(replica: GatewayProcess, channel: str, key: str, data: Any) -> int | None:
        async with Publisher(redis_url) as publisher:
            position = await publisher.publish(channel, data, idempotency_key=key)
        assert position is not None
        return position.offset

    return send


def paths(redis_url: str) -> dict[str, Send]:
    return {
        "ws": via_ws,
        "server_api": via_server_api,
        "broadcast": via_broadcast,
        "http": via_http,
        "centrifugo_api": via_centrifugo_api,
        "centrifugo_json": via_centrifugo_client("json"),
        "centrifugo_protobuf": via_centrifugo_client("protobuf"),
        "gw_publish": via_gw_publish,
        "publisher": via_publisher(redis_url),
    }


PATHS = list(paths("").keys())


def fresh_channel(path: str) -> str:
    return f"once:{path}-{uuid.uuid4().hex[:8]}"


async def received_once(
    subscribers: list[ProtocolClient], channel: str, first: int, expected: list[Any]
) -> None:
    """Each subscriber got ``expected`` then the closing ``"end"``, nothing twice, at the
    consecutive offsets after ``first``."""
    for subscriber in subscribers:
        messages = await subscriber.messages(len(expected) + 1, channel)
        assert [m["data"] for m in messages] == [*expected, "end"]
        assert [m["offset"] for m in messages] == list(range(first + 1, first + len(expected) + 2))


@pytest.mark.parametrize("path", PATHS)
async def test_the_same_key_sent_to_both_replicas_at_once_is_published_once(
    replicas: list[GatewayProcess], redis_url: str, path: str
) -> None:
    send = paths(redis_url)[path]
    first, second = replicas
    channel = fresh_channel(path)
    async with (
        await ProtocolClient.connect(first.ws_url) as one,
        await ProtocolClient.connect(second.ws_url) as two,
    ):
        joined = (await one.subscribe(channel))["offset"]
        await two.subscribe(channel)
        for n in range(KEYS):
            key = f"{path}-{n}"
            offsets = await asyncio.gather(
                send(first, channel, key, n), send(second, channel, key, n)
            )
            if offsets[0] is not None:
                assert offsets == [joined + n + 1] * 2, offsets
        resent = await send(second, channel, f"{path}-0", "a late resend")
        assert resent is None or resent == joined + 1
        await one.publish(channel, "end")
        await received_once([one, two], channel, joined, list(range(KEYS)))


async def test_one_key_is_one_publication_whichever_path_resends_it(
    replicas: list[GatewayProcess], redis_url: str
) -> None:
    """As when the browser client falls back from ``/ws`` to ``POST /publish`` and resends
    what was not acknowledged: every path answers the first publication's offset."""
    first, second = replicas
    channel = fresh_channel("mixed")
    async with (
        await ProtocolClient.connect(first.ws_url) as one,
        await ProtocolClient.connect(second.ws_url) as two,
    ):
        joined = (await one.subscribe(channel))["offset"]
        await two.subscribe(channel)
        sends = paths(redis_url)
        offsets = [await sends["ws"](first, channel, "shared", "first")]
        for name in PATHS[1:]:
            replica = second if len(offsets) % 2 else first
            offsets.append(await sends[name](replica, channel, "shared", f"again via {name}"))
        assert {offset for offset in offsets if offset is not None} == {joined + 1}
        await two.publish(channel, "end")
        await received_once([one, two], channel, joined, ["first"])


async def refusal(
    path: str, replica: GatewayProcess, channel: str, key: str, redis_url: str
) -> str:
    """What ``path`` answers to a publish with ``key``: its error code, or HTTP status."""
    if path == "ws":
        async with await ProtocolClient.connect(replica.ws_url) as client:
            reply = await client.request("publish", channel=channel, data=1, idempotency_key=key)
            return str(reply.get("code"))
    if path in ("server_api", "http", "broadcast", "centrifugo_api"):
        body: dict[str, Any] = {"channel": channel, "data": 1, "idempotency_key": key}
        headers = {"authorization": f"Bearer {API_KEY}"}
        url = f"{replica.http_url}/api/publish"
        if path == "http":
            url = f"{replica.http_url}/publish"
        elif path == "broadcast":
            url, body = f"{replica.http_url}/api/broadcast", {**body, "channels": [channel]}
            del body["channel"]
        elif path == "centrifugo_api":
            headers = {"x-api-key": API_KEY}
        answer = await post(url, body, **headers)
        if path == "centrifugo_api":
            return f"centrifugo {answer.json()['error']['code']}"
        return f"HTTP {answer.status_code}"
    if path.startswith("centrifugo_"):
        async with raw_connection(centrifugo_url(replica), path.removeprefix("centrifugo_")) as raw:
            request = {"channel": channel, "data": b"1", "idempotency_key": key}
            reply = await raw.command(publish=request)
            return f"centrifugo {reply.error.code}"
    if path == "gw_publish":
        async with await ProtocolClient.connect(replica.ws_url) as client:
            fields = {"channel": channel, "data": 1, "idempotency_key": key}
            reply = await client.request("rpc", method="announce", data=fields)
            return str(reply.get("code"))
    async with Publisher(redis_url) as publisher:
        try:
            await publisher.publish(channel, 1, idempotency_key=key)
        except GatewayError as error:
            return error.code.value
    return "published"


EXPECTED_REFUSALS = {
    "ws": ErrorCode.BAD_REQUEST.value,
    "server_api": "HTTP 422",
    "broadcast": "HTTP 422",
    "http": "HTTP 400",
    "centrifugo_api": "centrifugo 107",
    "centrifugo_json": "centrifugo 107",
    "centrifugo_protobuf": "centrifugo 107",
    "gw_publish": ErrorCode.BAD_REQUEST.value,
    "publisher": ErrorCode.BAD_REQUEST.value,
}


@pytest.mark.parametrize("path", PATHS)
async def test_every_path_refuses_a_key_that_is_not_1_to_64_characters(
    replicas: list[GatewayProcess], redis_url: str, path: str
) -> None:
    first, _ = replicas
    channel = fresh_channel(f"bad-{path}")
    async with await ProtocolClient.connect(first.ws_url) as reader:
        joined = (await reader.subscribe(channel))["offset"]
        for key in ("k" * 65, ""):
            if key == "" and path.startswith("centrifugo_"):
                continue  # Centrifugo's empty string is its "no key"
            answer = await refusal(path, first, channel, key, redis_url)
            assert answer == EXPECTED_REFUSALS[path], (key, answer)
        await reader.publish(channel, "end")
        [message] = await reader.messages(1, channel)
        assert (message["data"], message["offset"]) == ("end", joined + 1)
