"""A ``history`` query as Centrifugo means it, for the client protocol and the server API:
``limit`` 0 gives only the stream's position, -1 everything history keeps; without
``since`` the stream is read from its oldest publication (``reverse``: from its newest);
with ``since`` from the publication after it (``reverse``: before it)."""

from __future__ import annotations

from gateway.core.history import HistoryPolicy
from gateway.services.history import HistoryReader
from gateway.wire.protocol import StreamPosition


class PositionLost(Exception):
    """``since`` is not in this stream: another epoch, or beyond its top (error 112)."""


async def read_history(
    reader: HistoryReader,
    channel: str,
    policy: HistoryPolicy,
    *,
    since: StreamPosition | None,
    limit: int,
    reverse: bool,
    max_bytes: int,
) -> tuple[StreamPosition, list[tuple[int, bytes]]]:
    """The stream's position and the ``(offset, frame)`` pairs asked for, in reply order.

    Raises:
        PositionLost: ``since`` is not a position of this stream.
        GatewayError: `unavailable`.
    """
    limit = policy.size if limit < 0 else min(limit, policy.size)
    head = await reader.read(channel, policy, after=None, count=0, max_bytes=max_bytes)
    top = head.position
    if since is not None and (since.epoch != top.epoch or since.offset > top.offset):
        raise PositionLost
    if limit <= 0:
        return top, []
    if not reverse:
        after = since.offset if since is not None else 0
        count = limit
    else:
        before = since.offset if since is not None else top.offset + 1
        after = max(0, before - 1 - limit)
        count = before - 1 - after
        if count <= 0:
            return top, []
    found = await reader.read(channel, policy, after=after, count=count, max_bytes=max_bytes)
    messages = found.messages
    if reverse:
        messages = [item for item in messages if since is None or item[0] < since.offset]
        messages.reverse()
    return found.position, messages
