"""The one rule of a channel's stream: what an arriving message does to a reader's position.

A reader (a replica's hub, a client) knows the offset and epoch of the last message it took
from a channel with history. The next message is one of:

- `DELIVER`: the offset right after the last one, in the same epoch;
- `DUPLICATE`: an offset at or below the last one, same epoch: seen already, drop it;
- `GAP`: a later offset, same epoch: ``offset - last - 1`` messages were missed;
- `EPOCH`: another epoch: the channel's history was reset, continuity is gone.

What a reader does then is its own business: the hub repairs a gap from the history before
dispatching anything newer, and drops duplicates; a client reports a gap or an epoch change
(``unrecovered``) and drops duplicates. Pure; the vectors in client/vectors/continuity.json
hold both clients and the hub to the same answers.
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["deliver", "duplicate", "gap", "epoch"]

DELIVER: Verdict = "deliver"
DUPLICATE: Verdict = "duplicate"
GAP: Verdict = "gap"
EPOCH: Verdict = "epoch"


def judge(last: int, last_epoch: str, offset: int, epoch: str) -> Verdict:
    """The verdict on a message at ``offset`` of ``epoch`` for a reader whose last message
    was ``last`` of ``last_epoch``."""
    if epoch != last_epoch:
        return EPOCH
    if offset <= last:
        return DUPLICATE
    if offset > last + 1:
        return GAP
    return DELIVER


def missed(last: int, offset: int) -> int:
    """How many offsets a `GAP` skipped."""
    return max(0, offset - last - 1)
