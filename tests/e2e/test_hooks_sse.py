"""The application's hooks on ``GET /sse`` and ``POST /publish``, as on ``/ws``: two ``gateway
serve --app tests.apps.hooked:gw`` replicas on a real redis-server (and a third with JWT
auth on). ``on_connect`` names (or refuses, with an HTTP status) a stream and the caller of
``POST /publish``; ``on_subscribe`` admits a stream's channels one by one; the channel's
model and ``on_publish`` check and rewrite what ``POST /publish`` publishes;
``on_disconnect`` hears of a stream's end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess, start_all
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer
from tests.support.sse import open_stream, sse_url
from tests.support.tokens import SECRET, connection_token

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.hooked:gw"


@pytest.fixture(scope="module")
def hooked(redis_server: RedisServer) -> Iterator[list[GatewayProcess]]:
    replicas = [
        GatewayProcess(f"ssehook{index}", redis_url=redis_server.url, rate=0, hook_timeout=2)
        for index in (1, 2)
    ]
    yield start_all(replicas, "--app", APP)
    for replica in replicas:
        replica.kill()


@pytest.fixture(scope="module")
def with_auth(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    auth = GatewayProcess("ssehook-auth", redis_url=redis_server.url, jwt_secret=SECRET, rate=0)
    [replica] = start_all([auth], "--app", APP)
    yield replica
    replica.kill()


async def seen(replica: GatewayProcess, what: str) -> list[Any]:
    async with await ProtocolClient.connect(replica.ws_url + "?as=inspector") as inspector:
        reply = await inspector.request("rpc", method="seen", data=what)
        assert reply["op"] == "rpc", reply
        return list(reply["data"])


async def get_sse(url: str, **headers: str) -> httpx.Response:
    """A stream request the server refuses: its status and body."""
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", url, headers=headers) as response,
    ):
        await response.aread()
        return response


async def publish(
    replica: GatewayProcess, body: dict[str, Any], query: str = "", **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{replica.http_url}/publish{query}", json=body, headers=headers)


# GET /sse


async def test_on_connect_names_a_stream_from_the_query_or_the_session_cookie(
    hooked: list[GatewayProcess],
) -> None:
    async with open_stream(hooked[0].http_url, [], **{"as": "alice"}) as stream:
        welcome = await stream.expect(lambda f: f["op"] == "welcome")
        assert welcome["user"] == "alice"
    headers = {"Cookie": "sid=bob", "x-test-agent": "sse-probe/1"}
    async with open_stream(hooked[0].http_url, [], headers=headers) as stream:
        assert (await stream.expect(lambda f: f["op"] == "welcome"))["user"] == "bob"
    connects = await seen(hooked[0], "connect")
    probe = next(entry for entry in connects if entry["agent"] == "sse-probe/1")
    assert probe == {
        "path": "/sse",
        "client_ip": "127.0.0.1",
        "agent": "sse-probe/1",
        "claims": None,
        "transport": "sse",
    }


@pytest.mark.parametrize(
    ("refusal", "status", "message"),
    [
        ("unauthorized", 401, "log in first"),
        ("forbidden", 403, "banned from this gateway"),
        ("boom", 500, "internal error"),
    ],
)
async def test_a_refusing_on_connect_answers_the_stream_with_its_http_status(
    hooked: list[GatewayProcess], refusal: str, status: int, message: str
) -> None:
    response = await get_sse(sse_url(hooked[0].http_url, ["s:x"], refuse=refusal))
    assert response.status_code == status
    assert response.text.strip() == message
    assert not response.headers["content-type"].startswith("text/event-stream")


async def test_on_subscribe_admits_each_channel_of_a_stream_or_refuses_it_alone(
    hooked: list[GatewayProcess],
) -> None:
    channels = ["rooms:open", "rooms:secret", "rooms:alice-1", "rooms:boom"]
    async with open_stream(hooked[0].http_url, channels, **{"as": "alice"}) as stream:
        answers = await stream.subscribed(channels)
        assert [answers[c]["op"] for c in channels] == [
            "subscribed",
            "error",
            "subscribed",
            "error",
        ]
        assert answers["rooms:secret"]["code"] == "forbidden"
        assert answers["rooms:secret"]["message"] == "alice is not a member of secret"
        assert answers["rooms:boom"]["code"] == "internal"
        async with await ProtocolClient.connect(hooked[1].ws_url + "?as=alice") as sender:
            for channel in ("rooms:secret", "rooms:alice-1"):
                await sender.request("publish", channel=channel, data=channel)
        [message] = await stream.messages(1)
        assert message["channel"] == "rooms:alice-1"


async def test_on_disconnect_hears_of_a_streams_end(hooked: list[GatewayProcess]) -> None:
    async with open_stream(hooked[0].http_url, ["s:gone"], **{"as": "dora"}) as stream:
        client = (await stream.expect(lambda f: f["op"] == "welcome"))["client"]

    async def told() -> bool:
        return any(entry["client"] == client for entry in await seen(hooked[0], "disconnect"))

    await wait_until(told, 10, "on_disconnect of the stream")
    [entry] = [e for e in await seen(hooked[0], "disconnect") if e["client"] == client]
    assert entry["user"] == "dora"


async def test_refused_streams_are_not_reported_as_disconnects(
    hooked: list[GatewayProcess],
) -> None:
    """A refused stream never had a user; had it been reported, an entry without one would
    come before the marker stream's."""

    async def anonymous() -> int:
        return sum(e["user"] is None for e in await seen(hooked[1], "disconnect"))

    before = await anonymous()
    response = await get_sse(sse_url(hooked[1].http_url, [], refuse="forbidden"))
    assert response.status_code == 403
    async with open_stream(hooked[1].http_url, [], **{"as": "marker"}):
        pass

    async def marker_told() -> bool:
        return any(e["user"] == "marker" for e in await seen(hooked[1], "disconnect"))

    await wait_until(marker_told, 10, "on_disconnect of the marker stream")
    assert await anonymous() == before


async def test_with_auth_on_the_hook_admits_a_stream_without_a_token(
    with_auth: GatewayProcess,
) -> None:
    async with open_stream(with_auth.http_url, ["s:a"], **{"as": "erin"}) as stream:
        assert (await stream.expect(lambda f: f["op"] == "welcome"))["user"] == "erin"
        assert (await stream.subscribed(["s:a"]))["s:a"]["op"] == "subscribed"
    token = connection_token("frank")
    async with open_stream(with_auth.http_url, [], token=token) as stream:
        assert (await stream.expect(lambda f: f["op"] == "welcome"))["user"] == "frank"
    connects = await seen(with_auth, "connect")
    assert any(
        e["transport"] == "sse" and (e["claims"] or {}).get("sub") == "frank" for e in connects
    )
    refused = await get_sse(sse_url(with_auth.http_url, ["s:a"]))
    assert refused.status_code == 401
    invalid = await get_sse(sse_url(with_auth.http_url, [], token="not-a-jwt", **{"as": "x"}))
    assert invalid.status_code == 401


# POST /publish


async def test_post_publish_runs_the_model_and_on_publish_as_the_caller_on_connect_names(
    hooked: list[GatewayProcess],
) -> None:
    async with await ProtocolClient.connect(hooked[1].ws_url) as reader:
        await reader.subscribe("typed:http")
        answer = await publish(
            hooked[0], {"channel": "typed:http", "data": {"text": "hello"}}, Cookie="sid=gina"
        )
        assert answer.status_code == 200, answer.text
        [message] = await reader.messages(1, "typed:http")
    assert message["data"] == {"text": "HELLO", "by": "gina"}
    assert message["from"]["user"] == "gina"
    assert {"channel": "typed:http", "user": "gina", "text": "hello"} in await seen(
        hooked[0], "stored"
    )
    connects = await seen(hooked[0], "connect")
    assert any(e["transport"] == "http" and e["path"] == "/publish" for e in connects)


async def test_post_publish_answers_invalid_data_with_details_and_skips_the_hook(
    hooked: list[GatewayProcess],
) -> None:
    before = len(await seen(hooked[0], "stored"))
    answer = await publish(hooked[0], {"channel": "typed:http", "data": {"text": ""}}, "?as=hal")
    assert answer.status_code == 422
    frame = answer.json()
    assert frame["op"] == "error" and frame["code"] == "invalid_data"
    assert frame["details"][0]["loc"] == ["text"]
    assert len(await seen(hooked[0], "stored")) == before


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [("forbidden", 403, "forbidden"), ("rate", 429, "rate_limited"), ("boom", 500, "internal")],
)
async def test_a_refusing_on_publish_answers_post_publish_with_its_error(
    hooked: list[GatewayProcess], data: str, status: int, code: str
) -> None:
    async with await ProtocolClient.connect(hooked[1].ws_url) as reader:
        await reader.subscribe("refusing:http")
        answer = await publish(hooked[0], {"channel": "refusing:http", "data": data})
        assert (answer.status_code, answer.json()["code"]) == (status, code)
        await publish(hooked[0], {"channel": "refusing:http", "data": "fine"})
        [message] = await reader.messages(1, "refusing:http")
        assert message["data"] == "fine"


async def test_a_refusing_on_connect_refuses_post_publish(hooked: list[GatewayProcess]) -> None:
    answer = await publish(hooked[0], {"channel": "p:x", "data": 1}, "?refuse=forbidden")
    assert answer.status_code == 403
    assert answer.json() == {
        "op": "error",
        "code": "forbidden",
        "message": "banned from this gateway",
    }


async def publish_keyed(replica: GatewayProcess, via: str, body: dict[str, Any]) -> Any:
    """Publish ``body`` as ivy on ``/ws`` or ``POST /publish``; the reply frame."""
    if via == "http":
        return (await publish(replica, body, "?as=ivy")).json()
    async with await ProtocolClient.connect(replica.ws_url + "?as=ivy") as client:
        return await client.request("publish", **body)


@pytest.mark.parametrize("via", ["ws", "http"])
async def test_on_publish_gets_the_idempotency_key_and_a_resend_is_delivered_once(
    hooked: list[GatewayProcess], via: str
) -> None:
    """The key is checked after the hook (atomically with the offset): a resend runs the
    hook again, with the same key, and is not delivered again."""
    channel, key = f"typed:once-{via}", f"hk-{via}"
    body = {"channel": channel, "data": {"text": "once"}, "idempotency_key": key}
    async with await ProtocolClient.connect(hooked[1].ws_url) as reader:
        await reader.subscribe(channel)
        first = await publish_keyed(hooked[0], via, body)
        again = await publish_keyed(hooked[1], via, body)
        assert first["op"] == again["op"] == "published", (first, again)
        assert first["offset"] == again["offset"]
        await publish_keyed(hooked[0], via, {"channel": channel, "data": {"text": "end"}})
        messages = await reader.messages(2, channel)
    assert [m["data"]["text"] for m in messages] == ["ONCE", "END"]
    stored = [*await seen(hooked[0], "stored"), *await seen(hooked[1], "stored")]
    keys = [entry.get("key") for entry in stored if entry["channel"] == channel]
    assert sorted(keys, key=str) == [None, key, key]


async def test_with_auth_on_post_publish_needs_a_token_or_a_principal_from_on_connect(
    with_auth: GatewayProcess,
) -> None:
    async with await ProtocolClient.connect(
        with_auth.ws_url + "?token=" + connection_token("reader")
    ) as reader:
        await reader.subscribe("s:auth")
        refused = await publish(with_auth, {"channel": "s:auth", "data": "no"})
        assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
        by_hook = await publish(with_auth, {"channel": "s:auth", "data": "hook"}, Cookie="sid=jo")
        assert by_hook.status_code == 200, by_hook.text
        token = connection_token("kim")
        by_token = await publish(
            with_auth, {"channel": "s:auth", "data": "token"}, authorization=f"Bearer {token}"
        )
        assert by_token.status_code == 200, by_token.text
        messages = await reader.messages(2, "s:auth")
    assert [(m["data"], m["from"]["user"]) for m in messages] == [("hook", "jo"), ("token", "kim")]
