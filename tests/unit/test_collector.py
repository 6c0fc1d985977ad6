from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.ops.collector import YOUNG_THRESHOLD, settle_after_start


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_leave_the_collectors_sight(collector: None) -> None:
    kept = [object(), {"start": "up"}]
    settle_after_start()
    assert gc.get_freeze_count() > 0
    assert not any(thing is kept[1] for thing in gc.get_objects(generation=2))
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


def test_cycles_made_after_start_up_are_still_collected(collector: None) -> None:
    settle_after_start()

    class Node:
        other: Node

    first, second = Node(), Node()
    first.other, second.other = second, first
    del first, second
    assert gc.collect() >= 2
