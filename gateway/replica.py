"""One gateway replica at run time: its broker, hub, connections and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from gateway.broker import Broker, create_broker
from gateway.control.plane import ControlPlane
from gateway.core.hub import Hub
from gateway.core.outbox import LoopPasses
from gateway.ops.metrics import Metrics, Stats
from gateway.ops.refusals import REFUSALS
from gateway.security.auth import ANONYMOUS, Principal, anonymous
from gateway.security.guard import Security
from gateway.services.admission import Admission, client_address
from gateway.services.presence import Presence
from gateway.session.commands import Commands, history_policy
from gateway.session.connection import Connection, PlainTextConnection, ProtocolConnection
from gateway.settings import NamespaceOptions, Settings
from gateway.transport.websocket import sink_for
from gateway.wire.channels import is_valid_channel
from gateway.wire.errors import DRAIN, SHUTDOWN, ErrorCode, GatewayError
from gateway.wire.protocol import SUBPROTOCOL, StreamPosition

log = logging.getLogger(__name__)

STOP_DEADLINE = 5.0
"""Seconds `Replica.stop` waits for connections to close before stopping the broker."""
DRAIN_STEPS_PER_SECOND = 10
"""How finely a drain spreads its closes over the drain window."""
POSITION_BYTES = 64
"""Room kept for the offset and epoch a stored message gains."""


class Replica:
    """Everything one replica owns; built by `create_app`, started and stopped by its lifespan."""

    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.broker = broker if broker is not None else create_broker(settings)
        self.security = Security(settings)
        self.admission = Admission(settings)
        self.stats = Stats()
        self.loop_passes = LoopPasses()
        self.metrics = Metrics(self)
        self._publish_roundtrip = self.metrics.broker_roundtrip.labels("publish")
        self.hub = Hub(self.broker, self.metrics.publish_to_deliver.observe)
        self.presence = Presence(self.broker, settings.presence_ttl)
        self.commands = Commands(self)
        self.control = ControlPlane(self)
        self.connections: dict[str, Connection] = {}
        self.started_at = time.time()
        self.draining = False
        self._running = False
        self._all_closed = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Accepting clients: started, not draining, and the broker ready (`Broker.ready`)."""
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, str]:
        """Whether the replica is ready, and why not."""
        if not self._running:
            return False, "not started"
        if self.draining:
            return False, "draining"
        if not self.broker.accepting:
            return False, "broker unreachable"
        if not self.broker.ready:
            return False, "broker pub/sub link down"
        if not self.control.live:
            return False, "control channel not subscribed yet"
        return True, "ready"

    async def start(self) -> None:
        """Connect the broker (in the background) and begin accepting clients."""
        await self.broker.start(self.control.tap(self.hub))
        self.presence.start()
        await self.control.start()
        self._running = True
        log.info("replica.started node=%s broker=%s", self.settings.node_id, _broker_kind(self))

    async def stop(self) -> None:
        """Close every connection (1001), wait a little for them, then stop the broker."""
        self._running = False
        for connection in list(self.connections.values()):
            connection.close(SHUTDOWN)
        await self._wait_for_connections(STOP_DEADLINE)
        await self.control.stop()
        await self.presence.close()
        await self.hub.close()
        await self.broker.close()
        log.info("replica.stopped node=%s", self.settings.node_id)

    async def drain(self) -> None:
        """Stop being ready at once, then close every client with 1012, spread over
        ``drain_seconds`` so they do not all reconnect to the other replicas at the same
        moment, and wait (briefly) for the last ones to go."""
        self.draining = True
        connections = list(self.connections.values())
        log.info("replica.draining node=%s clients=%d", self.settings.node_id, len(connections))
        window = self.settings.drain_seconds
        steps = max(1, min(len(connections), int(window * DRAIN_STEPS_PER_SECOND)))
        for step in range(steps):
            for connection in connections[step::steps]:
                connection.close(DRAIN)
            if step < steps - 1:
                await asyncio.sleep(window / steps)
        await self._wait_for_connections(STOP_DEADLINE)

    def publish_soon(
        self, channel: str, head: bytes, options: NamespaceOptions
    ) -> asyncio.Future[StreamPosition | None]:
        """Queue a message built by `protocol.message_head`, stored where history is on.

        Publications queued in one event-loop pass travel to the broker together. The
        future resolves to the message's position (None without history), or fails with
        `unavailable` when the broker did not accept it.

        Raises:
            GatewayError: `too_large` over the size limit.
        """
        self._check_size(head)
        future = self.broker.publish_soon(channel, head, history_policy(options))
        future.add_done_callback(functools.partial(self._published, time.perf_counter()))
        return future

    async def publish(
        self, channel: str, head: bytes, options: NamespaceOptions
    ) -> StreamPosition | None:
        """One publication on its own, sent at once (see `publish_soon`).

        Raises:
            GatewayError: `too_large` over the size limit, `unavailable` when the broker
                did not accept it.
        """
        self._check_size(head)
        started = time.perf_counter()
        position = await self.broker.publish(channel, head, history_policy(options))
        self.stats.published += 1
        self._publish_roundtrip.observe(time.perf_counter() - started)
        return position

    def _check_size(self, head: bytes) -> None:
        limit = self.settings.max_message_bytes
        if len(head) + POSITION_BYTES > limit:
            raise GatewayError(ErrorCode.TOO_LARGE, f"the message would exceed {limit} bytes")

    def _published(self, started: float, future: asyncio.Future[StreamPosition | None]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.stats.published += 1
            self._publish_roundtrip.observe(time.perf_counter() - started)

    async def _wait_for_connections(self, seconds: float) -> None:
        if self.connections:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), seconds)

    async def serve_protocol(self, websocket: WebSocket) -> None:
        """Run a ``/ws`` client from handshake to close."""
        if not await self._admit(websocket):
            return
        principal = await self._principal(websocket)
        if principal is None:
            return
        offered = websocket.scope.get("subprotocols") or ()
        await websocket.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)
        connection = ProtocolConnection(self, websocket, sink_for(websocket), principal)
        await self._run(connection, client_address(websocket.scope))

    async def serve_plain_text(self, websocket: WebSocket) -> None:
        """Run a ``/websocket`` client from handshake to close."""
        channel = websocket.query_params.get("channel", "chat")
        if not is_valid_channel(channel):
            await _deny(websocket, 400, "channel must be 1-255 characters of A-Z a-z 0-9 _-:.@/=,$")
            return
        if self.settings.namespace(channel) is None:
            await _deny(websocket, 404, f"channel {channel!r} is in no configured namespace")
            return
        if not await self._admit(websocket):
            return
        principal = await self._principal(websocket)
        if principal is None:
            return
        await websocket.accept()
        sink = sink_for(websocket)
        connection = PlainTextConnection(self, websocket, sink, principal, channel=channel)
        await self._run(connection, client_address(websocket.scope))

    async def _admit(self, websocket: WebSocket) -> bool:
        refusal = self.security.origin_refusal(websocket.scope["headers"])
        if refusal is not None:
            await _deny(websocket, 403, refusal)
            return False
        ready, reason = self.readiness()
        if not ready:
            await _deny(websocket, 503, f"replica not ready: {reason}")
            return False
        limited = self.admission.check(websocket.scope, len(self.connections))
        if limited is not None:
            await _deny(websocket, limited.status, limited.message)
            return False
        return True

    async def _principal(self, websocket: WebSocket) -> Principal | None:
        """Who the connection is until a token says otherwise: anonymous, with the display
        name of ``?name=`` when auth is off (with auth on, the token's ``info`` is the only
        one others see, and ``name`` is ignored). None when the handshake was refused."""
        try:
            principal = anonymous(websocket.query_params.get("name"))
        except GatewayError as error:
            await _deny(websocket, 400, error.message)
            return None
        return ANONYMOUS if self.security.verifier.enabled else principal

    async def _run(self, connection: Connection, address: str | None) -> None:
        self.connections[connection.id] = connection
        self.admission.opened(address)
        try:
            await connection.run()
        finally:
            self.admission.closed(address)
            del self.connections[connection.id]
            if not self.connections:
                self._all_closed.set()


async def _deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a handshake with an HTTP status and a message (403 where the server can't),
    and log it with its reason."""
    REFUSALS.refused(websocket.scope, status, message)
    try:
        await websocket.send_denial_response(PlainTextResponse(message + "\n", status_code=status))
    except RuntimeError:
        await websocket.close(1008, message.encode()[:120].decode(errors="ignore"))


def _broker_kind(replica: Replica) -> str:
    return "redis" if replica.settings.redis_url else "memory"
