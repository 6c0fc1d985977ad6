"""One contract, two brokers: memory (the reference) and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.broker.base import Broker
from gateway.broker.memory import MemoryBroker
from gateway.broker.redis import RedisBroker
from gateway.errors import ErrorCode, GatewayError
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer


class Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()

    def on_publication(self, channel: str, frame: bytes) -> None:
        self.received.append((channel, frame))
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        await wait_until(lambda: len(self.received) >= count, 5, f"{count} publications")


@pytest.fixture(params=["memory", "redis"])
async def broker(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[Broker, Recorder]]:
    recorder = Recorder()
    instance: Broker
    if request.param == "memory":
        instance = MemoryBroker()
    else:
        instance = RedisBroker(redis_server.url, prefix=f"t{id(recorder)}")
    await instance.start(recorder)
    await wait_until(lambda: instance.available, 5, "broker available")
    yield instance, recorder
    await instance.close()


async def test_subscriber_receives_publications(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    await instance.subscribe("chat:1")
    await instance.publish("chat:1", b'{"n":1}')
    await instance.publish("chat:2", b'{"n":2}')
    await instance.publish("chat:1", b'{"n":3}')
    await recorder.wait_for(2)
    assert recorder.received == [("chat:1", b'{"n":1}'), ("chat:1", b'{"n":3}')]


async def test_unsubscribed_channel_is_silent(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    await instance.subscribe("a")
    await instance.subscribe("b")
    instance.unsubscribe("a")
    await instance.publish("a", b"1")
    await instance.publish("b", b"2")
    await recorder.wait_for(1)
    assert recorder.received == [("b", b"2")]


async def test_resubscribe_after_unsubscribe(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    for _ in range(20):
        await instance.subscribe("flip")
        instance.unsubscribe("flip")
    await instance.subscribe("flip")
    await instance.publish("flip", b"x")
    await recorder.wait_for(1)
    assert recorder.received == [("flip", b"x")]


async def test_order_of_one_publisher_is_kept(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    await instance.subscribe("seq")
    for index in range(200):
        await instance.publish("seq", b"%d" % index)
    await recorder.wait_for(200)
    assert [frame for _, frame in recorder.received] == [b"%d" % i for i in range(200)]


async def test_closed_broker_refuses_publishes(broker: tuple[Broker, Recorder]) -> None:
    instance, _ = broker
    await instance.close()
    with pytest.raises(GatewayError) as refused:
        await instance.publish("x", b"1")
    assert refused.value.code is ErrorCode.UNAVAILABLE
