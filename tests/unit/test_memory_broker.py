"""The in-memory broker expires what Redis would, and frees it without waiting for a use."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.broker.base import HistoryPolicy
from gateway.broker.memory import Deadlines, MemoryBroker
from tests.support.net import wait_until

HISTORY = HistoryPolicy(size=10, ttl=5)
HEAD = b'{"op":"message","channel":"c","data":"hello"'


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Handler:
    def on_control(self, envelope: bytes) -> None:
        pass

    def on_publication(self, channel: str, envelope: bytes) -> None:
        pass

    def on_reconnected(self) -> None:
        pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def broker(clock: FakeClock) -> AsyncIterator[MemoryBroker]:
    instance = MemoryBroker(clock, sweep_seconds=3600)
    await instance.start(Handler())
    yield instance
    await instance.close()


async def test_expired_history_is_freed_though_never_used_again(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    for n in range(100):
        await broker.publish(f"room:{n}", HEAD, HISTORY)
    assert broker.retained == (100, 0, 0)
    clock.now += HISTORY.ttl - 0.1
    assert broker.expire() == 0
    clock.now += 0.1
    freed = broker.expire()
    assert broker.retained == (0, 0, 0)
    assert freed > 100 * len(HEAD), "the message bytes are counted"


async def test_history_lives_on_while_it_is_published_to(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    first = await broker.publish("busy", HEAD, HISTORY)
    clock.now += 4
    await broker.publish("busy", HEAD, HISTORY)
    clock.now += 4
    broker.expire()
    page = await broker.read_history("busy", HISTORY, after=0)
    assert first is not None and page.epoch == first.epoch
    assert [offset for offset, _ in page.messages] == [1, 2]
    clock.now += 1
    broker.expire()
    assert broker.retained == (0, 0, 0)


async def test_a_read_gives_an_epoch_that_expires_like_history(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    await broker.read_history("quiet", HISTORY, limit=0)
    assert broker.retained == (1, 0, 0)
    clock.now += HISTORY.ttl
    broker.expire()
    assert broker.retained == (0, 0, 0)


async def test_a_channel_used_after_expiry_starts_a_new_epoch_and_expires_again(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    old = await broker.publish("again", HEAD, HISTORY)
    clock.now += HISTORY.ttl
    new = await broker.publish("again", HEAD, HISTORY)
    assert old is not None and new is not None
    assert new.epoch != old.epoch and new.offset == 1
    broker.expire()
    assert broker.retained == (1, 0, 0), "the new history is kept"
    clock.now += HISTORY.ttl
    broker.expire()
    assert broker.retained == (0, 0, 0)


async def test_the_sweeper_frees_without_being_asked(clock: FakeClock) -> None:
    broker = MemoryBroker(clock, sweep_seconds=0.01)
    await broker.start(Handler())
    try:
        await broker.publish("swept", HEAD, HISTORY)
        clock.now += HISTORY.ttl
        await wait_until(lambda: broker.retained == (0, 0, 0), 2, "the sweeper to run")
    finally:
        await broker.close()


async def test_presence_is_dropped_twice_its_ttl_after_the_last_write(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    await broker.presence_add("room", "c1", b'{"user":"u"}', ttl=3)
    clock.now += 5
    await broker.presence_refresh([("room", "c1", b'{"user":"u"}')], ttl=3)
    clock.now += 2
    broker.expire()
    members, _ = await broker.presence("room")
    assert set(members) == {"c1"}, "a refreshed entry stays"
    clock.now += 4
    broker.expire()
    assert broker.retained == (0, 0, 0), "forgotten by everyone: gone with its channel"


async def test_an_expired_presence_entry_is_still_reported_as_left(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    await broker.presence_add("room", "c1", b'{"user":"u"}', ttl=3)
    clock.now += 4
    broker.expire()
    members, expired = await broker.presence("room")
    assert members == {} and expired == [("c1", b'{"user":"u"}')]


async def test_a_silent_replica_leaves_the_registry_and_memory(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    await broker.register_node("gone", b"{}", ttl=3)
    await broker.register_node("here", b"{}", ttl=3)
    clock.now += 2
    await broker.register_node("here", b"{}", ttl=3)
    clock.now += 1.5
    broker.expire()
    assert broker.retained == (0, 0, 1)
    assert set(await broker.nodes()) == {"here"}


def test_deadlines_hold_a_key_once_and_hand_out_only_what_is_due() -> None:
    deadlines = Deadlines()
    deadlines.schedule("a", 10)
    deadlines.schedule("a", 20)
    deadlines.schedule("b", 15)
    assert len(deadlines) == 2
    assert deadlines.due(9) == []
    assert deadlines.due(10) == ["a"], "scheduling later leaves the earlier look"
    deadlines.schedule("b", 12)
    assert deadlines.due(14) == ["b"], "scheduling earlier moves it forward"
    assert deadlines.due(100) == [], "each key once"
    assert len(deadlines) == 0
