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

from gateway.broker.base import NodeStore
from gateway.wire.errors import GatewayError

HEARTBEAT_SECONDS = 1.0
"""How often a replica refreshes its entry in the registry."""

NODE_TTL = 3 * HEARTBEAT_SECONDS
"""Seconds a replica stays listed after its last heartbeat."""

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
        while True:
            with contextlib.suppress(GatewayError):
                state = orjson.dumps(await self._state())
                await self._store.register_node(self._node_id, state, self._ttl)
            await asyncio.sleep(self._heartbeat)


def _with_uptime(state: dict[str, Any], now: float) -> dict[str, Any]:
    started_at = float(state["started_at"])
    return {**state, "uptime": round(max(0.0, now - started_at), 3)}
