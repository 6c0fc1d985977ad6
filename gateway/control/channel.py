"""The control channel: commands one replica sends every replica (disconnect a user).

Commands travel on ``#control`` (`CONTROL_CHANNEL`), a channel no client can name, carried
by the broker like any other, so it works on the memory broker and across replicas on Redis.
Each replica holds it on its broker (not in its hub, which knows only client
subscriptions); the broker hands its traffic to `ControlChannel.on_control`. A replica
reports ready only once the subscription is live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from gateway.aio.backoff import Backoff
from gateway.broker.base import PubSub
from gateway.services.connections import ConnectionRegistry
from gateway.wire.channels import CONTROL_CHANNEL
from gateway.wire.envelope import parse_envelope
from gateway.wire.errors import DISCONNECTED_BY_SERVER, GatewayError

log = logging.getLogger(__name__)

SUBSCRIBE_RETRY = (0.05, 1.0)
"""Backoff of a failed subscription to the control channel (first and longest delay)."""


class ControlChannel:
    """One replica's end of the control channel."""

    def __init__(
        self,
        broker: PubSub,
        connections: ConnectionRegistry,
        node_id: str,
        retry: tuple[float, float] = SUBSCRIBE_RETRY,
    ) -> None:
        self._broker = broker
        self._connections = connections
        self._node_id = node_id
        self._retry = retry
        self._task: asyncio.Task[None] | None = None
        self._live = False
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        """Further commands by ``op``, each run on every replica (never awaiting)."""

    @property
    def live(self) -> bool:
        """True once this replica receives the control channel."""
        return self._live

    async def start(self) -> None:
        """Subscribe to the control channel, in the background, until it is live."""
        self._task = asyncio.create_task(self._subscribe(), name="control-channel")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._live:
            self._live = False
            self._broker.unsubscribe(CONTROL_CHANNEL)

    async def disconnect_user(self, user: str) -> None:
        """Close every connection of ``user`` on every replica with 4003.

        Raises:
            GatewayError: `unavailable` when the broker did not take the command.
        """
        command = {"op": "disconnect", "user": user, "node": self._node_id}
        await self._broker.publish(CONTROL_CHANNEL, orjson.dumps(command)[:-1], None)

    async def send(self, op: str, **fields: Any) -> None:
        """Run ``op`` (one of `handlers`) with ``fields`` on every replica.

        Raises:
            GatewayError: `unavailable` when the broker did not take the command.
        """
        command = {**fields, "op": op, "node": self._node_id}
        await self._broker.publish(CONTROL_CHANNEL, orjson.dumps(command)[:-1], None)

    def on_control(self, envelope: bytes) -> None:
        """Run a command received on the control channel; never awaits."""
        frame = parse_envelope(envelope)[3]
        try:
            command = orjson.loads(frame)
            op, user = command["op"], command["user"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            log.warning("control.bad_command bytes=%d", len(frame))
            return
        handler = self.handlers.get(op)
        if handler is not None:
            try:
                handler(command)
            except Exception:
                log.exception("control.handler_failed op=%s", op)
            return
        if op == "disconnect" and isinstance(user, str):
            closed = self._connections.of_user(user)
            for connection in closed:
                connection.close(DISCONNECTED_BY_SERVER)
            log.info("control.disconnect user=%s closed=%d", user, len(closed))

    async def _subscribe(self) -> None:
        backoff = Backoff(*self._retry)
        while not self._live:
            try:
                await self._broker.subscribe(CONTROL_CHANNEL)
                self._live = True
            except GatewayError:
                await asyncio.sleep(backoff.delay())
