"""Loop-pass scheduling: frames written in one event-loop pass leave together."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Deferred(Protocol):
    """Something that writes what it held back once the pass ends (an outbox)."""

    def write_deferred(self) -> None: ...


class LoopPasses:
    """Numbers the event-loop passes in which frames were written, and at the end of each
    pass writes what the outboxes deferred during it.

    The first frame a connection gets in a pass goes to its socket at once; frames that
    follow in the same pass (a burst of publications, a batch of replies) wait until the
    end of the pass and then leave together as one NDJSON frame: one write instead of
    many. Shared by every outbox of a replica.
    """

    __slots__ = ("_deferred", "_ending", "current")

    def __init__(self) -> None:
        self.current = 0
        self._deferred: list[Deferred] = []
        self._ending = False

    def touch(self) -> int:
        """The current pass, making sure it will end."""
        if not self._ending:
            self._ending = True
            asyncio.get_running_loop().call_soon(self._end)
        return self.current

    def defer(self, outbox: Deferred) -> None:
        """Have ``outbox`` write its queue at the end of this pass."""
        self.touch()
        self._deferred.append(outbox)

    def _end(self) -> None:
        self._ending = False
        self.current += 1
        deferred, self._deferred = self._deferred, []
        for outbox in deferred:
            outbox.write_deferred()
