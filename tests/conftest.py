"""Shared fixtures: settings, real redis-server processes, real gateway replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from gateway.settings import Settings
from tests.support.gateways import GatewayProcess, start_all
from tests.support.inprocess import LocalGateway, serve_in_process
from tests.support.redis_server import RedisServer


@pytest.fixture
def settings_factory(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings from keyword arguments only, whatever GATEWAY_* the environment holds."""
    import os

    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("node_id", "test-node")
        return Settings(**overrides)

    return make


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests use their own channel names."""
    server = RedisServer()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill and restart."""
    server = RedisServer()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def gateways() -> Iterator[Callable[..., list[GatewayProcess]]]:
    """Factory: ``gateways(count, redis_url=..., **settings)`` starts ready replicas."""
    started: list[GatewayProcess] = []

    def start(count: int, **settings: Any) -> list[GatewayProcess]:
        offset = len(started)
        replicas = [GatewayProcess(f"r{offset + index + 1}", **settings) for index in range(count)]
        started.extend(replicas)
        return start_all(replicas)

    yield start
    for replica in started:
        replica.kill()


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer) -> Iterator[list[GatewayProcess]]:
    """Two replicas on the session's Redis, shared by a test module.

    Default settings, except that the command rate is not limited: tests send bursts of
    hundreds of commands.
    """
    replicas = [GatewayProcess(f"m{index}", redis_url=redis_server.url, rate=0) for index in (1, 2)]
    start_all(replicas)
    yield replicas
    for replica in replicas:
        replica.kill()


@pytest.fixture
async def local_gateway(settings_factory: Callable[..., Settings]) -> AsyncIterator[LocalGateway]:
    """A gateway on the memory broker, served by uvicorn in this event loop."""
    async with serve_in_process(settings_factory()) as gateway:
        yield gateway
