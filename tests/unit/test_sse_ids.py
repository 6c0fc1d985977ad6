"""The event ids of ``GET /sse`` (gateway/wire/sse.py), against the vectors the browser
client follows too, and every malformed id."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.wire.protocol import MAX_OFFSET, StreamPosition
from gateway.wire.sse import decode_positions, encode_positions, event, id_line
from tests.support.gateways import REPO_ROOT

VECTORS = json.loads((REPO_ROOT / "client" / "vectors" / "sse_ids.json").read_text())["vectors"]


def positions_of(vector: dict[str, object]) -> list[StreamPosition | None]:
    listed = vector["positions"]
    assert isinstance(listed, list)
    return [None if p is None else StreamPosition(p["offset"], p["epoch"]) for p in listed]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_ids_follow_the_vectors(vector: dict[str, object]) -> None:
    positions = positions_of(vector)
    assert encode_positions(positions) == vector["id"]
    if positions:
        assert decode_positions(str(vector["id"]), len(positions)) == positions


positions = st.lists(
    st.none()
    | st.builds(
        StreamPosition,
        st.integers(0, MAX_OFFSET),
        st.text(min_size=1, max_size=20) | st.text("0123456789abcdef", min_size=2, max_size=24),
    ),
    min_size=1,
    max_size=20,
)


@given(positions)
def test_every_id_decodes_to_its_positions(chosen: list[StreamPosition | None]) -> None:
    assert decode_positions(encode_positions(chosen), len(chosen)) == chosen


@pytest.mark.parametrize(
    ("text", "channels"),
    [
        ("", 1),
        ("2.", 1),
        ("1", 1),
        ("1..", 1),
        ("1.5:NItsZ1p5", 2),
        ("1.x:NItsZ1p5", 1),
        ("1.05:NItsZ1p5", 1),
        ("1.-5:NItsZ1p5", 1),
        ("1.5", 1),
        ("1.5:", 1),
        ("1.5:N", 1),
        ("1.5:NItsZ1p5=", 1),
        ("1.5:~/w", 1),
        (f"1.{MAX_OFFSET + 1}:NItsZ1p5", 1),
        ("1." + "9" * 30 + ":NItsZ1p5", 1),
        ("1." + "." * 20000, 20001),
    ],
)
def test_a_malformed_id_recovers_nothing(text: str, channels: int) -> None:
    assert decode_positions(text, channels) is None


def test_an_event_is_one_data_line_with_its_id() -> None:
    assert event(b'{"op":"pong"}', id_line("1.")) == b'id: 1.\ndata: {"op":"pong"}\n\n'
    assert event(b"{}") == b"data: {}\n\n"
