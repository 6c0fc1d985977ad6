"""The broker contract every backend fulfils, and the values that cross it."""

from __future__ import annotations

from typing import Protocol


class BrokerHandler(Protocol):
    """Receives what the broker pushes; called from the broker's reader, must never await."""

    def on_publication(self, channel: str, frame: bytes) -> None:
        """A publication on a channel this replica holds, as the complete frame for clients."""
        ...


class Broker(Protocol):
    """Publish/subscribe between replicas.

    Delivery is at most once per replica subscription; a replica holds one broker
    subscription per channel however many local clients want it.
    """

    @property
    def available(self) -> bool:
        """False while the backend is unreachable: publishes and subscribes fail at once."""
        ...

    async def start(self, handler: BrokerHandler) -> None:
        """Begin delivering publications to ``handler``; does not wait for the backend."""
        ...

    async def close(self) -> None:
        """Stop every task and release every connection."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Hold a subscription to ``channel``; returns once it is live on the backend.

        Raises:
            GatewayError: `unavailable` when the backend cannot be reached in time.
        """
        ...

    def unsubscribe(self, channel: str) -> None:
        """Release the subscription to ``channel``: nothing more is delivered for it.

        The backend subscription is dropped in the background; this never blocks.
        """
        ...

    async def publish(self, channel: str, frame: bytes) -> None:
        """Send a complete frame to every replica holding ``channel``; returns once accepted.

        Raises:
            GatewayError: `unavailable` when the backend did not accept it.
        """
        ...
