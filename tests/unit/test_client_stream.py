"""How each message moves a channel's position (gateway_client.stream)."""

from __future__ import annotations

from gateway_client.stream import Position, Step, advance


def test_next_offset_is_delivered_and_moves_the_position() -> None:
    step = advance(Position(4, "e1"), {"offset": 5, "epoch": "e1"})
    assert step == Step("deliver", Position(5, "e1"))


def test_offset_already_seen_is_a_duplicate() -> None:
    for offset in (3, 4):
        assert advance(Position(4, "e1"), {"offset": offset, "epoch": "e1"}) == Step(
            "duplicate", Position(4, "e1")
        )


def test_jump_in_offsets_is_a_gap_counting_the_missed() -> None:
    step = advance(Position(4, "e1"), {"offset": 8, "epoch": "e1"})
    assert step == Step("gap", Position(8, "e1"), missed=3)


def test_new_epoch_resets_the_position() -> None:
    assert advance(Position(40, "e1"), {"offset": 1, "epoch": "e2"}) == Step(
        "epoch", Position(1, "e2")
    )


def test_messages_without_offset_are_delivered_as_they_are() -> None:
    assert advance(Position(4, "e1"), {"data": 1}) == Step("deliver", Position(4, "e1"))
    assert advance(None, {"offset": True}) == Step("deliver", None)


def test_first_offset_starts_the_position() -> None:
    assert advance(None, {"offset": 9, "epoch": "e"}) == Step("deliver", Position(9, "e"))


def test_position_is_sent_as_since() -> None:
    assert Position(3, "e").as_since() == {"offset": 3, "epoch": "e"}
