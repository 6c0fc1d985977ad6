"""Per-connection command rate: a token bucket, and when a client that ignores it is closed.

A connection may run ``rate`` commands per second, with bursts of up to ``rate`` commands
(the bucket starts full). A command over the rate is answered `rate_limited` and not run.
A client *keeps going* when it collects ``strikes`` `rate_limited` answers within
``STRIKE_WINDOW`` seconds, ``strikes`` being ``max(MIN_STRIKES, rate)``: the command that
reaches that count gets its error, then the connection is closed with 4029. A client that
slows down when told never reaches it. ``rate = 0`` turns limiting off.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from enum import Enum

STRIKE_WINDOW = 10.0
"""Seconds over which `rate_limited` answers are counted."""

MIN_STRIKES = 10
"""The fewest `rate_limited` answers in the window that close a connection."""


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    __slots__ = ("_burst", "_clock", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class Verdict(Enum):
    """What to do with one command."""

    RUN = "run"
    LIMITED = "limited"
    """Answer `rate_limited`."""
    CLOSE = "close"
    """Answer `rate_limited`, then close with 4029."""


class CommandLimiter:
    """The rate of one connection's commands; see the module docstring for the rules."""

    __slots__ = ("_bucket", "_clock", "_strikes", "_struck")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._bucket = TokenBucket(rate, rate, clock) if rate > 0 else None
        self._strikes = max(MIN_STRIKES, math.ceil(rate))
        self._struck: deque[float] | None = None

    def check(self) -> Verdict:
        """Count one command and say what to do with it."""
        if self._bucket is None or self._bucket.take():
            return Verdict.RUN
        now = self._clock()
        struck = self._struck
        if struck is None:
            struck = self._struck = deque()
        struck.append(now)
        while struck[0] <= now - STRIKE_WINDOW:
            struck.popleft()
        return Verdict.CLOSE if len(struck) >= self._strikes else Verdict.LIMITED
