"""The in-process broker: one replica, nothing shared. The reference implementation."""

from __future__ import annotations

from gateway.broker.base import Broker, BrokerHandler
from gateway.errors import ErrorCode, GatewayError


class MemoryBroker:
    """Delivers each publication synchronously to this process's subscribed channels."""

    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None
        self._channels: set[str] = set()

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
        if self._handler is None:
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker is closed")
        self._channels.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, frame: bytes) -> None:
        if self._handler is None:
            raise GatewayError(ErrorCode.UNAVAILABLE, "the broker is closed")
        if channel in self._channels:
            self._handler.on_publication(channel, frame)


_: type[Broker] = MemoryBroker
