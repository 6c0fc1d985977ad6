"""The one backoff of every retry loop: capped exponential delays with full jitter."""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable


class Backoff:
    """Delays for consecutive failed attempts: the n-th (from 0) is drawn uniformly from
    ``[0, min(cap, first * 2**n))`` ("full jitter"), so that many retrying parties spread
    out instead of retrying together.

    A success resets the sequence, once it has lasted ``stable_after`` seconds by ``clock``
    (`succeeded` then `failed` too soon counts as one more failure): a link that comes up
    and drops at once does not retry at the shortest delay for ever. ``random`` and
    ``clock`` are parameters so that tests choose them.
    """

    __slots__ = ("_clock", "_random", "_up_since", "attempt", "cap", "first", "stable_after")

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        stable_after: float = 0.0,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first = first
        self.cap = cap
        self.stable_after = stable_after
        self._random = random
        self._clock = clock
        self._up_since: float | None = None
        self.attempt = 0
        """Failed attempts since the last stable success."""

    def ceiling(self, attempt: int) -> float:
        """The largest delay of the ``attempt``-th retry."""
        return min(self.cap, self.first * 2.0 ** min(attempt, 62))

    def delay(self) -> float:
        """The delay before the next attempt; the one after may be longer, up to the cap."""
        if self._up_since is not None:
            if self._clock() - self._up_since >= self.stable_after:
                self.attempt = 0
            self._up_since = None
        delay = self._random() * self.ceiling(self.attempt)
        self.attempt += 1
        return delay

    def succeeded(self) -> None:
        """An attempt succeeded; the sequence starts again once it proves stable."""
        if self.stable_after <= 0:
            self.reset()
        else:
            self._up_since = self._clock()

    def reset(self) -> None:
        """Start again from the shortest delay."""
        self.attempt = 0
        self._up_since = None
