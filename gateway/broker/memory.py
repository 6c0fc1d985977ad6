"""The in-process broker: one replica, nothing shared. The reference implementation."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway import protocol
from gateway.broker.base import (
    Broker,
    BrokerHandler,
    HistoryPage,
    HistoryPolicy,
    envelope,
    new_epoch,
    now_us,
)
from gateway.errors import ErrorCode, GatewayError
from gateway.protocol import StreamPosition


@dataclass
class _Stream:
    epoch: str
    top: int = 0
    expires_at: float = float("inf")
    messages: deque[tuple[int, bytes]] = field(default_factory=deque)


class MemoryBroker:
    """Delivers each publication synchronously to this process's subscribed channels."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._handler: BrokerHandler | None = None
        self._channels: set[str] = set()
        self._streams: dict[str, _Stream] = {}
        self._presence: dict[str, dict[str, tuple[bytes, float]]] = {}
        self._nodes: dict[str, tuple[bytes, float]] = {}

    @property
    def available(self) -> bool:
        return self._handler is not None

    @property
    def channels(self) -> frozenset[str]:
        """Channels currently held (what Redis would list in ``PUBSUB CHANNELS``)."""
        return frozenset(self._channels)

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._check()
        self._channels.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(
        self, channel: str, head: bytes, history: HistoryPolicy | None
    ) -> StreamPosition | None:
        return self._publish(channel, head, history)

    def _publish(
        self, channel: str, head: bytes, history: HistoryPolicy | None
    ) -> StreamPosition | None:
        handler = self._check()
        position = None
        if history is not None:
            stream = self._stream(channel, history)
            stream.top += 1
            position = StreamPosition(stream.top, stream.epoch)
            frame = protocol.close_message(head, position)
            stream.messages.append((stream.top, frame))
            while len(stream.messages) > history.size:
                stream.messages.popleft()
            stream.expires_at = self._clock() + history.ttl
        else:
            frame = protocol.close_message(head)
        if channel in self._channels:
            handler.on_publication(channel, envelope(frame, position, now_us()))
        return position

    def publish_soon(
        self, channel: str, head: bytes, history: HistoryPolicy | None
    ) -> asyncio.Future[StreamPosition | None]:
        future: asyncio.Future[StreamPosition | None] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self._publish(channel, head, history))
        except GatewayError as error:
            future.set_exception(error)
        return future

    async def read_history(
        self,
        channel: str,
        history: HistoryPolicy,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        self._check()
        stream = self._stream(channel, history)
        retained = list(stream.messages)
        first = retained[0][0] if retained else stream.top + 1
        if after is not None:
            chosen = [item for item in retained if item[0] > after]
            chosen = chosen if limit is None else chosen[:limit]
        else:
            chosen = retained[-limit:] if limit else []
        return HistoryPage(stream.epoch, stream.top, first, chosen)

    async def presence_add(self, channel: str, client: str, entry: bytes, ttl: float) -> None:
        self._check()
        self._presence.setdefault(channel, {})[client] = (entry, self._clock() + ttl)

    async def presence_remove(self, channel: str, client: str) -> None:
        self._check()
        members = self._presence.get(channel)
        if members is not None:
            members.pop(client, None)
            if not members:
                del self._presence[channel]

    async def presence_refresh(self, members: list[tuple[str, str, bytes]], ttl: float) -> None:
        self._check()
        expires_at = self._clock() + ttl
        for channel, client, entry in members:
            self._presence.setdefault(channel, {})[client] = (entry, expires_at)

    async def presence(self, channel: str) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
        self._check()
        now = self._clock()
        entries = self._presence.get(channel, {})
        expired = [(client, entry) for client, (entry, until) in entries.items() if until <= now]
        for client, _ in expired:
            del entries[client]
        return {client: entry for client, (entry, _) in entries.items()}, expired

    def _check(self) -> BrokerHandler:
        if self._handler is None:
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker is closed")
        return self._handler

    def _stream(self, channel: str, history: HistoryPolicy) -> _Stream:
        """The channel's stream; a new epoch when there was none or it expired."""
        stream = self._streams.get(channel)
        if stream is None or stream.expires_at <= self._clock():
            stream = self._streams[channel] = _Stream(new_epoch())
            stream.expires_at = self._clock() + history.ttl
        return stream

    async def register_node(self, node: str, state: bytes, ttl: float) -> None:
        self._check()
        self._nodes[node] = (state, self._clock() + ttl)

    async def unregister_node(self, node: str) -> None:
        self._nodes.pop(node, None)

    async def nodes(self) -> dict[str, bytes]:
        self._check()
        now = self._clock()
        for node in [node for node, (_, expiry) in self._nodes.items() if expiry <= now]:
            del self._nodes[node]
        return {node: state for node, (state, _) in self._nodes.items()}


_: type[Broker] = MemoryBroker
