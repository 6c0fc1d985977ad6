"""The one backoff of every retry loop (gateway/aio/backoff.py)."""

from __future__ import annotations

import pytest

from gateway.aio.backoff import Backoff
from tests.support.clock import FakeClock


def test_delays_are_full_jitter_under_a_doubling_cap() -> None:
    backoff = Backoff(0.1, 0.8, random=lambda: 0.5)
    assert [backoff.delay() for _ in range(6)] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.4, 0.4])
    assert Backoff(0.1, 0.8, random=lambda: 0.0).delay() == 0.0


def test_the_cap_holds_for_any_number_of_attempts() -> None:
    backoff = Backoff(0.25, 10.0, random=lambda: 0.999)
    for _ in range(2000):
        assert backoff.delay() < 10.0


def test_reset_starts_again_from_the_shortest_delay() -> None:
    backoff = Backoff(0.1, 1.0, random=lambda: 1.0)
    for _ in range(5):
        backoff.delay()
    backoff.reset()
    assert backoff.delay() == pytest.approx(0.1) and backoff.attempt == 1


def test_a_success_resets_once_it_lasted_stable_after() -> None:
    clock = FakeClock(0.0)
    backoff = Backoff(0.1, 10.0, stable_after=5.0, random=lambda: 1.0, clock=clock)
    for _ in range(3):
        backoff.delay()
    backoff.succeeded()
    clock.now = 4.0  # dropped before it was stable: one more failure
    assert backoff.delay() == pytest.approx(0.8)
    backoff.succeeded()
    clock.now = 10.0
    assert backoff.delay() == pytest.approx(0.1)


def test_without_stable_after_a_success_resets_at_once() -> None:
    backoff = Backoff(0.1, 10.0, random=lambda: 1.0)
    backoff.delay()
    backoff.delay()
    backoff.succeeded()
    assert backoff.delay() == pytest.approx(0.1)
