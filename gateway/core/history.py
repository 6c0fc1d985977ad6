"""The values of a channel's history that cross the broker contract."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.wire.protocol import StreamPosition


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a channel's history is kept: ``size`` messages for ``ttl`` seconds."""

    size: int
    ttl: float


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A consistent read of a channel's history.

    ``top`` is the latest offset (0 before the first publication), ``first`` the oldest
    offset still retained (``top + 1`` when nothing is), ``messages`` the requested
    ``(offset, frame)`` pairs in offset order.
    """

    epoch: str
    top: int
    first: int
    messages: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.top, self.epoch)
