"""Redis-only behaviour: one subscription per channel, outages and reconnection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from gateway.broker.base import HistoryPolicy
from gateway.broker.redis import RedisBroker
from gateway.wire.errors import ErrorCode, GatewayError
from tests.integration.test_broker_contract import Recorder
from tests.support.net import free_port, wait_until
from tests.support.redis_server import RedisServer


@contextlib.asynccontextmanager
async def started(
    redis: RedisServer, backoff: tuple[float, float]
) -> AsyncIterator[tuple[RedisBroker, Recorder]]:
    recorder = Recorder()
    broker = RedisBroker(redis.url, heartbeat=0.5, backoff=backoff)
    await broker.start(recorder)
    try:
        await wait_until(lambda: broker.ready, 5, "broker ready")
        yield broker, recorder
    finally:
        await broker.close()


@pytest.fixture
async def redis_broker(fresh_redis: RedisServer) -> AsyncIterator[tuple[RedisBroker, Recorder]]:
    async with started(fresh_redis, (0.02, 0.2)) as running:
        yield running


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


HISTORY = HistoryPolicy(size=100, ttl=60)


def kill_clients(redis: RedisServer, kind: str) -> int:
    """``CLIENT KILL TYPE kind`` (``normal``: command connections; ``pubsub``)."""
    with redis.client() as client:
        return int(client.client_kill_filter(_type=kind, skipme=True))


def normal_clients(redis: RedisServer) -> int:
    """Command connections Redis holds (the asking one included)."""
    with redis.client() as client:
        return len(client.client_list(_type="normal"))


async def fill_pool(broker: RedisBroker, connections: int) -> None:
    """Leave ``connections`` idle connections in the command pool (publishes at once)."""
    await asyncio.gather(*(broker.publish(f"fill:{n}", b"{", None) for n in range(connections)))


async def test_a_command_connection_redis_closed_is_replaced_before_a_write(
    redis_broker: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, _ = redis_broker
    await fill_pool(broker, 4)
    # killed from another thread, so that this replica's loop runs meanwhile and sees the
    # connections close, as it would between a Redis restart and its next publication
    assert await asyncio.to_thread(kill_clients, fresh_redis, "normal") >= 4
    await wait_until(lambda: normal_clients(fresh_redis) == 1, 5, "Redis closed them")
    assert broker.replaced_connections == 0
    await fill_pool(broker, 4)
    for _ in range(4):
        assert await broker.publish("after:kill", b"{", HISTORY) is not None
    assert broker.replaced_connections >= 4
    assert broker.accepting


async def test_a_batch_and_the_script_reload_survive_a_redis_restart(
    redis_broker: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, _ = redis_broker
    await fill_pool(broker, 3)
    fresh_redis.restart()  # the script cache is gone, and every pooled connection dead
    await wait_until(lambda: broker.ready, 10, "the broker ready again")
    batch = [broker.publish_later(f"batch:{n % 3}", b"{", HISTORY) for n in range(30)]
    positions = await asyncio.gather(*batch)
    assert [p.offset for p in positions if p is not None] == [n // 3 + 1 for n in range(30)]


@pytest.fixture
async def slow_to_reconnect(
    fresh_redis: RedisServer,
) -> AsyncIterator[tuple[RedisBroker, Recorder]]:
    """A broker whose pub/sub link takes 0.3 to 0.6 s to come back after a drop (within
    the one-second grace), so that a test can act while it is down."""
    async with started(fresh_redis, (0.6, 0.6)) as running:
        yield running


async def test_publishes_go_on_while_the_pubsub_link_reconnects(
    slow_to_reconnect: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, recorder = slow_to_reconnect
    await broker.subscribe("live")
    reconnections = recorder.reconnections
    assert kill_clients(fresh_redis, "pubsub") == 1
    await wait_until(lambda: not broker.listening, 2, "the listener notices")
    assert broker.accepting and broker.ready, "a moment's reconnection is not an outage"
    position = await broker.publish("live", b"{", HISTORY)
    assert position is not None
    await wait_until(lambda: recorder.reconnections > reconnections, 5, "re-subscribed")
    assert broker.listening


async def test_a_subscription_made_while_the_pubsub_link_reconnects_waits_for_it(
    slow_to_reconnect: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, recorder = slow_to_reconnect
    await broker.subscribe("held")
    assert kill_clients(fresh_redis, "pubsub") == 1
    await wait_until(lambda: not broker.listening, 2, "the listener notices")
    await broker.subscribe("joined:late")
    assert broker.listening
    await broker.publish("joined:late", b"{", None)
    await recorder.wait_for(1)
    assert recorder.received == [("joined:late", b"{}")]


async def test_the_command_link_goes_down_with_redis_and_comes_back_by_itself(
    redis_broker: tuple[RedisBroker, Recorder], fresh_redis: RedisServer
) -> None:
    broker, recorder = redis_broker
    fresh_redis.kill()
    with pytest.raises(GatewayError) as refused:
        await broker.publish("down", b"{", None)
    assert refused.value.code is ErrorCode.UNAVAILABLE
    await wait_until(lambda: not broker.accepting, 2, "the command link down")
    assert not broker.ready
    with pytest.raises(GatewayError):
        await broker.read_history("down", HISTORY)
    reconnections = recorder.reconnections
    fresh_redis.start()
    await wait_until(lambda: broker.accepting, 5, "the command link back")
    await wait_until(lambda: recorder.reconnections > reconnections, 5, "the hub told")
    assert await broker.publish("down", b"{", HISTORY) is not None


async def test_an_unreachable_redis_is_logged_naming_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    broker = RedisBroker(f"redis://:hunter2@127.0.0.1:{port}/0", backoff=(0.02, 0.1))
    with caplog.at_level(logging.WARNING, logger="gateway.broker"):
        await broker.start(Recorder())
        try:
            await wait_until(lambda: len(unreachable(caplog, port)) >= 6, 5, "failed attempts")
        finally:
            await broker.close()
    links = {record.getMessage().split()[1] for record in unreachable(caplog, port)}
    assert links == {"link=pubsub", "link=commands"}
    assert "hunter2" not in caplog.text


async def test_an_unreachable_cluster_is_logged_naming_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    broker = RedisBroker(f"redis://127.0.0.1:{port}/0", backoff=(0.02, 0.1), cluster=True)
    with caplog.at_level(logging.WARNING, logger="gateway.broker"):
        await broker.start(Recorder())
        try:
            await wait_until(lambda: len(unreachable(caplog, port)) >= 3, 5, "failed attempts")
        finally:
            await broker.close()
    assert not broker.ready


def unreachable(caplog: pytest.LogCaptureFixture, port: int) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING
        and record.getMessage().startswith("broker.unreachable")
        and f"address=127.0.0.1:{port}" in record.getMessage()
    ]
