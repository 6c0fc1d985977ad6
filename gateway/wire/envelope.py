"""What travels between replicas on a channel's pub/sub topic: an *envelope*.

An envelope is the complete frame clients receive, preceded by a one-line header a replica
reads without decoding the JSON: ``#<offset>:<epoch>:<published at>\\n`` on channels with
history (continuity checks), else ``!<published at>\\n``. The publication time
(microseconds since the Unix epoch, on the publishing replica's clock) feeds the
publish-to-deliver latency metric.
"""

from __future__ import annotations

import secrets
import time

from gateway.wire.protocol import StreamPosition

HISTORY_MARK = 0x23  # "#": an envelope with a position header
TIME_MARK = 0x21  # "!": an envelope with only the publication time


def new_epoch() -> str:
    """A fresh epoch: random, short, and safe to splice into JSON without escaping."""
    return secrets.token_hex(6)


def now_us() -> int:
    """The publication time stamped on envelopes."""
    return time.time_ns() // 1000


def envelope(frame: bytes, position: StreamPosition | None, published_at: int) -> bytes:
    """What a publication looks like on the pub/sub topic."""
    if position is None:
        return b"!%d\n%s" % (published_at, frame)
    return b"#%d:%s:%d\n%s" % (position.offset, position.epoch.encode(), published_at, frame)


def parse_envelope(data: bytes) -> tuple[int, str, int, bytes]:
    """Split an envelope into ``(offset, epoch, published at, frame)``.

    Offset 0 and epoch "" without a position; published at 0 for a bare frame.
    """
    if not data or data[0] not in (HISTORY_MARK, TIME_MARK):
        return 0, "", 0, data
    newline = data.index(b"\n")
    header, frame = data[1:newline], data[newline + 1 :]
    if data[0] == TIME_MARK:
        return 0, "", int(header), frame
    offset, epoch, published_at = header.split(b":")
    return int(offset), epoch.decode(), int(published_at), frame
