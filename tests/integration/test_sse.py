"""``GET /sse`` and ``POST /publish`` on a gateway served in process (memory broker): the
stream's frames and ids, resuming from an id, and every rejection path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from gateway.settings import Settings
from gateway.wire.sse import decode_positions
from tests.support.client import ProtocolClient
from tests.support.inprocess import LocalGateway, serve_in_process
from tests.support.net import wait_until
from tests.support.sse import open_stream, sse_url
from tests.support.tokens import SECRET, connection_token

NAMESPACES = {"ro": {"publish": False}, "bare": {"history_size": 0}}


@pytest.fixture
async def gateway(settings_factory: Callable[..., Settings]) -> AsyncIterator[LocalGateway]:
    async with serve_in_process(settings_factory(namespaces=NAMESPACES, rate=0)) as served:
        yield served


async def post(gateway: LocalGateway, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    async with httpx.AsyncClient() as http:
        return await http.post(f"{gateway.http_url}/publish", content=content, headers=headers)


async def test_a_stream_sends_welcome_subscribed_and_messages_each_with_its_position(
    gateway: LocalGateway,
) -> None:
    async with open_stream(gateway.http_url, ["s:a", "s:b"]) as stream:
        welcome = await stream.expect(lambda f: f["op"] == "welcome")
        assert welcome["client"] and welcome["version"] == 1
        subscribed = await stream.subscribed(["s:a", "s:b"])
        assert {f["op"] for f in subscribed.values()} == {"subscribed"}
        for data in ("one", "two"):
            reply = await post(gateway, {"channel": "s:b", "data": data})
            assert reply.status_code == 200
        assert (await post(gateway, {"channel": "s:a", "data": "three"})).json() == {
            "op": "published",
            "channel": "s:a",
            "offset": 1,
        }
        received = await stream.messages(3)
        assert [m["data"] for m in received] == ["one", "two", "three"]
        positions = decode_positions(stream.last_event_id, 2)
        assert positions is not None
        [a, b] = positions
        assert a is not None and (a.offset, a.epoch) == (1, subscribed["s:a"]["epoch"])
        assert b is not None and (b.offset, b.epoch) == (2, subscribed["s:b"]["epoch"])


@pytest.mark.parametrize("via", ["header", "query"])
async def test_an_event_id_resumes_every_channel_with_recovery(
    gateway: LocalGateway, via: str
) -> None:
    channels = [f"r{via}:a", f"r{via}:b", "bare:x"]
    async with open_stream(gateway.http_url, channels) as stream:
        await stream.subscribed(channels)
        await post(gateway, {"channel": channels[0], "data": 1})
        await stream.messages(1)
        resume = stream.last_event_id
    for channel, data in ((channels[0], 2), (channels[1], 3), (channels[0], 4)):
        await post(gateway, {"channel": channel, "data": data})
    options: dict[str, Any] = (
        {"last_event_id": resume} if via == "header" else {"lastEventId": resume}
    )
    async with open_stream(gateway.http_url, channels, **options) as stream:
        subscribed = await stream.subscribed(channels)
        assert [subscribed[c]["recovered"] for c in channels] == [True, True, False]
        received = await stream.messages(3)
        assert sorted((m["channel"], m["data"]) for m in received) == [
            (channels[0], 2),
            (channels[0], 4),
            (channels[1], 3),
        ]


async def test_an_id_of_another_channel_list_recovers_nothing(gateway: LocalGateway) -> None:
    async with open_stream(gateway.http_url, ["o:a"], last_event_id="1.5:AAAAAAAA.") as stream:
        subscribed = await stream.subscribed(["o:a"])
        assert subscribed["o:a"]["recovered"] is False


async def test_latest_sends_each_channels_newest_message(gateway: LocalGateway) -> None:
    for data in ("old", "new"):
        await post(gateway, {"channel": "l:a", "data": data})
    async with open_stream(gateway.http_url, ["l:a", "l:b"], latest="true") as stream:
        await stream.subscribed(["l:a", "l:b"])
        [latest] = await stream.messages(1)
        assert latest["data"] == "new"
        positions = decode_positions(stream.last_event_id, 2)
        assert positions is not None and positions[0] is not None
        assert positions[0].offset == 2


async def test_a_channel_the_client_may_not_subscribe_gets_an_error_with_its_name(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(namespaces={"priv": {"subscribe": "token"}})
    async with (
        serve_in_process(settings) as gateway,
        open_stream(gateway.http_url, ["priv:x", "open"]) as stream,
    ):
        found = await stream.subscribed(["priv:x", "open"])
        assert found["priv:x"]["op"] == "error" and found["priv:x"]["code"] == "forbidden"
        assert found["open"]["op"] == "subscribed"


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("channel=bad%20name", 400),
        ("channel=a&channel=a", 400),
        ("&".join(f"channel=c{n}" for n in range(129)), 400),
        (f"channel=a&name={'x' * 65}", 400),
    ],
)
async def test_bad_stream_requests_are_refused_with_a_reason(
    gateway: LocalGateway, query: str, status: int
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway.http_url}/sse?{query}")
    assert response.status_code == status
    assert response.text.strip()


async def test_a_stream_may_name_no_channel(gateway: LocalGateway) -> None:
    async with open_stream(gateway.http_url, []) as stream:
        assert (await stream.expect(lambda f: True))["op"] == "welcome"


async def test_latest_may_name_some_channels(gateway: LocalGateway) -> None:
    for channel in ("ls:a", "ls:b"):
        await post(gateway, {"channel": channel, "data": channel})
    async with open_stream(gateway.http_url, ["ls:a", "ls:b"], latest="ls:b") as stream:
        await stream.subscribed(["ls:a", "ls:b"])
        [latest] = await stream.messages(1)
        assert latest["data"] == "ls:b"
        await post(gateway, {"channel": "ls:a", "data": "live"})
        [live] = await stream.messages(1)
        assert live["data"] == "live"


async def test_only_get_opens_a_stream(gateway: LocalGateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway.http_url}/sse?channel=a")
    assert response.status_code == 405


async def test_with_auth_a_stream_needs_a_valid_token(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(jwt_secret=SECRET)
    token = connection_token("alice")
    async with serve_in_process(settings) as gateway, httpx.AsyncClient() as http:
        for suffix, headers in (
            ("", {}),
            ("&token=nonsense", {}),
            ("", {"Authorization": "Bearer nonsense"}),
            (f"&token={connection_token('bob', ttl=-60)}", {}),
        ):
            response = await http.get(f"{gateway.http_url}/sse?channel=a{suffix}", headers=headers)
            assert response.status_code == 401, (suffix, headers)
        for options in ({"token": token}, {"headers": {"Authorization": f"Bearer {token}"}}):
            async with open_stream(gateway.http_url, ["a"], **options) as stream:
                welcome = await stream.expect(lambda f: f["op"] == "welcome")
                assert welcome["user"] == "alice"


async def test_a_stream_from_a_refused_origin_gets_403(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(allowed_origins="https://app.example")
    async with serve_in_process(settings) as gateway, httpx.AsyncClient() as http:
        url = sse_url(gateway.http_url, ["a"])
        refused = await http.get(url, headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        async with open_stream(
            gateway.http_url, ["a"], headers={"Origin": "https://app.example"}
        ) as stream:
            header = stream.response.headers["access-control-allow-origin"]
            assert header == "https://app.example"


async def test_streams_count_against_max_connections(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serve_in_process(settings_factory(max_connections=1)) as gateway:
        async with open_stream(gateway.http_url, ["a"]) as stream:
            await stream.expect(lambda f: f["op"] == "welcome")
            async with httpx.AsyncClient() as http:
                assert (await http.get(sse_url(gateway.http_url, ["b"]))).status_code == 503
        await wait_until(lambda: len(gateway.replica.connections) == 0, 5, "the stream to end")
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            assert client.welcome["op"] == "welcome"


async def test_a_stream_that_is_not_read_is_closed_as_a_slow_consumer(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_queue_bytes=65536, max_message_bytes=65536, rate=0)
    async with serve_in_process(settings) as gateway:
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"GET /sse?channel=slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await wait_until(lambda: len(gateway.replica.connections) == 1, 5, "the stream")
        replica = gateway.replica
        async with await ProtocolClient.connect(gateway.ws_url) as publisher:
            payload = "x" * 60000
            for _ in range(400):
                await publisher.publish("slow", payload)
                if replica.stats.slow_consumers:
                    break
        await wait_until(lambda: replica.stats.slow_consumers == 1, 10, "the slow consumer")
        await wait_until(lambda: len(replica.connections) == 0, 10, "the stream to be dropped")
        writer.close()


async def test_a_stream_gets_heartbeat_comments(settings_factory: Callable[..., Settings]) -> None:
    async with (
        serve_in_process(settings_factory(ping_seconds=0.2)) as gateway,
        httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http,
        http.stream("GET", sse_url(gateway.http_url, ["hb"])) as response,
    ):
        seen = [line async for line in _lines_until(response, ": ping")]
        assert seen[-1] == ": ping"


async def _lines_until(response: httpx.Response, wanted: str) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        yield line
        if line == wanted:
            return


async def test_a_server_close_sends_disconnect_then_ends_the_stream(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(jwt_secret=SECRET, api_key="k")
    async with (
        serve_in_process(settings) as gateway,
        open_stream(gateway.http_url, ["a"], token=connection_token("carol")) as stream,
    ):
        await stream.subscribed(["a"])
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{gateway.http_url}/api/disconnect",
                json={"user": "carol"},
                headers={"Authorization": "Bearer k"},
            )
            assert answer.status_code == 200
        frames = await stream.until_end()
        assert frames[-1]["op"] == "disconnect" and frames[-1]["code"] == 4003


async def test_publish_over_http_is_idempotent(gateway: LocalGateway) -> None:
    body = {"channel": "p:a", "data": {"n": 1}, "idempotency_key": "once"}
    first, again = await post(gateway, body), await post(gateway, body)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"op": "published", "channel": "p:a", "offset": 1}
    bare = await post(gateway, {"channel": "bare:p", "data": 1})
    assert bare.json() == {"op": "published", "channel": "bare:p"}


async def test_publish_over_http_shows_the_given_client_as_the_sender(
    gateway: LocalGateway,
) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as reader:
        await reader.subscribe("p:from")
        await post(gateway, {"channel": "p:from", "data": 1, "client": "stream-id_1"})
        [message] = await reader.messages(1)
        assert message["from"] == {"client": "stream-id_1", "user": None}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        ([1, 2], 400, "bad_request"),
        ({"channel": "a"}, 400, "bad_request"),
        ({"channel": "a b", "data": 1}, 400, "bad_request"),
        ({"channel": "a", "data": 1, "extra": 1}, 400, "bad_request"),
        ({"channel": "a", "data": 1, "idempotency_key": "k" * 65}, 400, "bad_request"),
        ({"channel": "a", "data": 1, "idempotency_key": ""}, 400, "bad_request"),
        ({"channel": "a", "data": 1, "client": "no spaces"}, 400, "bad_request"),
        ({"channel": "ro:x", "data": 1}, 403, "forbidden"),
        ({"channel": "a", "data": "x" * 70000}, 413, "too_large"),
    ],
)
async def test_publish_over_http_refuses_with_the_protocols_error_frame(
    gateway: LocalGateway, body: Any, status: int, code: str
) -> None:
    response = await post(gateway, body)
    assert response.status_code == status
    frame = response.json()
    assert frame["op"] == "error" and frame["code"] == code and frame["message"]


async def test_publish_over_http_with_auth_needs_the_connection_token(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(jwt_secret=SECRET, namespaces={"mine": {"publish": False}})
    async with serve_in_process(settings) as gateway:
        body = {"channel": "a", "data": 1}
        assert (await post(gateway, body)).status_code == 401
        assert (await post(gateway, body, Authorization="Bearer junk")).status_code == 401
        token = connection_token("dave", publish=["mine:*"])
        good = await post(
            gateway, {"channel": "mine:1", "data": 1}, Authorization=f"Bearer {token}"
        )
        assert good.status_code == 200
        other = await post(gateway, body, Authorization=f"Bearer {token}")
        assert other.status_code == 403


async def test_publish_over_http_is_rate_limited_per_caller(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serve_in_process(settings_factory(rate=3)) as gateway:
        answers = [(await post(gateway, {"channel": "a", "data": n})).status_code for n in range(6)]
        assert answers[:3] == [200, 200, 200]
        assert 429 in answers[3:]


async def test_publish_over_http_from_another_origin_gets_cors_and_preflight(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(allowed_origins="https://app.example")
    async with serve_in_process(settings) as gateway, httpx.AsyncClient() as http:
        url = f"{gateway.http_url}/publish"
        preflight = await http.options(url, headers={"Origin": "https://app.example"})
        assert preflight.status_code == 204
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        allowed = await http.post(
            url, json={"channel": "a", "data": 1}, headers={"Origin": "https://app.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        refused = await http.post(
            url, json={"channel": "a", "data": 1}, headers={"Origin": "https://evil.example"}
        )
        assert refused.status_code == 403
        assert (await http.options(url, headers={"Origin": "https://evil.example"})).status_code


async def test_events_of_one_loop_pass_leave_together_as_clean_event_stream_lines(
    gateway: LocalGateway,
) -> None:
    """A burst (one NDJSON frame of publishes, fanned out in one pass) leaves as one write:
    nothing but SSE fields and blank lines on the wire, whichever path wrote it."""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as http,
        http.stream("GET", sse_url(gateway.http_url, ["burst"])) as response,
        await ProtocolClient.connect(gateway.ws_url) as publisher,
    ):
        lines = response.aiter_lines()
        seen: list[str] = []
        while not any('"op":"subscribed"' in line for line in seen):
            seen.append(await anext(lines))
        batch = "\n".join(
            orjson.dumps({"op": "publish", "channel": "burst", "data": n}).decode()
            for n in range(20)
        )
        await publisher.send(batch)
        while sum('"op":"message"' in line for line in seen) < 20:
            seen.append(await anext(lines))
    fields = ("id: ", "data: ", "retry: ", ": ")
    assert all(line == "" or line.startswith(fields) for line in seen), seen
    ids = [line for line in seen if line.startswith("id: ")]
    assert ids[-1].startswith("id: 1.20:")
