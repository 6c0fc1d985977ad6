"""gateway.wire.centrifugo.fossil: deltas our ``create`` makes are applied right by our
``apply`` and by centrifuge-python's applier, on hand-made and generated inputs.

centrifuge-js's applier and the reference vectors of centrifuge-python's sdist are in
tests/integration/test_centrifugo_fossil_sdks.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from centrifuge.codecs import _JsonCodec
from centrifuge.fossil import apply_delta as sdk_apply
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire.centrifugo import fossil


@st.composite
def edited(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A source and a target made from it by a few cuts, moves and insertions."""
    source = draw(st.binary(max_size=4000))
    pieces: list[bytes] = []
    for _ in range(draw(st.integers(0, 8))):
        if source and draw(st.booleans()):
            start = draw(st.integers(0, len(source) - 1))
            pieces.append(source[start : draw(st.integers(start, start + 2000))])
        else:
            pieces.append(draw(st.binary(max_size=64)))
    return source, b"".join(pieces)


@st.composite
def edited_text(draw: st.DrawFn) -> tuple[str, str]:
    """The same for text of any script (cut on character boundaries)."""
    words = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
    source = "".join(draw(st.lists(words, max_size=60)))
    pieces: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        if source and draw(st.booleans()):
            start = draw(st.integers(0, len(source) - 1))
            pieces.append(source[start : draw(st.integers(start, start + 1000))])
        else:
            pieces.append(draw(words))
    return source, "".join(pieces)


def test_format_of_a_small_source_is_one_literal() -> None:
    delta = fossil.create(b"abc", b"hello")
    assert delta == b"5\n5:hello" + fossil._encode_int(fossil.checksum(b"hello")) + b";"
    assert fossil.apply(b"abc", delta) == b"hello"


def test_a_long_common_run_becomes_one_copy() -> None:
    source = bytes(range(256)) * 4
    target = source[:900] + b"!" + source[100:1000]
    delta = fossil.create(source, target)
    assert len(delta) < 40
    assert delta.count(b"@") >= 2
    assert fossil.apply(source, delta) == target
    assert sdk_apply(source, delta) == target


def test_empty_inputs() -> None:
    for source, target in [(b"", b""), (b"x" * 100, b""), (b"", b"x" * 100)]:
        delta = fossil.create(source, target)
        assert fossil.apply(source, delta) == target
        assert sdk_apply(source, delta) == target


def test_integers_and_checksum() -> None:
    assert [fossil._encode_int(v) for v in (0, 9, 10, 63, 64, 4095, 4096)] == [
        b"0",
        b"9",
        b"A",
        b"~",
        b"10",
        b"~~",
        b"100",
    ]
    assert [fossil._digit_count(v) for v in (0, 63, 64, 4095, 4096)] == [1, 1, 2, 2, 3]
    assert fossil.checksum(b"") == 0
    assert fossil.checksum(b"\x00\x00\x00\x01\x00\x00\x00\x02") == 3
    assert fossil.checksum(b"\x01") == 0x01000000
    assert fossil.checksum(b"\xff\xff\xff\xff\x00\x00\x00\x02") == 1


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (b"5\n5:hello" + b"0;", "checksum mismatch"),
        (b"5\n5:hel", "insert past the end of the delta"),
        (b"4\n5:hello", "insert past the declared length"),
        (b"6\n5:hello", "unterminated delta"),
        (b"3\n3@10,", "copy past the end of the source"),
        (b"3\n3#0,", "unknown command"),
        (b"\n", "expected a number"),
        (b"3 3@0,", "expected b'\\\\n'"),
        (b"3\n3@0;", "expected b','"),
        (b"3\n2@0,0;", "target is 2 bytes, the delta declares 3"),
    ],
)
def test_bad_deltas_are_refused(delta: bytes, message: str) -> None:
    with pytest.raises(fossil.DeltaError, match=message):
        fossil.apply(b"abcdef", delta)


@settings(max_examples=300, deadline=None)
@given(edited())
def test_random_binary_deltas_apply_in_ours_and_the_python_sdk(pair: tuple[bytes, bytes]) -> None:
    source, target = pair
    delta = fossil.create(source, target)
    assert fossil.apply(source, delta) == target
    assert sdk_apply(source, delta) == target


@settings(max_examples=200, deadline=None)
@given(edited_text())
def test_text_deltas_are_utf8_and_apply_as_the_json_dialect_sends_them(
    pair: tuple[str, str],
) -> None:
    source, target = (text.encode() for text in pair)
    delta = fossil.create(source, target, text=True)
    delta.decode("utf-8")
    assert fossil.apply(source, delta) == target
    payload_source = json.dumps(pair[0], ensure_ascii=False).encode()
    payload_target = json.dumps(pair[1], ensure_ascii=False).encode()
    delta = fossil.create(payload_source, payload_target, text=True)
    publication = SimpleNamespace(delta=True, data=delta.decode("utf-8"))
    data, previous = _JsonCodec.apply_delta_if_needed(payload_source, publication)
    assert previous == payload_target
    assert data == pair[1]


def test_text_mode_keeps_copies_on_character_boundaries() -> None:
    source = ("привет, мир! " * 10).encode()
    target = ("привет, мар! " * 10).encode()
    assert fossil.create(source, target, text=True).decode("utf-8")
    with pytest.raises(UnicodeDecodeError):
        fossil.create(source, target).decode("utf-8")
