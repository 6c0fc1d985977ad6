"""`gateway cluster` for real: redis-server, replicas and nginx as processes, clients via nginx."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.client import ProtocolClient
from tests.support.cluster import ClusterProcess, alive, descendants
from tests.support.net import wait_until, wait_until_sync
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def three_replicas() -> Iterator[ClusterProcess]:
    """One cluster of three replicas and its own redis-server, shared by a test module."""
    cluster = ClusterProcess(replicas=3, settings={"drain_seconds": 1})
    try:
        yield cluster.start()
    finally:
        cluster.kill()


@pytest.fixture
def start_cluster() -> Iterator[Callable[..., ClusterProcess]]:
    """Factory: ``start_cluster(replicas, **settings)`` for a test that stops it itself;
    whatever is left is killed afterwards."""
    started: list[ClusterProcess] = []

    def start(replicas: int, **settings: str | int | float | bool) -> ClusterProcess:
        cluster = ClusterProcess(replicas=replicas, settings=settings)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.kill()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_nginx_spreads_clients_over_every_replica(three_replicas: ClusterProcess) -> None:
    clients = [await ProtocolClient.connect(three_replicas.ws_url) for _ in range(6)]
    try:
        nodes = {client.welcome["node"] for client in clients}
        assert nodes == three_replicas.replica_names() == {"gateway-1", "gateway-2", "gateway-3"}
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_messages_cross_replicas_behind_nginx(three_replicas: ClusterProcess) -> None:
    clients = [await ProtocolClient.connect(three_replicas.ws_url) for _ in range(6)]
    try:
        for client in clients:
            await client.subscribe("lb:room")
        one_per_node = {client.welcome["node"]: client for client in clients}
        assert len(one_per_node) == 3
        for node, publisher in one_per_node.items():
            await publisher.publish("lb:room", {"from": node})
        for client in clients:
            received = await client.messages(3, "lb:room")
            assert sorted(m["data"]["from"] for m in received) == sorted(one_per_node)
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_operator_endpoints_are_on_internal_ports_and_never_through_nginx(
    three_replicas: ClusterProcess,
) -> None:
    internal_paths = ["/api/info", "/metrics", "/admin", "/docs", "/redoc", "/openapi.json"]
    replicas = [three_replicas.children[name] for name in sorted(three_replicas.replica_names())]
    assert all(replica.internal for replica in replicas)
    assert f"admin       {replicas[0].internal}/admin" in three_replicas.stdout()
    async with httpx.AsyncClient() as http:
        for path in internal_paths:
            assert (await http.get(three_replicas.url + path)).status_code == 404, path
            for replica in replicas:
                assert (await http.get(replica.address + path)).status_code == 404, path
        for replica in replicas:
            assert replica.internal is not None
            for path in ("/metrics", "/admin", "/docs", "/readyz"):
                assert (await http.get(replica.internal + path)).status_code == 200, path
            assert (await http.get(replica.internal + "/api/info")).status_code == 401
        assert (await http.get(three_replicas.url + "/healthz")).status_code == 200


async def test_demo_page_and_plain_text_through_nginx(three_replicas: ClusterProcess) -> None:
    async with httpx.AsyncClient(base_url=three_replicas.url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert (await http.get("/readyz")).json()["status"] == "ready"
    plain_url = f"ws://127.0.0.1:{three_replicas.port}/websocket?channel=lb:plain"
    async with await ProtocolClient.connect(three_replicas.ws_url) as reader:
        await reader.subscribe("lb:plain")
        async with connect(plain_url) as writer:
            await writer.send("hello through nginx")
            [message] = await reader.messages(1, "lb:plain")
    assert message["data"] == "hello through nginx"


async def test_sigterm_stops_every_child_and_clients_are_told_to_reconnect(
    start_cluster: Callable[..., ClusterProcess],
) -> None:
    cluster = start_cluster(3, drain_seconds=1)
    started = descendants(cluster.pid)
    assert {child.pid for child in cluster.children.values()} <= started
    assert len(started) >= 6, "redis, three replicas, nginx master and worker"
    client = await ProtocolClient.connect(cluster.ws_url)
    await client.subscribe("stop:room")

    cluster.signal(signal.SIGTERM)
    code, frames = await client.closed(timeout=30)

    assert code == 1012
    assert any(f["op"] == "disconnect" and f["code"] == 1012 and f["reconnect"] for f in frames)
    assert await asyncio.to_thread(cluster.wait) == 0
    assert alive(started) == set()
    for child in cluster.children.values():
        assert not listening(child.port), f"{child.name} still listens on {child.port}"


async def test_ctrl_c_with_a_configured_redis_starts_none_and_stops_all(
    start_cluster: Callable[..., ClusterProcess], redis_server: RedisServer
) -> None:
    cluster = start_cluster(2, redis_url=redis_server.url, drain_seconds=1)
    assert "redis" not in cluster.children
    assert f"external  {redis_server.url}" in cluster.stdout()
    started = descendants(cluster.pid)
    async with await ProtocolClient.connect(cluster.ws_url) as client:
        await client.subscribe("ext:room")
        assert "gw:{ext:room}" in redis_server.pubsub_channels()

    cluster.signal(signal.SIGINT)

    assert await asyncio.to_thread(cluster.wait) == 0
    assert alive(started) == set()
    assert not listening(cluster.port)


async def test_dead_replica_is_reported_and_the_others_keep_serving(
    start_cluster: Callable[..., ClusterProcess],
) -> None:
    cluster = start_cluster(2, drain_seconds=0)
    victim = cluster.children["gateway-2"]

    os.kill(victim.pid, signal.SIGKILL)

    wait_until_sync(lambda: "exited unexpectedly" in cluster.stderr(), 10, "the report")
    report = cluster.stderr()
    assert f"gateway-2 (pid {victim.pid}) exited unexpectedly (killed by SIGKILL)" in report
    assert "the other replicas keep serving" in report
    for _ in range(3):
        async with await ProtocolClient.connect(cluster.ws_url) as client:
            assert client.welcome["node"] == "gateway-1"
    assert cluster.process is not None and cluster.process.poll() is None
    cluster.signal(signal.SIGTERM)
    assert await asyncio.to_thread(cluster.wait) == 0


async def test_nginx_death_stops_the_cluster_with_status_1(
    start_cluster: Callable[..., ClusterProcess],
) -> None:
    cluster = start_cluster(1, drain_seconds=0)
    started = descendants(cluster.pid)

    os.kill(cluster.children["nginx"].pid, signal.SIGKILL)

    assert await asyncio.to_thread(cluster.wait) == 1
    assert "nginx" in cluster.stderr() and "stopping the cluster" in cluster.stderr()
    await wait_until(lambda: not alive(started), 10, "every child gone")


def test_a_busy_port_is_refused_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cluster = ClusterProcess(replicas=1, port=taken.getsockname()[1])
        cluster.launch()
        try:
            assert cluster.wait() == 1
        finally:
            cluster.kill()
    assert f"port {cluster.port} is not free" in cluster.stderr()
    assert "choose another with --port" in cluster.stderr()
