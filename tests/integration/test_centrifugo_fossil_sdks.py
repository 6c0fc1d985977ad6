"""Fossil deltas of ours against the appliers of Centrifugo's SDKs and their test vectors.

- centrifuge-js (under node): every delta ``create`` makes is applied through the SDK's
  own JSON codec (the delta as the JSON string the JSON dialect sends) and Protobuf codec.
- centrifuge-python's sdist ships reference vectors (origin, target, delta made by the
  reference encoder): ours applies each delta and creates the very same delta.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from centrifuge.fossil import apply_delta as sdk_apply
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire.centrifugo import fossil
from tests.support.centrifugo_sdks import JSDeltaApplier, download_sdist
from tests.support.gateways import REPO_ROOT
from tests.unit.test_fossil import edited, edited_text

SDIST_CACHE = REPO_ROOT / "test-artifacts" / "centrifuge-python-sdist"


@pytest.fixture(scope="module")
def js() -> Iterator[JSDeltaApplier]:
    applier = JSDeltaApplier()
    yield applier
    applier.close()


@pytest.fixture(scope="module")
def vectors() -> list[Path]:
    data = download_sdist(SDIST_CACHE) / "tests" / "data"
    cases = sorted(path for path in data.iterdir() if (path / "delta").exists())
    assert len(cases) >= 5, cases
    return cases


def test_reference_vectors_apply_and_are_recreated_byte_for_byte(vectors: list[Path]) -> None:
    for case in vectors:
        origin, target, delta = (
            (case / name).read_bytes() for name in ("origin", "target", "delta")
        )
        assert fossil.apply(origin, delta) == target, case.name
        assert fossil.create(origin, target) == delta, case.name


def test_a_delta_the_reference_made_applies_in_js(vectors: list[Path], js: JSDeltaApplier) -> None:
    for case in vectors:
        origin, target, delta = (
            (case / name).read_bytes() for name in ("origin", "target", "delta")
        )
        assert js.apply(origin, delta, "protobuf") == target, case.name


@settings(max_examples=150, deadline=None)
@given(pair=edited())
def test_random_binary_deltas_apply_in_js(js: JSDeltaApplier, pair: tuple[bytes, bytes]) -> None:
    source, target = pair
    assert js.apply(source, fossil.create(source, target), "protobuf") == target


@settings(max_examples=150, deadline=None)
@given(pair=edited_text())
def test_json_payload_deltas_apply_in_js_as_json_strings(
    js: JSDeltaApplier, pair: tuple[str, str]
) -> None:
    source, target = (json.dumps({"v": text}, ensure_ascii=False).encode() for text in pair)
    delta = fossil.create(source, target, text=True)
    assert js.apply(source, delta, "json") == target
    assert sdk_apply(source, delta) == target


def test_real_payloads_shrink_and_apply_everywhere(js: JSDeltaApplier) -> None:
    """An order book changing a few levels at a time, the kind of data delta is for."""
    rng = __import__("random").Random(7)
    book = {"bids": [[str(60900 - i), f"{rng.uniform(1, 5000):.2f}"] for i in range(200)]}
    previous = json.dumps(book).encode()
    for _ in range(20):
        for level in rng.sample(book["bids"], 5):
            level[1] = f"{rng.uniform(1, 5000):.2f}"
        current = json.dumps(book).encode()
        delta = fossil.create(previous, current, text=True)
        assert len(delta) < len(current) / 10
        for protocol in ("json", "protobuf"):
            assert js.apply(previous, delta, protocol) == current
        assert sdk_apply(previous, delta) == current
        previous = current


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=17, max_size=300))
def test_identical_inputs_are_one_copy(js: JSDeltaApplier, data: bytes) -> None:
    delta = fossil.create(data, data)
    assert delta.count(b"@") == 1 and b":" not in delta
    assert js.apply(data, delta, "protobuf") == data
