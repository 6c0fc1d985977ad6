"""The connections of one replica: who is here, how many, and closing them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sized
from typing import Protocol

from gateway.wire.errors import Disconnect


class Client(Protocol):
    """What the registry knows of a connection."""

    @property
    def id(self) -> str: ...

    @property
    def user(self) -> str | None: ...

    @property
    def channels(self) -> Sized:
        """The channels it is subscribed to."""
        ...

    def close(self, reason: Disconnect) -> None:
        """Begin closing; returns at once."""
        ...


class ConnectionRegistry:
    """Every open client connection of this replica, by client id."""

    def __init__(self) -> None:
        self._connections: dict[str, Client] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Client]:
        """A snapshot: connections may close while it is walked."""
        return iter(list(self._connections.values()))

    def add(self, connection: Client) -> None:
        self._connections[connection.id] = connection
        self._empty.clear()

    def remove(self, connection: Client) -> None:
        self._connections.pop(connection.id, None)
        if not self._connections:
            self._empty.set()

    def subscriptions(self) -> int:
        """Channel subscriptions, summed over the connections."""
        return sum(len(connection.channels) for connection in self._connections.values())

    def of_user(self, user: str) -> list[Client]:
        """The connections of ``user``."""
        return [c for c in self._connections.values() if c.user == user]

    def close_all(self, reason: Disconnect) -> None:
        """Begin closing every connection."""
        for connection in self:
            connection.close(reason)

    async def wait_until_empty(self, seconds: float) -> None:
        """Wait until every connection has ended, for at most ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), seconds)
