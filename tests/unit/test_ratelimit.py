"""The per-connection command rate (gateway.security.ratelimit), on a fake clock."""

from __future__ import annotations

from gateway.security.ratelimit import (
    MIN_STRIKES,
    STRIKE_WINDOW,
    CommandLimiter,
    TokenBucket,
    Verdict,
)
from tests.support.clock import FakeClock


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=10, clock=clock)
    assert all(bucket.take() for _ in range(10))
    assert not bucket.take()
    clock.now += 0.1
    assert bucket.take() and not bucket.take()
    clock.now += 60
    assert sum(bucket.take() for _ in range(50)) == 10


def test_commands_over_the_rate_are_limited() -> None:
    clock = FakeClock()
    limiter = CommandLimiter(rate=20, clock=clock)
    verdicts = [limiter.check() for _ in range(25)]
    assert verdicts == [Verdict.RUN] * 20 + [Verdict.LIMITED] * 5


def test_a_client_that_keeps_going_is_closed() -> None:
    clock = FakeClock()
    limiter = CommandLimiter(rate=5, clock=clock)
    verdicts = [limiter.check() for _ in range(5 + MIN_STRIKES)]
    assert verdicts[:5] == [Verdict.RUN] * 5
    assert verdicts[5:-1] == [Verdict.LIMITED] * (MIN_STRIKES - 1)
    assert verdicts[-1] is Verdict.CLOSE


def test_strikes_scale_with_the_rate() -> None:
    limiter = CommandLimiter(rate=50, clock=FakeClock())
    verdicts = [limiter.check() for _ in range(100)]
    assert verdicts.count(Verdict.LIMITED) == 49 and verdicts[-1] is Verdict.CLOSE


def test_a_client_that_slows_down_is_never_closed() -> None:
    clock = FakeClock()
    limiter = CommandLimiter(rate=5, clock=clock)
    for _ in range(20):
        verdicts = [limiter.check() for _ in range(5 + MIN_STRIKES - 1)]
        assert Verdict.CLOSE not in verdicts
        clock.now += STRIKE_WINDOW


def test_rate_zero_turns_limiting_off() -> None:
    limiter = CommandLimiter(rate=0, clock=FakeClock())
    assert all(limiter.check() is Verdict.RUN for _ in range(10_000))
