"""The registry of live replicas (``/api/info``).

Each replica announces itself in the broker's node store every `HEARTBEAT_SECONDS`, with an
announcement that expires after `NODE_TTL` seconds: a replica that dies without a word
(SIGKILL) drops out of ``/api/info`` within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.aio.backoff import Backoff
from gateway.broker.base import NodeStore
from gateway.wire.errors import GatewayError

HEARTBEAT_SECONDS = 1.0
"""How often a replica refreshes its entry in the registry."""

NODE_TTL = 3 * HEARTBEAT_SECONDS
"""Seconds a replica stays listed after its last heartbeat."""

RETRY_FIRST = 0.05
"""Seconds before the first retry of a failed announcement (then backing off up to the
heartbeat)."""

UNREGISTER_DEADLINE = 1.0
"""Seconds a stopping replica spends removing itself from the registry."""


class NodeRegistry:
    """This replica's announcements, and the list of every live replica.

    ``state`` is what the replica announces about itself (`gateway.ops.activity.NodeReport`).
    """

    def __init__(
        self,
        store: NodeStore,
        node_id: str,
        state: Callable[[], Awaitable[dict[str, Any]]],
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self._store = store
        self._node_id = node_id
        self._state = state
        self._heartbeat = heartbeat
        self._ttl = NODE_TTL * heartbeat / HEARTBEAT_SECONDS
        self._task: asyncio.Task[None] | None = None
        self._listed = False

    @property
    def listed(self) -> bool:
        """True once this replica's first announcement was accepted (readiness waits for it,
        so a replica that says it is ready is in ``/api/info``)."""
        return self._listed

    async def start(self) -> None:
        """Start the heartbeat, in the background."""
        self._task = asyncio.create_task(self._beat(), name="node-registry")

    async def stop(self) -> None:
        """Stop the heartbeat and leave the registry (best effort: the entry expires anyway)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(GatewayError, TimeoutError):
            await asyncio.wait_for(self._store.unregister_node(self._node_id), UNREGISTER_DEADLINE)

    async def nodes(self) -> list[dict[str, Any]]:
        """Every live replica with its connections, subscriptions and uptime, by node id.

        Raises:
            GatewayError: `unavailable` when the registry cannot be read.
        """
        announced = await self._store.nodes()
        now = time.time()
        nodes: dict[str, dict[str, Any]] = {}
        for node, state in announced.items():
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError, ValueError):
                nodes[node] = _with_uptime(orjson.loads(state), now)
        nodes[self._node_id] = _with_uptime(await self._state(), now)
        return [nodes[node] for node in sorted(nodes)]

    async def _beat(self) -> None:
        backoff = Backoff(RETRY_FIRST, self._heartbeat)
        while True:
            try:
                state = orjson.dumps(await self._state())
                await self._store.register_node(self._node_id, state, self._ttl)
            except GatewayError:
                delay = backoff.delay()
            else:
                backoff.reset()
                if not self._listed:
                    self._listed = True
                    continue  # announce again at once: now the state says it is ready
                delay = self._heartbeat
            await asyncio.sleep(delay)


def _with_uptime(state: dict[str, Any], now: float) -> dict[str, Any]:
    started_at = float(state["started_at"])
    return {**state, "uptime": round(max(0.0, now - started_at), 3)}
