"""A clock that tests move by hand (time is a parameter; nothing sleeps)."""

from __future__ import annotations


class FakeClock:
    """Returns ``now``, which the test sets."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
