"""Hooks against real replicas: two ``gateway serve --app tests.apps.hooked:gw`` processes
on a real redis-server (and a third with JWT auth on), driven by raw protocol clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from gateway_client import GatewayClient, GatewayClientError
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer
from tests.support.tokens import SECRET, connection_token

APP = "tests.apps.hooked:gw"
API_KEY = "hooks-api-key"


def start(replicas: list[GatewayProcess]) -> list[GatewayProcess]:
    for replica in replicas:
        replica.launch("--app", APP)
    for replica in replicas:
        replica.wait_ready()
    return replicas


@pytest.fixture(scope="module")
def hooked(redis_server: RedisServer) -> Iterator[list[GatewayProcess]]:
    replicas = [
        GatewayProcess(
            f"hook{index}", redis_url=redis_server.url, rate=0, hook_timeout=2, api_key=API_KEY
        )
        for index in (1, 2)
    ]
    yield start(replicas)
    for replica in replicas:
        replica.kill()


@pytest.fixture(scope="module")
def with_auth(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    [replica] = start([GatewayProcess("hook-auth", redis_url=redis_server.url, jwt_secret=SECRET)])
    yield replica
    replica.kill()


async def client(replica: GatewayProcess, query: str = "", **options: Any) -> ProtocolClient:
    return await ProtocolClient.connect(replica.ws_url + query, **options)


async def seen(replica: GatewayProcess, what: str) -> list[Any]:
    async with await client(replica, "?as=inspector") as inspector:
        reply = await inspector.request("rpc", method="seen", data=what)
        assert reply["op"] == "rpc", reply
        return list(reply["data"])


async def refused(url: str) -> tuple[int | None, str, list[dict[str, Any]]]:
    """Connect, expect the server to close at once: the code, the reason and the frames."""
    probe = await ProtocolClient.connect(url, welcome=False)
    code, frames = await probe.closed()
    received = probe.connection.protocol.close_rcvd
    return code, received.reason if received else "", frames


# on_connect


async def test_on_connect_names_the_user_from_the_query_or_the_session_cookie(
    hooked: list[GatewayProcess],
) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        assert alice.welcome["user"] == "alice"
        reply = await alice.request("rpc", method="whoami")
        assert reply["data"]["user"] == "alice" and reply["data"]["info"] == {"name": "Alice"}
    cookie = {"Cookie": "theme=dark; sid=bob", "x-test-agent": "probe/1"}
    async with await client(hooked[0], additional_headers=cookie) as bob:
        assert bob.welcome["user"] == "bob"
    connects = await seen(hooked[0], "connect")
    probe = next(entry for entry in connects if entry["agent"] == "probe/1")
    assert probe == {
        "path": "/ws",
        "client_ip": "127.0.0.1",
        "agent": "probe/1",
        "claims": None,
        "transport": "pubsub",
    }


async def test_on_connect_returning_none_leaves_an_anonymous_connection(
    hooked: list[GatewayProcess],
) -> None:
    async with await client(hooked[0], "?name=Zed") as anonymous:
        assert anonymous.welcome["user"] is None
        reply = await anonymous.request("rpc", method="whoami")
        assert reply["data"]["info"] == {"name": "Zed"}


@pytest.mark.parametrize(
    ("refusal", "code", "reason"),
    [
        ("unauthorized", 4001, "log in first"),
        ("forbidden", 4003, "banned from this gateway"),
        ("boom", 1011, "internal error"),
    ],
)
async def test_a_refusing_on_connect_closes_with_its_code_and_message(
    hooked: list[GatewayProcess], refusal: str, code: int, reason: str
) -> None:
    closed_with, close_reason, frames = await refused(f"{hooked[0].ws_url}?refuse={refusal}")
    assert (closed_with, close_reason) == (code, reason)
    assert [frame["op"] for frame in frames] == ["disconnect"]
    assert frames[0]["code"] == code and frames[0]["reason"] == reason
    if refusal == "boom":
        await wait_until(lambda: "a bug in on_connect" in hooked[0].log_tail(400), 5, "traceback")
        assert "hook.failed kind=on_connect" in hooked[0].log_tail(400)


async def test_on_connect_refuses_plain_text_clients_too(hooked: list[GatewayProcess]) -> None:
    closed_with, reason, _ = await refused(f"{hooked[0].plain_url}?channel=chat&refuse=forbidden")
    assert (closed_with, reason) == (4003, "banned from this gateway")


async def test_on_connect_names_plain_text_publishers(hooked: list[GatewayProcess]) -> None:
    async with await client(hooked[1]) as watcher:
        await watcher.subscribe("plainhooks")
        async with connect(f"{hooked[0].plain_url}?channel=plainhooks&as=carol") as plain:
            await plain.send("hello")
            [message] = await watcher.messages(1, "plainhooks")
    assert message["data"] == "hello" and message["from"]["user"] == "carol"
    connects = await seen(hooked[0], "connect")
    assert any(
        entry["transport"] == "plain" and entry["path"] == "/websocket" for entry in connects
    )


async def test_a_slow_on_connect_delays_only_its_own_client(hooked: list[GatewayProcess]) -> None:
    waiting = await client(hooked[0], "?refuse=wait&as=slowpoke", welcome=False)
    try:
        async with await client(hooked[0], "?as=quick") as quick:
            assert (await quick.request("ping"))["op"] == "pong"
            await quick.request("rpc", method="release", data="connect")
        welcome = await waiting.expect(lambda frame: True)
        assert welcome["op"] == "welcome" and welcome["user"] == "slowpoke"
    finally:
        await waiting.close()


async def test_with_auth_on_the_hook_admits_without_a_token(with_auth: GatewayProcess) -> None:
    async with await client(with_auth, "?as=dora") as dora:
        assert dora.welcome["user"] == "dora"
        assert (await dora.request("ping"))["op"] == "pong"


async def test_with_auth_on_the_hook_sees_the_verified_claims(with_auth: GatewayProcess) -> None:
    token = connection_token("erin", info={"name": "Erin"})
    async with await client(with_auth, f"?token={token}") as erin:
        assert erin.welcome["user"] == "erin"
    connects = await seen(with_auth, "connect")
    claims = [entry["claims"] for entry in connects if entry["claims"] is not None]
    assert claims and claims[-1]["sub"] == "erin" and claims[-1]["info"] == {"name": "Erin"}


async def test_with_auth_on_an_invalid_token_is_refused_before_the_hook(
    with_auth: GatewayProcess,
) -> None:
    before = len(await seen(with_auth, "connect"))
    closed_with, _, _ = await refused(f"{with_auth.ws_url}?token=not.a.token&as=mallory")
    assert closed_with == 4001
    assert len(await seen(with_auth, "connect")) == before + 1  # the inspector's own


async def test_with_auth_on_and_no_principal_the_token_rules_apply(
    with_auth: GatewayProcess,
) -> None:
    async with await client(with_auth, welcome=False) as stranger:
        reply = await stranger.request("ping")
        assert reply["code"] == "unauthorized"
        await stranger.send({"op": "connect", "id": "c", "token": connection_token("fay")})
        welcome = await stranger.expect(lambda frame: frame["op"] == "welcome")
        assert welcome["user"] == "fay"


# on_subscribe


async def test_on_subscribe_admits_members_and_refuses_others(hooked: list[GatewayProcess]) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        await alice.subscribe("rooms:alice-den")
        await alice.subscribe("rooms:open")
        reply = await alice.request("subscribe", channel="rooms:bob-den")
        assert reply["code"] == "forbidden"
        assert reply["message"] == "alice is not a member of bob-den"


async def test_on_subscribe_runs_after_the_built_in_checks(hooked: list[GatewayProcess]) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        reply = await alice.request("subscribe", channel="$rooms:alice-secret")
        assert reply["code"] == "forbidden" and "subscription token" in reply["message"]


async def test_a_failing_on_subscribe_is_internal_and_the_connection_stays_open(
    hooked: list[GatewayProcess],
) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        reply = await alice.request("subscribe", channel="rooms:boom")
        assert (reply["code"], reply["message"]) == ("internal", "internal error")
        assert (await alice.request("ping"))["op"] == "pong"
        await alice.subscribe("rooms:alice-after")
    await wait_until(lambda: "a bug in on_subscribe" in hooked[0].log_tail(400), 5, "traceback")


async def test_a_hook_past_hook_timeout_is_internal(hooked: list[GatewayProcess]) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        reply = await alice.request("subscribe", channel="rooms:never", timeout=10)
        assert reply["code"] == "internal"
        assert (await alice.request("ping"))["op"] == "pong"
    assert "hook.timeout kind=on_subscribe" in hooked[0].log_tail(400)


async def test_a_slow_on_subscribe_delays_neither_other_clients_nor_fan_out(
    hooked: list[GatewayProcess],
) -> None:
    async with (
        await client(hooked[0], "?as=slow") as slow,
        await client(hooked[0], "?as=quick") as quick,
        await client(hooked[1], "?as=remote") as remote,
    ):
        await slow.subscribe("fanout:slowhook")
        await slow.send({"op": "subscribe", "id": "held", "channel": "rooms:slow"})
        await slow.send({"op": "ping", "id": "after"})
        assert (await quick.request("ping"))["op"] == "pong"
        await quick.subscribe("rooms:open")
        await remote.publish("fanout:slowhook", "while the hook waits")
        [message] = await slow.messages(1, "fanout:slowhook")
        assert message["data"] == "while the hook waits"
        assert not [frame for frame in slow.inbox if frame.get("id") in ("held", "after")]
        await quick.request("rpc", method="release", data="subscribe")
        held = await slow.expect(lambda frame: frame.get("id") == "held")
        after = await slow.expect(lambda frame: frame.get("id") == "after")
        assert held["code"] == "forbidden" and after["op"] == "pong"


async def test_a_blocking_plain_def_hook_runs_in_a_thread_and_blocks_no_one_else(
    hooked: list[GatewayProcess],
) -> None:
    async with (
        await client(hooked[0], "?as=waiter") as waiter,
        await client(hooked[0], "?as=quick") as quick,
    ):
        await waiter.send({"op": "subscribe", "id": "blocked", "channel": "blocking:x"})
        await quick.subscribe("chat:while-blocked")
        assert (await quick.publish("chat:while-blocked", "still served"))["op"] == "published"
        assert not [frame for frame in waiter.inbox if frame.get("id") == "blocked"]
        await quick.request("rpc", method="release", data="blocking")
        reply = await waiter.expect(lambda frame: frame.get("id") == "blocked")
        assert reply["op"] == "subscribed"
    threads = await seen(hooked[0], "threads")
    assert threads and all(name != "MainThread" for name in threads)


# on_publish and typed channels


async def test_a_typed_publication_is_validated_stored_and_replaced(
    hooked: list[GatewayProcess],
) -> None:
    async with (
        await client(hooked[0], "?as=alice") as alice,
        await client(hooked[1], "?as=bob") as bob,
    ):
        await bob.subscribe("typed:room")
        reply = await alice.publish("typed:room", {"text": "hello", "mood": "glad"})
        [message] = await bob.messages(1, "typed:room")
    assert message["data"] == {"text": "HELLO", "by": "alice"}
    assert message["offset"] == reply["offset"] and message["from"]["user"] == "alice"
    stored = await seen(hooked[0], "stored")
    assert {"channel": "typed:room", "user": "alice", "text": "hello"} in stored


async def test_invalid_data_carries_pydantics_errors_and_skips_the_hook(
    hooked: list[GatewayProcess],
) -> None:
    before = len(await seen(hooked[0], "stored"))
    async with await client(hooked[0], "?as=alice") as alice:
        reply = await alice.request("publish", channel="typed:room", data={"text": "", "mood": 3})
        missing = await alice.request("publish", channel="typed:room", data=["not", "an", "object"])
    assert reply["op"] == "error" and reply["code"] == "invalid_data"
    assert reply["details"] == [
        {
            "loc": ["text"],
            "msg": "String should have at least 1 character",
            "type": "string_too_short",
        },
        {"loc": ["mood"], "msg": "Input should be a valid string", "type": "string_type"},
    ]
    assert reply["message"] == "data does not match the channel's model: 2 validation errors"
    assert missing["details"][0]["type"] == "model_type"
    assert len(await seen(hooked[0], "stored")) == before


async def test_the_python_client_exposes_the_details(hooked: list[GatewayProcess]) -> None:
    async with GatewayClient(hooked[0].ws_url + "?as=py") as py:
        with pytest.raises(GatewayClientError) as invalid:
            await py.publish("typed:room", {"text": ""})
        assert invalid.value.code == "invalid_data"
        assert invalid.value.details is not None and invalid.value.details[0]["loc"] == ["text"]


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ("forbidden", "forbidden", "not here"),
        ("rate", "rate_limited", "slow down"),
        ("boom", "internal", "internal error"),
        ("unencodable", "internal", "internal error"),
    ],
)
async def test_a_refusing_on_publish_answers_its_error_and_publishes_nothing(
    hooked: list[GatewayProcess], data: str, code: str, message: str
) -> None:
    async with (
        await client(hooked[0], "?as=alice") as alice,
        await client(hooked[1], "?as=bob") as bob,
    ):
        await bob.subscribe("refusing:x")
        reply = await alice.request("publish", channel="refusing:x", data=data)
        assert (reply["code"], reply["message"]) == (code, message)
        assert (await alice.publish("refusing:x", "fine"))["op"] == "published"
        [delivered] = await bob.messages(1, "refusing:x")
        assert delivered["data"] == "fine"


async def test_pipelined_publications_keep_their_order_through_a_hook_that_waits(
    hooked: list[GatewayProcess],
) -> None:
    count = 30
    async with (
        await client(hooked[0], "?as=alice") as alice,
        await client(hooked[1], "?as=bob") as bob,
    ):
        await bob.subscribe("ordered:line")
        frame = []
        for n in range(count):
            wait = (count - n) % 7 * 3  # later ones wait less: they must not overtake
            frame.append(
                {
                    "op": "publish",
                    "id": n,
                    "channel": "ordered:line",
                    "data": {"n": n, "wait": wait},
                }
            )
            if n == 10:
                frame.append(
                    {"op": "publish", "id": "bad", "channel": "refusing:x", "data": "forbidden"}
                )
            if n == 20:
                frame.append({"op": "ping", "id": "ping"})
        await alice.send("\n".join(orjson.dumps(command).decode() for command in frame))
        replies = await in_arrival_order(alice, [command["id"] for command in frame])
        messages = await bob.messages(count, "ordered:line")
    assert [reply["id"] for reply in replies] == [command["id"] for command in frame]
    offsets = [reply["offset"] for reply in replies if reply["op"] == "published"]
    assert offsets == list(range(offsets[0], offsets[0] + count))
    assert [message["data"]["n"] for message in messages] == list(range(count))
    assert [message["offset"] for message in messages] == offsets


async def in_arrival_order(client: ProtocolClient, ids: list[Any]) -> list[dict[str, Any]]:
    """The replies to the commands ``ids``, in the order they arrived."""
    remaining = set(ids)
    replies = []
    while remaining:
        reply = await client.expect(lambda frame: frame.get("id") in remaining, 10)
        remaining.discard(reply["id"])
        replies.append(reply)
    return replies


async def test_a_plain_def_on_publish_runs_in_a_thread_and_keeps_order(
    hooked: list[GatewayProcess],
) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        await alice.subscribe("synced:x")
        frame = [
            {"op": "publish", "id": n, "channel": "synced:x", "data": {"n": n}} for n in range(10)
        ]
        await alice.send("\n".join(orjson.dumps(command).decode() for command in frame))
        messages = await alice.messages(10, "synced:x")
    assert [message["data"] for message in messages] == [
        {"n": n, "thread": True} for n in range(10)
    ]


async def test_server_side_publications_skip_hooks_and_validation(
    hooked: list[GatewayProcess],
) -> None:
    async with await client(hooked[1], "?as=bob") as bob:
        await bob.subscribe("typed:server")
        reply = await bob.request(
            "rpc", method="announce", data={"channel": "typed:server", "data": {"text": ""}}
        )
        assert reply["data"]["offset"] >= 1
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{hooked[0].http_url}/api/publish",
                json={"channel": "typed:server", "data": "not even an object"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
        assert response.status_code == 200, response.text
        first, second = await bob.messages(2, "typed:server")
    assert first["data"] == {"text": ""} and "from" not in first
    assert second["data"] == "not even an object"


# rpc


async def test_rpc_answers_with_the_methods_result(hooked: list[GatewayProcess]) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        whoami = await alice.request("rpc", method="whoami")
        echo = await alice.request("rpc", method="echo", data=[1, {"a": None}])
        bare = await alice.request("rpc", method="echo")
    assert whoami == {
        "op": "rpc",
        "id": whoami["id"],
        "data": {"user": "alice", "client": alice.client_id, "info": {"name": "Alice"}},
    }
    assert echo["data"] == {"data": [1, {"a": None}], "thread": True}
    assert bare["data"] == {"data": None, "thread": True}


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"method": "nope"}, "unknown_method", "unknown method 'nope'"),
        ({"method": "fail"}, "internal", "internal error"),
        ({"method": "refuse"}, "forbidden", "only admins"),
        ({"method": 7}, "bad_request", "method must be a string of 1-128 characters"),
        ({}, "bad_request", "method is required"),
    ],
)
async def test_rpc_errors(
    hooked: list[GatewayProcess], fields: dict[str, Any], code: str, message: str
) -> None:
    async with await client(hooked[0], "?as=alice") as alice:
        reply = await alice.request("rpc", **fields)
        assert (reply["op"], reply["code"], reply["message"]) == ("error", code, message)
        assert (await alice.request("ping"))["op"] == "pong"


async def test_the_python_client_calls_rpc(hooked: list[GatewayProcess]) -> None:
    async with GatewayClient(hooked[1].ws_url + "?as=py") as py:
        assert (await py.rpc("whoami"))["user"] == "py"
        with pytest.raises(GatewayClientError) as unknown:
            await py.rpc("nope", {"x": 1})
        assert unknown.value.code == "unknown_method"


# on_disconnect


async def test_on_disconnect_is_told_how_each_connection_ended(
    hooked: list[GatewayProcess],
) -> None:
    leaving = await client(hooked[0], "?as=leaver")
    leaver = leaving.client_id
    await leaving.close()
    await wait_until(lambda: _ended(hooked[0], leaver), 5, "on_disconnect")
    [event] = [entry for entry in await seen(hooked[0], "disconnect") if entry["client"] == leaver]
    assert event == {"client": leaver, "user": "leaver", "code": 1000}


async def _ended(replica: GatewayProcess, client_id: str) -> bool:
    return any(entry["client"] == client_id for entry in await seen(replica, "disconnect"))


async def test_refused_connections_are_not_reported_as_disconnects(
    hooked: list[GatewayProcess],
) -> None:
    assert (await refused(f"{hooked[0].ws_url}?refuse=forbidden"))[0] == 4003
    marker = await client(hooked[0], "?as=marker")
    marker_id = marker.client_id
    await marker.close()
    await wait_until(lambda: _ended(hooked[0], marker_id), 5, "the marker's on_disconnect")
    events = await seen(hooked[0], "disconnect")
    assert not [event for event in events if event["code"] == 4003], events
