"""What the server side does across replicas: publish as the server, disconnect a user
everywhere, and know which replicas are alive.

Cross-replica commands travel on the control channel, ``#control``: a gateway channel no
client can name (``#`` is not allowed in channel names) carried by the broker like any other,
so it works on the memory broker and across replicas on Redis. Each replica holds it on its
broker (not in its hub, which knows only client subscriptions): `ControlPlane.tap` sits
between the broker and the hub and takes that one channel's publications. A replica reports
ready only once the subscription is live.

Each replica announces itself in the broker's registry every `HEARTBEAT_SECONDS`, with an
announcement that expires after `NODE_TTL` seconds: a replica that dies without a word
(SIGKILL) drops out of ``/api/info`` within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from gateway.broker.base import BrokerHandler, parse_envelope
from gateway.ops import activity
from gateway.wire import protocol
from gateway.wire.errors import DISCONNECTED_BY_SERVER, GatewayError
from gateway.wire.protocol import StreamPosition

if TYPE_CHECKING:
    from gateway.replica import Replica

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "#control"
"""The channel of cross-replica commands; never a valid client channel name."""

HEARTBEAT_SECONDS = 1.0
"""How often a replica refreshes its entry in the registry."""

NODE_TTL = 3 * HEARTBEAT_SECONDS
"""Seconds a replica stays listed after its last heartbeat."""

UNREGISTER_DEADLINE = 1.0
"""Seconds a stopping replica spends removing itself from the registry."""


class ControlPlane:
    """One replica's part in the control channel and the registry, and the server actions."""

    def __init__(self, replica: Replica, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self._replica = replica
        self._heartbeat = heartbeat
        self._ttl = NODE_TTL * heartbeat / HEARTBEAT_SECONDS
        self._task: asyncio.Task[None] | None = None
        self._live = False

    @property
    def live(self) -> bool:
        """True once this replica receives the control channel."""
        return self._live

    async def start(self) -> None:
        """Subscribe to the control channel and start the heartbeat, in the background."""
        self._task = asyncio.create_task(self._run(), name="control-plane")

    async def stop(self) -> None:
        """Stop the heartbeat and leave the registry (best effort: the entry expires anyway)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._live:
            self._live = False
            self._replica.broker.unsubscribe(CONTROL_CHANNEL)
        with contextlib.suppress(GatewayError, TimeoutError):
            await asyncio.wait_for(
                self._replica.broker.unregister_node(self._replica.settings.node_id),
                UNREGISTER_DEADLINE,
            )

    # Server actions (the HTTP API calls these)

    async def publish(self, channel: str, data: Any) -> int | None:
        """Publish ``data`` to ``channel`` as the server (no ``from``); its offset, if any.

        Raises:
            GatewayError: `unknown_namespace`, `too_large`, or `unavailable`.
        """
        offsets = await self.broadcast([channel], data)
        return offsets.get(channel)

    async def broadcast(self, channels: Iterable[str], data: Any) -> dict[str, int]:
        """Publish ``data`` to each channel; the offsets of those with history.

        Every channel's namespace is checked before anything is published.

        Raises:
            GatewayError: `unknown_namespace`, `too_large`, or `unavailable`.
        """
        replica = self._replica
        options = {channel: replica.commands.namespace(channel) for channel in channels}
        positions = await asyncio.gather(
            *(
                replica.publish(channel, protocol.message_head(channel, data, None, None), opts)
                for channel, opts in options.items()
            )
        )
        return {
            channel: position.offset
            for channel, position in zip(options, positions, strict=True)
            if position is not None
        }

    async def presence(self, channel: str) -> dict[str, Any]:
        """Everyone subscribed to ``channel`` on any replica: ``{client: {user, info}}``.

        Raises:
            GatewayError: `unknown_namespace`, `bad_request` where presence is off,
                `unavailable`.
        """
        commands = self._replica.commands
        return await commands.presence_of(channel, commands.namespace(channel))

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int | None
    ) -> tuple[StreamPosition, list[Any], bool]:
        """The channel's position, its messages after ``since`` (else the latest ones), and
        whether more were left out to keep within ``history_reply_bytes``.

        Raises:
            GatewayError: `unknown_namespace`, `bad_request` where history is off or
                ``since`` is not in this history, `unavailable`.
        """
        commands = self._replica.commands
        found = await commands.history_of(channel, commands.namespace(channel), since, limit)
        messages = [orjson.loads(frame) for _, frame in found.messages]
        return found.position, messages, found.more

    async def disconnect_user(self, user: str) -> None:
        """Close every connection of ``user`` on every replica with 4003.

        Raises:
            GatewayError: `unavailable` when the broker did not take the command.
        """
        command = {"op": "disconnect", "user": user, "node": self._replica.settings.node_id}
        await self._replica.broker.publish(CONTROL_CHANNEL, orjson.dumps(command)[:-1], None)

    async def nodes(self) -> list[dict[str, Any]]:
        """Every live replica with its connections, subscriptions and uptime, by node id.

        Raises:
            GatewayError: `unavailable` when the registry cannot be read.
        """
        announced = await self._replica.broker.nodes()
        now = time.time()
        nodes: dict[str, dict[str, Any]] = {}
        for node, state in announced.items():
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError, ValueError):
                nodes[node] = _with_uptime(orjson.loads(state), now)
        node_id = self._replica.settings.node_id
        nodes[node_id] = _with_uptime(await self.state(), now)
        return [nodes[node] for node in sorted(nodes)]

    async def state(self) -> dict[str, Any]:
        """What this replica announces about itself: counts, readiness and activity."""
        replica = self._replica
        top_channels = await activity.top_channels(replica.hub.activity())
        connections = list(replica.connections.values())
        ready, readiness = replica.readiness()
        return {
            "node": replica.settings.node_id,
            "started_at": replica.started_at,
            "at": time.time(),
            "connections": len(connections),
            "subscriptions": sum(len(connection.channels) for connection in connections),
            "channels": replica.hub.channel_count,
            "ready": ready,
            "readiness": readiness,
            "totals": activity.totals(replica.stats, replica.hub),
            "top_channels": top_channels,
        }

    def tap(self, handler: BrokerHandler) -> BrokerHandler:
        """The broker handler of this replica: control commands here, the rest to ``handler``."""
        return _Tap(self, handler)

    def on_command(self, envelope: bytes) -> None:
        """Run a command received on the control channel; never awaits."""
        frame = parse_envelope(envelope)[3]
        try:
            command = orjson.loads(frame)
            op, user = command["op"], command["user"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            log.warning("control.bad_command bytes=%d", len(frame))
            return
        if op == "disconnect" and isinstance(user, str):
            closed = 0
            for connection in list(self._replica.connections.values()):
                if connection.user == user:
                    connection.close(DISCONNECTED_BY_SERVER)
                    closed += 1
            log.info("control.disconnect user=%s closed=%d", user, closed)

    async def _run(self) -> None:
        broker = self._replica.broker
        node = self._replica.settings.node_id
        retry = 0.05
        while True:
            if not self._live:
                try:
                    await broker.subscribe(CONTROL_CHANNEL)
                    self._live = True
                except GatewayError:
                    retry = min(retry * 2, self._heartbeat)
            if self._live:
                with contextlib.suppress(GatewayError):
                    state = orjson.dumps(await self.state())
                    await broker.register_node(node, state, self._ttl)
            await asyncio.sleep(self._heartbeat if self._live else retry)


class _Tap:
    """Takes the control channel's publications; hands every other one on unchanged."""

    __slots__ = ("_control", "_handler")

    def __init__(self, control: ControlPlane, handler: BrokerHandler) -> None:
        self._control = control
        self._handler = handler

    def on_publication(self, channel: str, envelope: bytes) -> None:
        if channel == CONTROL_CHANNEL:
            self._control.on_command(envelope)
        else:
            self._handler.on_publication(channel, envelope)

    def on_reconnected(self) -> None:
        self._handler.on_reconnected()


def _with_uptime(state: dict[str, Any], now: float) -> dict[str, Any]:
    started_at = float(state["started_at"])
    return {**state, "uptime": round(max(0.0, now - started_at), 3)}
