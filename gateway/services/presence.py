"""Presence across replicas: who is subscribed to a channel, without ghosts.

Each replica records its own subscribers in the broker with a time to live and refreshes
them on a heartbeat (every third of the TTL). A replica that dies stops refreshing, so its
entries run out within one TTL: every read drops expired entries first, and each replica
sweeps the `join_leave` channels it serves, announcing a `leave` for each entry that ran out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from gateway.aio.tasks import TaskSet
from gateway.broker.base import PresenceStore
from gateway.services.publisher import Publisher
from gateway.wire import protocol
from gateway.wire.errors import GatewayError

log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("data", "info", "join_leave", "user")

    def __init__(self, user: str | None, info: Any, join_leave: bool) -> None:
        self.user = user
        self.info = info
        self.join_leave = join_leave
        self.data = orjson.dumps({"user": user, "info": info})


class Presence:
    """This replica's presence entries, and reads of everyone's."""

    def __init__(self, store: PresenceStore, publisher: Publisher, ttl: float) -> None:
        self._store = store
        self._publisher = publisher
        self.ttl = ttl
        self._local: dict[tuple[str, str], _Entry] = {}
        self._tasks = TaskSet()
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin refreshing this replica's entries."""
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def close(self) -> None:
        """Stop the heartbeat and wait for pending announcements (briefly)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self._tasks.wait(2)
        await self._tasks.close()

    async def join(
        self, channel: str, client: str, user: str | None, info: Any, join_leave: bool
    ) -> None:
        """Record a subscriber, and announce it when the namespace wants `join` events.

        Raises:
            GatewayError: `unavailable` when the broker cannot record it.
        """
        entry = self._local[(channel, client)] = _Entry(user, info, join_leave)
        await self._store.presence_add(channel, client, entry.data, self.ttl)
        if join_leave:
            await self._announce("join", channel, client, entry)

    def leave(self, channel: str, client: str) -> None:
        """Forget a subscriber (in the background) and announce it if it was announced."""
        entry = self._local.pop((channel, client), None)
        if entry is not None:
            self._tasks.spawn(self._remove(channel, client, entry))

    async def members(self, channel: str, join_leave: bool) -> dict[str, Any]:
        """Everyone subscribed to ``channel`` on any replica: ``{client: {user, info}}``.

        Raises:
            GatewayError: `unavailable` when the broker cannot be read.
        """
        entries, expired = await self._store.presence(channel)
        if join_leave:
            self._announce_expired(channel, expired)
        return {client: orjson.loads(data) for client, data in entries.items()}

    async def _remove(self, channel: str, client: str, entry: _Entry) -> None:
        try:
            await self._store.presence_remove(channel, client)
            if entry.join_leave:
                await self._announce("leave", channel, client, entry)
        except GatewayError as exc:
            log.info("presence.leave_deferred channel=%s reason=%s", channel, exc.message)

    async def _announce(self, op: str, channel: str, client: str, entry: _Entry) -> None:
        event = protocol.presence_head(op, channel, client, entry.user, entry.info)
        await self._publisher.announce(channel, event)

    def _announce_expired(self, channel: str, expired: list[tuple[str, bytes]]) -> None:
        for client, data in expired:
            fields = orjson.loads(data)
            entry = _Entry(fields.get("user"), fields.get("info"), join_leave=True)
            self._tasks.spawn(self._announce_quietly("leave", channel, client, entry))

    async def _announce_quietly(self, op: str, channel: str, client: str, entry: _Entry) -> None:
        try:
            await self._announce(op, channel, client, entry)
        except GatewayError as exc:
            log.info("presence.announce_failed channel=%s reason=%s", channel, exc.message)

    async def _beat(self) -> None:
        interval = self.ttl / 3
        while True:
            await asyncio.sleep(interval)
            if not self._local or not self._store.accepting:
                continue
            try:
                members = [(ch, client, e.data) for (ch, client), e in self._local.items()]
                await self._store.presence_refresh(members, self.ttl)
                swept = {ch for (ch, _), e in self._local.items() if e.join_leave}
                for channel in swept:
                    _, expired = await self._store.presence(channel)
                    self._announce_expired(channel, expired)
            except GatewayError as exc:
                log.info("presence.refresh_failed reason=%s", exc.message)
