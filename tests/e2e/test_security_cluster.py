"""Security across real replicas: `python -m gateway serve` processes on a real redis-server."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer
from tests.support.tokens import SECRET, connection_token, forged_signature

API_KEY = "e2e-api-key-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
_prefixes = itertools.count()


@pytest.fixture
def secure_pair(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> Callable[..., list[GatewayProcess]]:
    """``secure_pair(*args)``: two replicas with tokens and an API key, a registry of their own."""

    def start(*args: str, **settings: Any) -> list[GatewayProcess]:
        return gateways(
            2,
            redis_url=redis_server.url,
            redis_prefix=f"sec{next(_prefixes)}",
            jwt_secret=SECRET,
            api_key=API_KEY,
            **settings,
        )

    return start


async def user(replica: GatewayProcess, sub: str) -> ProtocolClient:
    return await ProtocolClient.connect(f"{replica.ws_url}?token={connection_token(sub)}")


async def info(replica: GatewayProcess) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=replica.http_url, headers=AUTH) as http:
        response = await http.get("/api/info")
        assert response.status_code == 200, response.text
        nodes: list[dict[str, Any]] = response.json()["nodes"]
        return nodes


async def test_disconnect_closes_the_user_on_every_replica(
    secure_pair: Callable[..., list[GatewayProcess]],
) -> None:
    first, second = secure_pair()
    alice_one, alice_two = await user(first, "alice"), await user(second, "alice")
    async with await user(second, "bob") as bob:
        async with httpx.AsyncClient(base_url=first.http_url, headers=AUTH) as http:
            response = await http.post("/api/disconnect", json={"user": "alice"})
            assert response.status_code == 200
        for client in (alice_one, alice_two):
            code, frames = await client.closed()
            assert code == 4003
            assert frames[-1]["op"] == "disconnect" and frames[-1]["code"] == 4003
        assert (await bob.request("ping"))["op"] == "pong"


async def test_info_lists_both_replicas_and_drops_a_killed_one(
    secure_pair: Callable[..., list[GatewayProcess]],
) -> None:
    first, second = secure_pair()
    async with await user(second, "alice") as alice:
        await alice.subscribe("room:1")

        async def second_reports_its_client() -> bool:
            nodes = {node["node"]: node for node in await info(first)}
            return set(nodes) == {first.node_id, second.node_id} and (
                nodes[second.node_id]["connections"],
                nodes[second.node_id]["subscriptions"],
            ) == (1, 1)

        await wait_until(second_reports_its_client, 10, "both replicas in /api/info")
    second.kill()

    async def only_first_left() -> bool:
        return [node["node"] for node in await info(first)] == [first.node_id]

    await wait_until(only_first_left, 10, "the killed replica to drop out of /api/info")


async def test_api_publish_presence_and_history_span_the_replicas(
    secure_pair: Callable[..., list[GatewayProcess]],
) -> None:
    first, second = secure_pair(namespaces='{"room": {"presence": true}}')
    async with await user(first, "alice") as alice, await user(second, "bob") as bob:
        await alice.subscribe("room:1")
        await bob.subscribe("room:1")
        async with httpx.AsyncClient(base_url=second.http_url, headers=AUTH) as http:
            response = await http.post("/api/publish", json={"channel": "room:1", "data": "hi"})
            assert response.status_code == 200 and response.json() == {"offset": 1}
        for client in (alice, bob):
            [message] = await client.messages(1)
            assert message["data"] == "hi" and message["offset"] == 1 and "from" not in message
        async with httpx.AsyncClient(base_url=first.http_url, headers=AUTH) as http:
            presence = (await http.get("/api/presence/room:1")).json()
            assert sorted(entry["user"] for entry in presence["clients"].values()) == [
                "alice",
                "bob",
            ]
            history = (await http.get("/api/history/room:1")).json()
            assert [m["data"] for m in history["messages"]] == ["hi"]


async def test_no_secret_reaches_the_logs(redis_server: RedisServer) -> None:
    replica = GatewayProcess(
        "logs",
        redis_url=redis_server.url,
        redis_prefix="seclogs",
        jwt_secret=SECRET,
        api_key=API_KEY,
        allowed_origins="https://app.example",
    )
    replica.start("--log-level", "debug")
    try:
        good, bad = connection_token("alice"), forged_signature(connection_token("bob"))
        async with await ProtocolClient.connect(f"{replica.ws_url}?token={good}") as alice:
            await alice.request("refresh", token=connection_token("alice"))
        client = await ProtocolClient.connect(f"{replica.ws_url}?token={bad}", welcome=False)
        assert (await client.closed())[0] == 4001
        with pytest.raises(InvalidStatus):
            await connect(
                f"{replica.ws_url}?token={good}", additional_headers={"Origin": "https://x.example"}
            )
        async with httpx.AsyncClient(base_url=replica.http_url) as http:
            assert (await http.get("/api/info", headers=AUTH)).status_code == 200
            wrong = {"Authorization": f"Bearer {API_KEY[:-1]}"}
            assert (await http.get("/api/info", headers=wrong)).status_code == 401
        log = replica.log.read_text()
        records = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
        messages = "\n".join(record["message"] for record in records)
        assert '"WebSocket /ws?token=***" 403' in messages
        assert '"token":"***"' in messages
        assert not [record for record in records if record["level"] in ("error", "critical")]
        for secret in (SECRET, API_KEY, API_KEY[:-1], good, bad, good.split(".")[2][-12:]):
            assert secret not in log
    finally:
        replica.kill()
