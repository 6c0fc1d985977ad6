"""The one continuity rule (gateway/wire/continuity.py): the shared vectors, which the
browser client's node tests read too, and its properties."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.wire.continuity import DELIVER, DUPLICATE, EPOCH, GAP, judge, missed
from gateway_client.stream import Position, Step, advance
from tests.support.gateways import REPO_ROOT

VECTORS = json.loads((REPO_ROOT / "client" / "vectors" / "continuity.json").read_text())["vectors"]


def _position(value: dict[str, Any] | None) -> Position | None:
    return None if value is None else Position(value["offset"], value["epoch"])


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_python_client_follows_the_vectors(vector: dict[str, Any]) -> None:
    step = advance(_position(vector["position"]), vector["message"])
    assert step == Step(vector["verdict"], _position(vector["after"]), vector["missed"])


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v["position"] and "epoch" in v["message"]],
    ids=lambda v: v["name"],
)
def test_the_rule_gives_each_vectors_verdict(vector: dict[str, Any]) -> None:
    position, message = vector["position"], vector["message"]
    verdict = judge(position["offset"], position["epoch"], message["offset"], message["epoch"])
    assert verdict == vector["verdict"]
    if verdict == GAP:
        assert missed(position["offset"], message["offset"]) == vector["missed"]


offsets = st.integers(min_value=0, max_value=2**63 - 1)
epochs = st.sampled_from(["a", "b", "c"])


@given(last=offsets, last_epoch=epochs, offset=offsets, epoch=epochs)
def test_one_verdict_and_the_right_one(last: int, last_epoch: str, offset: int, epoch: str) -> None:
    verdict = judge(last, last_epoch, offset, epoch)
    if epoch != last_epoch:
        assert verdict == EPOCH
    elif offset == last + 1:
        assert verdict == DELIVER
    elif offset <= last:
        assert verdict == DUPLICATE
    else:
        assert verdict == GAP and missed(last, offset) == offset - last - 1 > 0


@given(st.lists(st.tuples(st.integers(min_value=1, max_value=40), epochs), max_size=60))
def test_a_reader_never_takes_an_offset_twice_nor_out_of_order(
    arrivals: list[tuple[int, str]],
) -> None:
    """Whatever arrives (repeats, reorderings, jumps, epoch changes), what a reader takes
    following the rule rises strictly within an epoch, and every offset it took is
    accounted for: delivered in turn, or counted as missed by a gap."""
    last, epoch = 0, "a"
    taken: list[tuple[str, int]] = []
    accounted = 0
    for offset, arriving_epoch in arrivals:
        verdict = judge(last, epoch, offset, arriving_epoch)
        if verdict == DUPLICATE:
            continue
        if verdict == EPOCH:
            epoch, accounted = arriving_epoch, 0
        elif verdict == GAP:
            accounted += missed(last, offset)
        taken.append((epoch, offset))
        accounted += 1 if verdict != EPOCH else offset
        last = offset
        assert accounted == offset
    for (epoch_a, a), (epoch_b, b) in itertools.pairwise(taken):
        assert epoch_a != epoch_b or b > a
