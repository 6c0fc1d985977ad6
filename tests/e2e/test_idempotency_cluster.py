"""Idempotent publishing across real replicas: the same key sent to two replicas at once,
on a standalone redis-server and on a three-master Redis Cluster, is published once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer

KEYS = 40
API_KEY = "idempotency-api-key"
NAMESPACES = orjson.dumps({"bare": {"history_size": 0}}).decode()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["standalone", "cluster"])
def replicas(
    request: pytest.FixtureRequest, gateways: Callable[..., list[GatewayProcess]]
) -> list[GatewayProcess]:
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return gateways(
            2,
            redis_url=cluster.url,
            redis_cluster=True,
            rate=0,
            api_key=API_KEY,
            namespaces=NAMESPACES,
        )
    server: RedisServer = request.getfixturevalue("redis_server")
    return gateways(2, redis_url=server.url, rate=0, api_key=API_KEY, namespaces=NAMESPACES)


async def race(left: ProtocolClient, right: ProtocolClient, frame: dict[str, object]) -> list[int]:
    """Send the same publish on both connections before reading either reply."""
    await asyncio.gather(left.send(frame), right.send(frame))
    replies = await asyncio.gather(
        *(client.expect(lambda f: f.get("id") == frame["id"]) for client in (left, right))
    )
    assert all(reply["op"] == "published" for reply in replies), replies
    return [int(reply["offset"]) for reply in replies]


@pytest.mark.parametrize("channel", ["race:h", "shard:7", "bare:race"])
async def test_racing_duplicates_on_two_replicas_publish_once(
    replicas: list[GatewayProcess], channel: str
) -> None:
    first, second = replicas
    history = channel != "bare:race"
    async with (
        await ProtocolClient.connect(first.ws_url) as reader,
        await ProtocolClient.connect(first.ws_url) as left,
        await ProtocolClient.connect(second.ws_url) as right,
    ):
        await reader.subscribe(channel)
        offsets = []
        for n in range(KEYS):
            frame = {"op": "publish", "id": n, "channel": channel, "data": n}
            if history:
                offsets.append(await race(left, right, {**frame, "idempotency_key": f"k{n}"}))
            else:
                await asyncio.gather(
                    *(c.send({**frame, "idempotency_key": f"k{n}"}) for c in (left, right))
                )
                for client in (left, right):
                    assert (await client.expect(lambda f, n=n: f.get("id") == n))["op"] == (
                        "published"
                    )
        await left.publish(channel, "end")
        received = await reader.messages(KEYS + 1, channel=channel)
        assert [m["data"] for m in received] == [*range(KEYS), "end"]
        if history:
            assert [a for a, b in offsets if a == b] == list(range(1, KEYS + 1))
            assert [m["offset"] for m in received] == list(range(1, KEYS + 2))


async def test_racing_server_api_duplicates_publish_once(replicas: list[GatewayProcess]) -> None:
    first, second = replicas
    channel = "race:api"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        await ProtocolClient.connect(second.ws_url) as reader,
        httpx.AsyncClient(headers=headers) as http,
    ):
        await reader.subscribe(channel)
        for n in range(10):
            body = {"channel": channel, "data": n, "idempotency_key": f"api{n}"}
            answers = await asyncio.gather(
                *(http.post(f"{r.http_url}/api/publish", json=body) for r in (first, second))
            )
            assert [a.status_code for a in answers] == [200, 200]
            assert answers[0].json() == answers[1].json() == {"offset": n + 1}
        received = await reader.messages(10, channel=channel)
        assert [m["data"] for m in received] == list(range(10))
        too_long = {"channel": channel, "data": 1, "idempotency_key": "x" * 65}
        refused = await http.post(f"{first.http_url}/api/publish", json=too_long)
        assert refused.status_code == 422
