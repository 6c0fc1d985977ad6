"""The recovery merge: history after `since`, then live messages, no gap, no duplicate."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.recovery import merge


def pairs(first: int, last: int) -> list[tuple[int, str]]:
    return [(offset, f"m{offset}") for offset in range(first, last + 1)]


def test_history_then_live_without_overlap() -> None:
    result = merge(2, pairs(3, 5), pairs(6, 7))
    assert result == (["m3", "m4", "m5", "m6", "m7"], 7)


def test_overlap_is_sent_once() -> None:
    result = merge(2, pairs(3, 6), pairs(5, 8))
    assert result == (["m3", "m4", "m5", "m6", "m7", "m8"], 8)


def test_a_hole_makes_recovery_impossible() -> None:
    assert merge(2, pairs(3, 4), pairs(6, 7)) is None
    assert merge(2, pairs(4, 6), []) is None


def test_nothing_missed() -> None:
    assert merge(5, [], []) == ([], 5)
    assert merge(5, pairs(1, 5), pairs(3, 5)) == ([], 5)


ranges = st.tuples(st.integers(1, 40), st.integers(0, 40))


@given(st.integers(0, 40), ranges, ranges)
def test_whatever_merge_sends_is_the_next_offsets_once_in_order(
    since: int, history_range: tuple[int, int], live_range: tuple[int, int]
) -> None:
    history = pairs(history_range[0], history_range[0] + history_range[1] - 1)
    live = pairs(live_range[0], live_range[0] + live_range[1] - 1)
    result = merge(since, history, live)
    if result is not None:
        sent, last = result
        assert sent == [f"m{offset}" for offset in range(since + 1, last + 1)]


@given(st.integers(0, 40), ranges, ranges)
def test_merge_refuses_exactly_when_an_offset_is_missing(
    since: int, history_range: tuple[int, int], live_range: tuple[int, int]
) -> None:
    history = pairs(history_range[0], history_range[0] + history_range[1] - 1)
    live = pairs(live_range[0], live_range[0] + live_range[1] - 1)
    covered = {offset for offset, _ in history + live}
    newest = max(covered | {since})
    hole = any(offset not in covered for offset in range(since + 1, newest + 1))
    result = merge(since, history, live)
    if hole:
        assert result is None
    else:
        assert result == ([f"m{o}" for o in range(since + 1, newest + 1)], newest)
