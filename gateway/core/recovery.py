"""Subscribing with `since`: missed messages first, then the live stream, no gap, no duplicate.

The order that is always safe (see docs/guarantees.md): join the hub first with a
`RecoveryBuffer` that keeps live publications aside, then read the history after `since`,
then send `subscribed`, the history, and the buffered live messages that continue it —
`merge` decides which — and only then hand the subscription to the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from gateway.core.frames import Outgoing
from gateway.core.hub import Subscriber
from gateway.wire.errors import Disconnect

T = TypeVar("T")


def merge(
    since: int, history: Sequence[tuple[int, T]], live: Sequence[tuple[int, T]]
) -> tuple[list[T], int] | None:
    """The items to send after position ``since``, in offset order, and the last offset.

    ``history`` and ``live`` are ``(offset, item)`` pairs that may overlap (an offset in
    both is the same message, sent once); offsets at or below ``since`` were seen already.
    Returns None when the two together leave a hole after ``since``: then recovery is
    impossible.
    """
    by_offset: dict[int, T] = {}
    for pairs in (history, live):
        for offset, item in pairs:
            if offset > since:
                by_offset.setdefault(offset, item)
    last = since + len(by_offset)
    if by_offset and max(by_offset) != last:
        return None
    return [by_offset[offset] for offset in range(since + 1, last + 1)], last


class RecoveryBuffer:
    """Stands in for a connection in the hub while its missed messages are read and sent.

    Keeps at most ``limit`` live publications of at most ``byte_limit`` bytes in all; one
    more makes it a slow consumer, as the connection's own queue would.
    """

    __slots__ = ("_byte_limit", "_bytes", "_limit", "_owner", "messages")

    def __init__(self, owner: Subscriber, limit: int, byte_limit: int) -> None:
        self._owner = owner
        self._limit = limit
        self._byte_limit = byte_limit
        self._bytes = 0
        self.messages: list[Outgoing] = []

    def deliver(self, message: Outgoing) -> bool:
        size = self._bytes + message.size
        if len(self.messages) >= self._limit or size > self._byte_limit:
            return False
        self.messages.append(message)
        self._bytes = size
        return True

    def take(self) -> list[Outgoing]:
        """The publications kept so far, which the buffer then forgets."""
        messages, self.messages = self.messages, []
        self._bytes = 0
        return messages

    def close(self, reason: Disconnect) -> None:
        self._owner.close(reason)

    def pairs(self) -> list[tuple[int, Outgoing]]:
        """The buffered publications as ``(offset, message)``."""
        return [(message.offset, message) for message in self.messages]
