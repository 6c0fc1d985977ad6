"""Bounded history reads: slices that fit a byte budget, paging that loses nothing."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.broker.base import HistoryPolicy
from gateway.broker.memory import MemoryBroker
from gateway.services.history import HistoryReader, HistorySlice
from gateway.wire import protocol

POLICY = HistoryPolicy(size=50, ttl=300)


class _Ignore:
    def on_control(self, envelope: bytes) -> None:
        pass

    def on_publication(self, channel: str, envelope: bytes) -> None:
        pass

    def on_reconnected(self) -> None:
        pass


async def broker_with(sizes: list[int], channel: str = "c") -> MemoryBroker:
    """A memory broker whose ``channel`` holds one message of each size (in `data`)."""
    broker = MemoryBroker()
    await broker.start(_Ignore())
    for size in sizes:
        head = protocol.message_head(channel, "x" * size, None, None)
        await broker.publish(channel, head, POLICY)
    return broker


def offsets(found: HistorySlice) -> list[int]:
    return [offset for offset, _ in found.messages]


def data_bytes(found: HistorySlice) -> int:
    return sum(len(frame) for _, frame in found.messages)


async def test_a_slice_carries_what_fits_from_the_oldest_and_says_more() -> None:
    broker = await broker_with([100] * 10)
    frame = len((await broker.read_history("c", POLICY, limit=1)).messages[0][1])
    reader = HistoryReader(broker, max_message_bytes=65536)
    found = await reader.read("c", POLICY, after=2, count=50, max_bytes=3 * frame)
    assert offsets(found) == [3, 4, 5] and found.more
    assert found.position.offset == 10
    rest = await reader.read("c", POLICY, after=5, count=50, max_bytes=10 * frame)
    assert offsets(rest) == [6, 7, 8, 9, 10] and not rest.more


async def test_without_since_the_latest_count_are_paged_from_their_oldest() -> None:
    broker = await broker_with([100] * 10)
    frame = len((await broker.read_history("c", POLICY, limit=1)).messages[0][1])
    reader = HistoryReader(broker, max_message_bytes=65536)
    found = await reader.read("c", POLICY, after=None, count=6, max_bytes=4 * frame)
    assert offsets(found) == [5, 6, 7, 8] and found.more
    rest = await reader.read("c", POLICY, after=8, count=6 - 4, max_bytes=4 * frame)
    assert offsets(rest) == [9, 10] and not rest.more


async def test_a_message_larger_than_the_budget_comes_alone() -> None:
    broker = await broker_with([5000, 10, 10])
    reader = HistoryReader(broker, max_message_bytes=65536)
    found = await reader.read("c", POLICY, after=0, count=50, max_bytes=100)
    assert offsets(found) == [1] and found.more
    latest = await reader.read("c", POLICY, after=None, count=3, max_bytes=100)
    assert offsets(latest) == [1] and latest.more


async def test_a_limit_that_is_met_is_not_more() -> None:
    broker = await broker_with([10] * 5)
    reader = HistoryReader(broker, max_message_bytes=65536)
    found = await reader.read("c", POLICY, after=0, count=2, max_bytes=10**6)
    assert offsets(found) == [1, 2] and not found.more
    nothing = await reader.read("c", POLICY, after=0, count=0, max_bytes=10**6)
    assert offsets(nothing) == [] and not nothing.more and nothing.position.offset == 5


async def test_reads_ask_for_a_bounded_number_of_messages() -> None:
    broker = await broker_with([10] * 30)
    asked: list[int | None] = []
    read_history = broker.read_history

    async def counting(*args: object, **kwargs: object) -> object:
        asked.append(kwargs.get("limit"))  # type: ignore[arg-type]
        return await read_history(*args, **kwargs)  # type: ignore[arg-type]

    broker.read_history = counting  # type: ignore[method-assign]
    reader = HistoryReader(broker, max_message_bytes=1024 * 1024)
    assert reader.chunk == 8
    found = await reader.read("c", POLICY, after=0, count=50, max_bytes=10**6)
    assert offsets(found) == list(range(1, 31)) and not found.more
    assert all(limit is not None and limit <= 8 for limit in asked)
    latest = await reader.read("c", POLICY, after=None, count=20, max_bytes=10**6)
    assert offsets(latest) == list(range(11, 31))


async def test_offsets_beyond_what_a_double_holds_read_nothing() -> None:
    broker = await broker_with([10] * 3)
    reader = HistoryReader(broker, max_message_bytes=65536)
    found = await reader.read("c", POLICY, after=2**63 - 1, count=50, max_bytes=10**6)
    assert offsets(found) == [] and found.position.offset == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 300), min_size=0, max_size=60),
    since=st.none() | st.integers(0, 65),
    count=st.integers(0, 60),
    budget=st.integers(1, 2000),
    max_message_bytes=st.sampled_from([65536, 1024 * 1024, 4 * 1024 * 1024]),
)
def test_paging_until_not_more_gives_every_matching_message_once_in_order(
    sizes: list[int], since: int | None, count: int, budget: int, max_message_bytes: int
) -> None:
    async def page_through() -> tuple[list[int], list[int]]:
        broker = await broker_with(sizes)
        reader = HistoryReader(broker, max_message_bytes)
        top, first = len(sizes), max(1, len(sizes) - POLICY.size + 1)
        want = min(count, POLICY.size)
        if since is None:
            expected = list(range(max(first, top - want + 1), top + 1))
        else:
            expected = list(range(max(first, since + 1), top + 1))[:want]
        got: list[int] = []
        after, remaining = since, want
        while True:
            found = await reader.read("c", POLICY, after=after, count=remaining, max_bytes=budget)
            assert len(found.messages) <= 1 or data_bytes(found) <= budget
            got += offsets(found)
            if not found.more:
                return got, expected
            assert found.messages, "a slice that says more always moves on"
            after, remaining = got[-1], remaining - len(found.messages)

    got, expected = asyncio.run(page_through())
    assert got == expected
