"""Redis-only behaviour: one subscription per channel, outages and reconnection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.broker.redis import RedisBroker
from gateway.errors import ErrorCode, GatewayError
from tests.integration.test_broker_contract import Recorder
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer


@pytest.fixture
async def redis_broker(fresh_redis: RedisServer) -> AsyncIterator[tuple[RedisBroker, Recorder]]:
    recorder = Recorder()
    broker = RedisBroker(fresh_redis.url, heartbeat=0.5, backoff=(0.02, 0.2))
    await broker.start(recorder)
    await wait_until(lambda: broker.ready, 5, "broker ready")
    yield broker, recorder
    await broker.close()


async def test_one_redis_subscription_per_channel(
    redis_broker: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, _ = redis_broker
    await asyncio.gather(*(broker.subscribe("room") for _ in range(10)))
    topic = broker.keys.topic("room")
    assert fresh_redis.numsub(topic) == 1
    with fresh_redis.client() as client:
        calls = client.info("commandstats").get("cmdstat_subscribe", {}).get("calls")
    assert calls == 1
    broker.unsubscribe("room")
    await wait_until(lambda: fresh_redis.numsub(topic) == 0, 5, "unsubscribed in Redis")


async def test_publish_while_redis_is_down_is_unavailable(
    redis_broker: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, _ = redis_broker
    fresh_redis.kill()
    await wait_until(lambda: not broker.ready, 5, "broker notices the outage")
    with pytest.raises(GatewayError) as refused:
        await broker.publish("x", b"{", None)
    assert refused.value.code is ErrorCode.UNAVAILABLE
    with pytest.raises(GatewayError):
        await broker.subscribe("y")


async def test_reconnects_and_resubscribes_after_a_restart(
    redis_broker: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, recorder = redis_broker
    await broker.subscribe("a")
    await broker.subscribe("b")
    fresh_redis.restart()
    await wait_until(lambda: broker.ready, 10, "broker back")
    await wait_until(
        lambda: (
            fresh_redis.numsub(broker.keys.topic("a")) == 1
            and fresh_redis.numsub(broker.keys.topic("b")) == 1
        ),
        10,
        "re-subscribed",
    )
    await broker.publish("a", b"{", None)
    await recorder.wait_for(1)
    assert recorder.received == [("a", b"{}")]
    assert recorder.reconnections >= 2


async def test_silent_redis_is_detected_by_the_heartbeat(
    redis_broker: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, _ = redis_broker
    assert fresh_redis.process is not None
    import signal

    fresh_redis.process.send_signal(signal.SIGSTOP)
    try:
        await wait_until(lambda: not broker.ready, 10, "heartbeat notices the silence")
    finally:
        fresh_redis.process.send_signal(signal.SIGCONT)
    await wait_until(lambda: broker.ready, 10, "broker back after the pause")
