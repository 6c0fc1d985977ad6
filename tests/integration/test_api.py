"""The server HTTP API on one in-process replica (memory broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from gateway.settings import NamespaceOptions, Settings
from tests.support.client import ProtocolClient
from tests.support.inprocess import LocalGateway, serve_in_process
from tests.support.tokens import SECRET, connection_token

API_KEY = "api-key-for-tests-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def gateway(settings_factory: Callable[..., Settings]) -> AsyncIterator[LocalGateway]:
    settings = settings_factory(
        api_key=API_KEY,
        jwt_secret=SECRET,
        strict_namespaces=True,
        max_message_bytes=1024,
        namespaces={
            "default": NamespaceOptions(),
            "news": NamespaceOptions(publish=False),
            "live": NamespaceOptions(history_size=0),
            "room": NamespaceOptions(presence=True),
        },
    )
    async with serve_in_process(settings) as running:
        yield running


@pytest.fixture
async def http(gateway: LocalGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.http_url, headers=AUTH) as client:
        yield client


async def user(gateway: LocalGateway, sub: str) -> ProtocolClient:
    return await ProtocolClient.connect(f"{gateway.ws_url}?token={connection_token(sub)}")


CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/publish", {"channel": "c", "data": 1}),
    ("POST", "/api/broadcast", {"channels": ["c"], "data": 1}),
    ("POST", "/api/disconnect", {"user": "alice"}),
    ("GET", "/api/info", None),
    ("GET", "/api/presence/room:1", None),
    ("GET", "/api/history/c", None),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Bearer {API_KEY}x"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": API_KEY},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "longer", "basic", "bare", "empty"],
)
async def test_every_route_needs_the_api_key(gateway: LocalGateway, headers: dict[str, str]):
    async with httpx.AsyncClient(base_url=gateway.http_url, headers=headers) as client:
        for method, path, body in CALLS:
            response = await client.request(method, path, json=body)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            assert API_KEY not in response.text


async def test_without_a_configured_key_the_api_always_answers_401(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serve_in_process(settings_factory()) as gateway:
        for header in ({}, AUTH, {"Authorization": "Bearer"}):
            async with httpx.AsyncClient(base_url=gateway.http_url, headers=header) as client:
                for method, path, body in CALLS:
                    response = await client.request(method, path, json=body)
                    assert response.status_code == 401
                    assert "no API key is configured" in response.json()["detail"]


async def test_publish_reaches_subscribers_without_from(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    async with await user(gateway, "alice") as alice:
        subscribed = await alice.subscribe("news:today")
        for offset in (1, 2):
            response = await http.post("/api/publish", json={"channel": "news:today", "data": None})
            assert response.status_code == 200 and response.json() == {"offset": offset}
        messages = await alice.messages(2)
        assert messages[0] == {
            "op": "message",
            "channel": "news:today",
            "data": None,
            "offset": 1,
            "epoch": subscribed["epoch"],
        }


async def test_publish_without_history_has_no_offset(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    async with await user(gateway, "alice") as alice:
        await alice.subscribe("live:score")
        response = await http.post("/api/publish", json={"channel": "live:score", "data": [1, 0]})
        assert response.status_code == 200 and response.json() == {}
        [message] = await alice.messages(1)
        assert message == {"op": "message", "channel": "live:score", "data": [1, 0]}


async def test_broadcast_reaches_every_channel(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    async with await user(gateway, "alice") as alice:
        await alice.subscribe("a")
        await alice.subscribe("b")
        await alice.subscribe("live:c")
        body = {"channels": ["a", "b", "a", "live:c"], "data": {"n": 1}}
        response = await http.post("/api/broadcast", json=body)
        assert response.status_code == 200 and response.json() == {"offsets": {"a": 1, "b": 1}}
        received = await alice.messages(3)
        assert sorted(m["channel"] for m in received) == ["a", "b", "live:c"]
        assert all(m["data"] == {"n": 1} and "from" not in m for m in received)
        assert not [f for f in alice.inbox if f["op"] == "message"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/publish", {"data": 1}, "channel"),
        ("/api/publish", {"channel": "c"}, "data"),
        ("/api/publish", {"channel": "has space", "data": 1}, "channel"),
        ("/api/publish", {"channel": "#control", "data": 1}, "channel"),
        ("/api/publish", {"channel": "x" * 256, "data": 1}, "channel"),
        ("/api/publish", {"channel": "c", "data": 1, "extra": True}, "extra"),
        ("/api/broadcast", {"channels": [], "data": 1}, "channels"),
        ("/api/broadcast", {"channels": "c", "data": 1}, "channels"),
        ("/api/broadcast", {"channels": ["ok", "not ok"], "data": 1}, "channels"),
        ("/api/disconnect", {"user": ""}, "user"),
        ("/api/disconnect", {}, "user"),
        ("/api/disconnect", {"user": 7}, "user"),
    ],
)
async def test_invalid_bodies_get_422_naming_the_field(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = await http.post(path, json=body)
    assert response.status_code == 422
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}


async def test_a_body_that_is_not_json_gets_422(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/publish", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_unknown_namespace_is_404_and_too_large_is_413(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/publish", json={"channel": "nowhere:1", "data": 1})
    assert response.status_code == 404 and response.json()["detail"]["code"] == "unknown_namespace"
    response = await http.post("/api/publish", json={"channel": "c", "data": "x" * 2000})
    assert response.status_code == 413 and response.json()["detail"]["code"] == "too_large"
    response = await http.post("/api/broadcast", json={"channels": ["c", "nowhere:1"], "data": 1})
    assert response.status_code == 404


async def test_presence_lists_who_is_subscribed(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    token = connection_token("alice", info={"name": "Alice"})
    async with await ProtocolClient.connect(f"{gateway.ws_url}?token={token}") as alice:
        await alice.subscribe("room:1")
        response = await http.get("/api/presence/room:1")
        assert response.status_code == 200
        assert response.json() == {
            "channel": "room:1",
            "clients": {alice.client_id: {"user": "alice", "info": {"name": "Alice"}}},
        }
    response = await http.get("/api/presence/c")
    assert response.status_code == 400 and response.json()["detail"]["code"] == "bad_request"


async def test_history_reads_what_was_published(http: httpx.AsyncClient) -> None:
    for n in range(3):
        await http.post("/api/publish", json={"channel": "$log", "data": n})
    latest = await http.get("/api/history/$log")
    assert latest.status_code == 200
    body = latest.json()
    assert (body["channel"], body["offset"]) == ("$log", 3)
    assert [m["data"] for m in body["messages"]] == [0, 1, 2]
    assert body["messages"][0] == {
        "op": "message",
        "channel": "$log",
        "data": 0,
        "offset": 1,
        "epoch": body["epoch"],
    }
    after = await http.get("/api/history/%24log", params={"since": 1, "epoch": body["epoch"]})
    assert [m["offset"] for m in after.json()["messages"]] == [2, 3]
    one = await http.get("/api/history/$log", params={"limit": 1})
    assert [m["offset"] for m in one.json()["messages"]] == [3]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/history/$log", {"since": 1}, 422),
        ("/api/history/$log", {"epoch": "e"}, 422),
        ("/api/history/$log", {"since": -1, "epoch": "e"}, 422),
        ("/api/history/$log", {"limit": "many"}, 422),
        ("/api/history/$log", {"since": 0, "epoch": "not-the-epoch"}, 400),
        ("/api/history/live:x", {}, 400),
        ("/api/history/nowhere:x", {}, 404),
        ("/api/history/bad name", {}, 422),
        ("/api/presence/bad name", {}, 422),
    ],
)
async def test_history_and_presence_refusals(
    http: httpx.AsyncClient, path: str, params: dict[str, Any], status: int
) -> None:
    response = await http.get(path, params=params)
    assert response.status_code == status, response.text


async def test_disconnect_closes_every_connection_of_the_user_with_4003(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    first, second = await user(gateway, "alice"), await user(gateway, "alice")
    async with await user(gateway, "bob") as bob:
        response = await http.post("/api/disconnect", json={"user": "alice"})
        assert response.status_code == 200 and response.json() == {"user": "alice"}
        for client in (first, second):
            code, frames = await client.closed()
            assert code == 4003
            assert frames[-1] == {
                "op": "disconnect",
                "code": 4003,
                "reason": "disconnected by the server",
                "reconnect": False,
            }
        assert (await bob.request("ping"))["op"] == "pong"


async def test_info_lists_this_replica(gateway: LocalGateway, http: httpx.AsyncClient) -> None:
    async with await user(gateway, "alice") as alice:
        await alice.subscribe("a")
        await alice.subscribe("b")
        response = await http.get("/api/info")
        assert response.status_code == 200
        [node] = response.json()["nodes"]
        assert node["node"] == "test-node"
        assert (node["connections"], node["subscriptions"], node["channels"]) == (1, 2, 2)
        assert node["uptime"] >= 0 and node["started_at"] > 0
        assert API_KEY not in response.text and SECRET not in response.text


async def this_node(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/api/info")
    assert response.status_code == 200
    nodes: list[dict[str, Any]] = response.json()["nodes"]
    assert len(nodes) == 1
    return nodes[0]


async def test_info_reports_readiness_totals_and_top_channels(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    async with await user(gateway, "alice") as alice, await user(gateway, "bob") as bob:
        for client in (alice, bob):
            await client.subscribe("busy")
        await alice.subscribe("calm")
        node = await this_node(http)
    assert (node["ready"], node["readiness"]) == (True, "ready")
    assert node["at"] >= node["started_at"]
    assert set(node["totals"]) == {
        "published",
        "delivered",
        "received_bytes",
        "sent_bytes",
        "commands",
        "errors",
        "slow_consumers",
        "repairs",
    }
    assert node["top_channels"] == [
        {"channel": "busy", "subscribers": 2, "messages": 0},
        {"channel": "calm", "subscribers": 1, "messages": 0},
    ]


async def test_info_totals_move_with_a_publish_and_an_error(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    async with await user(gateway, "alice") as alice, await user(gateway, "bob") as bob:
        for client in (alice, bob):
            await client.subscribe("news:today")
        await alice.subscribe("talk")
        before = await this_node(http)
        await http.post("/api/publish", json={"channel": "news:today", "data": "hello"})
        await alice.publish("talk", "hi")
        refused = await alice.request("publish", channel="news:today", data="no")
        assert refused["code"] == "forbidden"
        await alice.messages(2)
        await bob.messages(1)
        after = await this_node(http)
    was, now = before["totals"], after["totals"]
    assert now["published"] - was["published"] == 2
    assert now["delivered"] - was["delivered"] == 3
    assert now["sent_bytes"] > was["sent_bytes"] and now["received_bytes"] > was["received_bytes"]
    assert now["commands"]["ok"] - was["commands"]["ok"] == 1
    assert now["commands"]["forbidden"] - was["commands"].get("forbidden", 0) == 1
    assert now["errors"]["forbidden"] - was["errors"].get("forbidden", 0) == 1
    assert after["at"] > before["at"]
    assert {"channel": "news:today", "subscribers": 2, "messages": 1} in after["top_channels"]


async def test_info_lists_a_replica_that_announces_only_the_first_fields(
    gateway: LocalGateway, http: httpx.AsyncClient
) -> None:
    older = {"node": "older", "started_at": 1.0, "connections": 4, "subscriptions": 5}
    state = orjson.dumps({**older, "channels": 3})
    await gateway.replica.broker.register_node("older", state, 30)
    response = await http.get("/api/info")
    assert response.status_code == 200
    listed = {node["node"]: node for node in response.json()["nodes"]}
    assert set(listed["older"]) == {*older, "channels", "uptime"}
    assert listed["test-node"]["totals"]["published"] == 0


async def test_openapi_lists_the_api(gateway: LocalGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.http_url) as client:
        schema = (await client.get("/openapi.json")).json()
        assert {
            "/api/publish",
            "/api/broadcast",
            "/api/disconnect",
            "/api/info",
            "/api/presence/{channel}",
            "/api/history/{channel}",
        } <= set(schema["paths"])
        assert "HTTPBearer" in schema["components"]["securitySchemes"]
        models = schema["components"]["schemas"]
        assert {"ready", "totals", "top_channels"} <= set(models["NodeInfo"]["properties"])
        assert not {"ready", "totals", "top_channels"} & set(models["NodeInfo"]["required"])
        assert models["NodeTotals"]["properties"]["delivered"]["description"]
        assert (await client.get("/docs")).status_code == 200
