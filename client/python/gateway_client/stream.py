"""A channel's position in its history, and what each arriving message does to it. Pure.

The rule itself is the server's (`gateway.wire.continuity`), which the hub follows too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.wire.continuity import DELIVER, DUPLICATE, GAP, Verdict, judge, missed


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
        return Step(DELIVER, following)
    verdict = judge(position.offset, position.epoch, offset, epoch)
    if verdict == DUPLICATE:
        return Step(verdict, position)
    if verdict == GAP:
        return Step(verdict, following, missed(position.offset, offset))
    return Step(verdict, following)
