"""Reading a channel's history in pieces of bounded size.

A `history` reply carries at most ``history_reply_bytes`` of messages, and no broker read
returns more than `READ_BYTES` whatever the namespace's ``history_size``: a read asks for
at most ``READ_BYTES // max_message_bytes`` messages (128 with the defaults, more than the
default ``history_size``, so a default history is one read, as it always was).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.broker.base import HistoryPage, HistoryPolicy, HistoryStore
from gateway.wire.protocol import StreamPosition

READ_BYTES = 8 * 1024 * 1024
"""Most message bytes one broker read may bring into memory."""

HIGHEST_READABLE_OFFSET = 2**53
"""Reads never ask for messages after a greater offset. No channel gets there (it takes
2^53 publications), and Redis' Lua holds numbers as doubles, exact only up to 2^53: a
request after a greater offset is answered as one after this one (nothing)."""


@dataclass(frozen=True, slots=True)
class HistorySlice:
    """The part of a channel's history one reply carries.

    ``position`` is the channel's latest offset and its epoch; ``messages`` are
    ``(offset, frame)`` pairs in offset order; ``more`` is True when matching messages
    were left out to keep the slice within its size (ask again after the last one).
    """

    position: StreamPosition
    messages: list[tuple[int, bytes]]
    more: bool


class HistoryReader:
    """Bounded reads of channel histories from one broker."""

    def __init__(self, broker: HistoryStore, max_message_bytes: int) -> None:
        self._broker = broker
        self.chunk = max(1, READ_BYTES // max_message_bytes)
        """Messages asked for in one broker read."""

    async def page_after(self, channel: str, policy: HistoryPolicy, offset: int) -> HistoryPage:
        """One read of the oldest messages after ``offset``; a page of fewer than `chunk`
        messages holds every message after it.

        Raises:
            GatewayError: `unavailable`.
        """
        after = min(offset, HIGHEST_READABLE_OFFSET)
        return await self._broker.read_history(channel, policy, after=after, limit=self.chunk)

    async def read(
        self,
        channel: str,
        policy: HistoryPolicy,
        *,
        after: int | None,
        count: int,
        max_bytes: int,
    ) -> HistorySlice:
        """Up to ``count`` messages after offset ``after`` (without it, the newest
        ``count``), oldest first, as many as fit in ``max_bytes`` (at least one, so that
        paging always moves on).

        Raises:
            GatewayError: `unavailable`.
        """
        broker = self._broker
        if after is None:
            if count <= self.chunk:
                page = await broker.read_history(channel, policy, limit=count)
                return _fitted(page, page.messages, max_bytes)
            # the newest `count` take more than one read: learn where they begin
            head = await broker.read_history(channel, policy, limit=0)
            position: StreamPosition | None = head.position
            after = max(head.first, head.top - count + 1) - 1
        else:
            position = None
            after = min(after, HIGHEST_READABLE_OFFSET)
        taken: list[tuple[int, bytes]] = []
        size = 0
        while True:
            want = min(self.chunk, count - len(taken))
            page = await broker.read_history(channel, policy, after=after, limit=want)
            if position is not None and page.epoch != position.epoch:
                # the history was lost meanwhile: the next request learns it from the epoch
                return HistorySlice(position, taken, more=True)
            position = page.position
            for offset, frame in page.messages:
                if taken and size + len(frame) > max_bytes:
                    return HistorySlice(position, taken, more=True)
                taken.append((offset, frame))
                size += len(frame)
            if len(page.messages) < want or len(taken) >= count:
                return HistorySlice(position, taken, more=False)
            after = taken[-1][0]


def _fitted(page: HistoryPage, messages: list[tuple[int, bytes]], max_bytes: int) -> HistorySlice:
    """The oldest of ``messages`` that fit in ``max_bytes`` (at least one)."""
    size = 0
    for index, (_, frame) in enumerate(messages):
        size += len(frame)
        if index and size > max_bytes:
            return HistorySlice(page.position, messages[:index], more=True)
    return HistorySlice(page.position, messages, more=False)
