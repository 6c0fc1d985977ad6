"""Idempotent publishing, one contract over both brokers (memory, and a real redis-server):
a key accepted on a channel within the window answers with the first offset and is neither
stored nor delivered again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from gateway.broker.base import Broker, HistoryPolicy
from gateway.broker.memory import MemoryBroker
from gateway.broker.redis import RedisBroker
from gateway.settings import Settings
from gateway.wire import protocol
from tests.integration.test_broker_contract import Recorder, head
from tests.support.inprocess import serve_in_process
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer

WINDOW = 0.5
POLICY = HistoryPolicy(size=10, ttl=60)


@pytest.fixture(params=["memory", "redis"])
async def broker(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[Broker, Recorder]]:
    recorder = Recorder()
    instance: Broker
    if request.param == "memory":
        instance = MemoryBroker(idempotency_window=WINDOW)
    else:
        instance = RedisBroker(
            redis_server.url, prefix=f"once{id(recorder)}", idempotency_window=WINDOW
        )
    await instance.start(recorder)
    await wait_until(lambda: instance.ready, 5, "broker ready")
    yield instance, recorder
    await instance.close()


def message(n: int) -> bytes:
    return protocol.message_head("c", n, "client", None)


async def test_a_repeated_key_answers_with_the_first_offset(
    broker: tuple[Broker, Recorder],
) -> None:
    instance, recorder = broker
    await instance.subscribe("once:h")
    first = await instance.publish("once:h", message(1), POLICY, idempotency_key="k1")
    again = await instance.publish("once:h", message(1), POLICY, idempotency_key="k1")
    other = await instance.publish("once:h", message(2), POLICY, idempotency_key="k2")
    plain = await instance.publish("once:h", message(3), POLICY)
    assert first is not None and again == first
    assert other is not None and other.offset == first.offset + 1
    assert plain is not None and plain.offset == first.offset + 2
    await recorder.wait_for(3)
    page = await instance.read_history("once:h", POLICY, after=0)
    assert [offset for offset, _ in page.messages] == [1, 2, 3]
    assert len(recorder.received) == 3


async def test_keys_are_per_channel(broker: tuple[Broker, Recorder]) -> None:
    instance, _ = broker
    a = await instance.publish("once:a", message(1), POLICY, idempotency_key="same")
    b = await instance.publish("once:b", message(1), POLICY, idempotency_key="same")
    assert a is not None and b is not None and a.epoch != b.epoch


async def test_a_channel_without_history_is_deduplicated_too(
    broker: tuple[Broker, Recorder],
) -> None:
    instance, recorder = broker
    await instance.subscribe("bare")
    for _ in range(3):
        assert await instance.publish("bare", head(b'{"v":1}'), None, idempotency_key="k") is None
    await instance.publish("bare", head(b'{"v":2}'), None)
    await recorder.wait_for(2)
    assert recorder.received == [("bare", b'{"v":1}'), ("bare", b'{"v":2}')]


async def test_pipelined_duplicates_in_one_pass_publish_once(
    broker: tuple[Broker, Recorder],
) -> None:
    instance, recorder = broker
    await instance.subscribe("once:p")
    futures = [
        instance.publish_later("once:p", message(n % 2), POLICY, idempotency_key=f"k{n % 2}")
        for n in range(6)
    ]
    positions = await asyncio.gather(*futures)
    assert [p.offset for p in positions if p] == [1, 2, 1, 2, 1, 2]
    await recorder.wait_for(2)
    page = await instance.read_history("once:p", POLICY, after=0)
    assert [offset for offset, _ in page.messages] == [1, 2]


async def test_a_key_is_forgotten_after_the_window(broker: tuple[Broker, Recorder]) -> None:
    instance, _ = broker
    first = await instance.publish("once:w", message(1), POLICY, idempotency_key="k")
    assert first is not None

    async def accepted_again() -> bool:
        position = await instance.publish("once:w", message(1), POLICY, idempotency_key="k")
        return position is not None and position.offset > first.offset

    await wait_until(accepted_again, 5, "the key to expire")
    if isinstance(instance, MemoryBroker):
        assert instance.idempotency_keys == 1


async def test_memory_broker_frees_expired_keys_unasked() -> None:
    now = [0.0]
    instance = MemoryBroker(clock=lambda: now[0], idempotency_window=10)
    await instance.start(Recorder())
    try:
        for n in range(100):
            await instance.publish("c", head(b"{}"), None, idempotency_key=f"k{n}")
        assert instance.idempotency_keys == 100
        now[0] = 10.5
        instance.expire()
        assert instance.idempotency_keys == 0
    finally:
        await instance.close()


async def test_redis_keys_expire_with_the_window(redis_server: RedisServer) -> None:
    instance = RedisBroker(redis_server.url, prefix="oncettl", idempotency_window=30)
    await instance.start(Recorder())
    await wait_until(lambda: instance.ready, 5, "broker ready")
    try:
        await instance.publish("once:t", message(1), POLICY, idempotency_key="k")
        await instance.publish("bare:t", head(b"{}"), None, idempotency_key="k")
        with redis_server.client() as client:
            for channel in ("once:t", "bare:t"):
                ttl = client.pttl(instance.keys.once(channel, "k"))
                assert 29_000 < ttl <= 30_000
    finally:
        await instance.close()


async def test_centrifugos_server_api_honours_the_idempotency_key(
    settings_factory: Callable[..., Settings],
) -> None:
    async with (
        serve_in_process(settings_factory(api_key="cent-key")) as gateway,
        httpx.AsyncClient(headers={"X-API-Key": "cent-key"}) as http,
    ):
        body = {"channel": "cent:once", "data": {"n": 1}, "idempotency_key": "k1"}
        answers = [(await http.post(f"{gateway.http_url}/api/publish", json=body)).json()]
        answers.append((await http.post(f"{gateway.http_url}/api/publish", json=body)).json())
        assert answers[0] == answers[1]
        assert answers[0]["result"]["offset"] == 1
        other = {**body, "idempotency_key": "k2"}
        third = (await http.post(f"{gateway.http_url}/api/publish", json=other)).json()
        assert third["result"]["offset"] == 2
