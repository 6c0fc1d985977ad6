"""A channel's position in its history, and what each arriving message does to it. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["deliver", "duplicate", "gap", "epoch"]


@dataclass(frozen=True, slots=True)
class Position:
    """The offset of the last message seen on a channel, and the epoch it belongs to."""

    offset: int
    epoch: str

    def as_since(self) -> dict[str, Any]:
        """The ``since`` field of a `subscribe` or `history` command."""
        return {"offset": self.offset, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class Step:
    """Where a message leaves the position, and whether to deliver it."""

    verdict: Verdict
    position: Position | None
    missed: int = 0


def advance(position: Position | None, frame: dict[str, Any]) -> Step:
    """Track one `message` frame.

    "deliver"; "duplicate" (offset at or below the last seen: drop it); "gap" (``missed``
    offsets were skipped: deliver, continuity is lost); "epoch" (the channel's history was
    reset: deliver, continuity is lost). Frames without an offset (channels without
    history) are always delivered.
    """
    offset = frame.get("offset")
    if not isinstance(offset, int) or isinstance(offset, bool):
        return Step("deliver", position)
    epoch = frame.get("epoch")
    if not isinstance(epoch, str):
        epoch = position.epoch if position else ""
    following = Position(offset, epoch)
    if position is None:
        return Step("deliver", following)
    if epoch != position.epoch:
        return Step("epoch", following)
    if offset <= position.offset:
        return Step("duplicate", position)
    missed = offset - position.offset - 1
    return Step("gap" if missed else "deliver", following, missed)
