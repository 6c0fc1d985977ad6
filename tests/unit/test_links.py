"""How the Redis broker learns that Redis is unreachable, retries, and says so."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.broker.links import CommandLink, describe
from tests.support.net import wait_until


def test_an_error_is_described_with_its_message() -> None:
    error = RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
    assert describe(error) == (
        "ConnectionError(Error 111 connecting to 127.0.0.1:6390. Connection refused.)"
    )
    assert describe(TimeoutError()) == "TimeoutError"


class Redis:
    """A probe target that refuses ``failures`` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.probes = 0

    async def ping(self) -> None:
        self.probes += 1
        if self.probes <= self.failures:
            raise RedisConnectionError("Connection refused.")


def link_to(redis: Redis, restored: list[int]) -> CommandLink:
    return CommandLink(
        redis.ping,
        lambda: restored.append(1),
        address="10.0.0.1:6379",
        timeout=1,
        backoff=(0.001, 0.004),
    )


async def started_link(redis: Redis, restored: list[int]) -> CommandLink:
    """A link that reached ``redis``."""
    link = link_to(redis, restored)
    link.start()
    await wait_until(lambda: link.up, 2, "the link up")
    return link


async def test_the_link_is_down_until_redis_first_answers_and_each_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis, restored = Redis(failures=3), []
    link = link_to(redis, restored)
    with caplog.at_level(logging.INFO, logger="gateway.broker"):
        assert not link.up
        link.start()
        await wait_until(lambda: link.up, 2, "the link up")
        await link.close()
    messages = [record.getMessage() for record in caplog.records]
    failures = [m for m in messages if m.startswith("broker.unreachable")]
    assert len(failures) == 3
    assert all("link=commands address=10.0.0.1:6379" in m for m in failures)
    assert [m.split()[3] for m in failures] == ["attempt=1", "attempt=2", "attempt=3"]
    assert {r.levelno for r in caplog.records if r.getMessage() in failures} == {logging.WARNING}
    assert messages[-1].startswith("broker.reconnected link=commands address=10.0.0.1:6379")
    assert restored == [], "a first connection restores nothing"


async def test_a_connection_failure_takes_the_link_down_until_a_probe_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis, restored = Redis(failures=0), []
    link = await started_link(redis, restored)
    link.failed(ResponseError("WRONGTYPE"))
    assert link.up, "Redis answered: the link is fine"
    redis.failures = redis.probes + 2
    with caplog.at_level(logging.WARNING, logger="gateway.broker"):
        link.failed(RedisConnectionError("Connection closed by server."))
        await wait_until(lambda: restored == [1], 2, "the link down and back")
        assert link.up
    await link.close()
    assert restored == [1], "the hub is told, so that deferred repairs run"
    events = [record.getMessage().split()[0] for record in caplog.records]
    assert events == [
        "broker.disconnected",
        "broker.unreachable",
        "broker.unreachable",
        "broker.reconnected",
    ]


async def test_one_dropped_connection_does_not_take_the_link_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis, restored = Redis(failures=0), []
    link = await started_link(redis, restored)
    probes = redis.probes
    with caplog.at_level(logging.WARNING, logger="gateway.broker"):
        link.failed(RedisConnectionError("Connection reset by peer."))
        assert link.up
        await wait_until(lambda: redis.probes > probes, 2, "a probe")
    assert link.up and restored == []
    await link.close()
    assert caplog.records == [], "nothing was unreachable"
