"""The replica registry behind ``/api/info``, on both brokers (memory and a real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.broker.base import Broker
from gateway.broker.memory import MemoryBroker
from gateway.broker.redis import RedisBroker
from gateway.wire.errors import ErrorCode, GatewayError
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer


class Ignore:
    def on_reconnected(self) -> None:
        pass

    def on_control(self, envelope: bytes) -> None:
        pass

    def on_publication(self, channel: str, frame: bytes) -> None:
        pass


@pytest.fixture(params=["memory", "redis"])
async def broker(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Broker]:
    instance: Broker
    if request.param == "memory":
        instance = MemoryBroker()
    else:
        instance = RedisBroker(redis_server.url, prefix=f"reg{id(request)}")
    await instance.start(Ignore())
    await wait_until(lambda: instance.ready, 5, "broker ready")
    yield instance
    await instance.close()


async def test_registered_nodes_are_listed_with_their_state(broker: Broker) -> None:
    assert await broker.nodes() == {}
    await broker.register_node("a", b'{"n":1}', ttl=30)
    await broker.register_node("b", b'{"n":2}', ttl=30)
    await broker.register_node("a", b'{"n":3}', ttl=30)
    assert await broker.nodes() == {"a": b'{"n":3}', "b": b'{"n":2}'}


async def test_a_node_without_heartbeat_drops_out(broker: Broker) -> None:
    await broker.register_node("kept", b"{}", ttl=30)
    await broker.register_node("dying", b"{}", ttl=0.2)

    async def only_kept() -> bool:
        return set(await broker.nodes()) == {"kept"}

    await wait_until(only_kept, 5, "the node without heartbeat to drop out")


async def test_unregistered_node_is_gone_at_once(broker: Broker) -> None:
    await broker.register_node("a", b"{}", ttl=30)
    await broker.unregister_node("a")
    assert await broker.nodes() == {}


async def test_registry_calls_on_a_closed_broker_are_unavailable(broker: Broker) -> None:
    await broker.close()
    for call in (broker.nodes(), broker.register_node("a", b"{}", 1)):
        with pytest.raises(GatewayError) as failed:
            await call
        assert failed.value.code is ErrorCode.UNAVAILABLE


async def test_redis_registry_keys_share_one_hash_tag(redis_server: RedisServer) -> None:
    instance = RedisBroker(redis_server.url, prefix="tagged")
    await instance.start(Ignore())
    try:
        await wait_until(lambda: instance.ready, 5, "broker ready")
        await instance.register_node("n1", b"{}", ttl=30)
        with redis_server.client() as client:
            keys = {key.decode() for key in client.keys("tagged:*")}
            assert keys == {"tagged:{#nodes}", "tagged:{#nodes}:n1"}
            assert 0 < client.pttl("tagged:{#nodes}:n1") <= 30_000
    finally:
        await instance.unregister_node("n1")
        await instance.close()
