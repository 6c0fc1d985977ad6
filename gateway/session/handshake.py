"""The client endpoints: a WebSocket handshake, from admission to the connection's end.

Each endpoint admits the handshake (`HandshakePolicy`: origin, readiness, limits), decides
who the connection is until a token says otherwise, accepts, and runs the dialect's
connection while the registry holds it. An ``on_connect`` hook belongs between deciding the
principal and accepting, on every endpoint.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from gateway.ops.refusals import REFUSALS
from gateway.security.auth import ANONYMOUS, Principal, anonymous
from gateway.security.guard import Security
from gateway.services.admission import Admission, HandshakePolicy, client_address
from gateway.services.connections import ConnectionRegistry
from gateway.session.centrifugo import CentrifugoConnection
from gateway.session.centrifugo_encoding import DeltaEncoding
from gateway.session.commands import Commands
from gateway.session.connection import Connection, SessionContext
from gateway.session.plain import PlainTextConnection
from gateway.session.pubsub import ProtocolConnection
from gateway.transport.sinks import sink_for
from gateway.wire.centrifugo.codec import PROTOBUF_SUBPROTOCOL, Encoding, encoding_for
from gateway.wire.channels import is_valid_channel
from gateway.wire.errors import GatewayError
from gateway.wire.protocol import SUBPROTOCOL


class Endpoints:
    """``/ws``, ``/websocket`` and ``/connection/websocket`` of one replica."""

    def __init__(
        self,
        context: SessionContext,
        commands: Commands,
        policy: HandshakePolicy,
        admission: Admission,
        connections: ConnectionRegistry,
        security: Security,
    ) -> None:
        self._context = context
        self._commands = commands
        self._policy = policy
        self._admission = admission
        self._connections = connections
        self._security = security
        self._deltas = {
            wire: DeltaEncoding(wire, context.settings.delta_max_bytes) for wire in Encoding
        }

    async def serve_protocol(self, websocket: WebSocket) -> None:
        """Run a ``/ws`` client from handshake to close."""
        if not await self._admit(websocket):
            return
        principal = await self._principal(websocket)
        if principal is None:
            return
        offered = websocket.scope.get("subprotocols") or ()
        await websocket.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)
        connection = ProtocolConnection(
            self._context, self._commands, websocket, sink_for(websocket), principal
        )
        await self._run(connection, client_address(websocket.scope))

    async def serve_plain_text(self, websocket: WebSocket) -> None:
        """Run a ``/websocket`` client from handshake to close."""
        channel = websocket.query_params.get("channel", "chat")
        if not is_valid_channel(channel):
            await deny(websocket, 400, "channel must be 1-255 characters of A-Z a-z 0-9 _-:.@/=,$")
            return
        if self._context.settings.namespace(channel) is None:
            await deny(websocket, 404, f"channel {channel!r} is in no configured namespace")
            return
        if not await self._admit(websocket):
            return
        principal = await self._principal(websocket)
        if principal is None:
            return
        await websocket.accept()
        sink = sink_for(websocket)
        connection = PlainTextConnection(self._context, websocket, sink, principal, channel)
        await self._run(connection, client_address(websocket.scope))

    async def serve_centrifugo(self, websocket: WebSocket) -> None:
        """Run a ``/connection/websocket`` client (Centrifugo's protocol) from handshake to
        close: Protobuf when it offers the ``centrifuge-protobuf`` subprotocol, else JSON."""
        if not await self._admit(websocket):
            return
        wire = encoding_for(websocket.scope.get("subprotocols") or ())
        await websocket.accept(PROTOBUF_SUBPROTOCOL if wire.binary else None)
        connection = CentrifugoConnection(
            self._context, websocket, sink_for(websocket), ANONYMOUS, wire, self._deltas[wire]
        )
        await self._run(connection, client_address(websocket.scope))

    async def _admit(self, websocket: WebSocket) -> bool:
        refusal = self._policy.refusal(websocket.scope)
        if refusal is not None:
            await deny(websocket, refusal.status, refusal.message)
            return False
        return True

    async def _principal(self, websocket: WebSocket) -> Principal | None:
        """Who the connection is until a token says otherwise: anonymous, with the display
        name of ``?name=`` when auth is off (with auth on, the token's ``info`` is the only
        one others see, and ``name`` is ignored). None when the handshake was refused."""
        try:
            principal = anonymous(websocket.query_params.get("name"))
        except GatewayError as error:
            await deny(websocket, 400, error.message)
            return None
        return ANONYMOUS if self._security.verifier.enabled else principal

    async def _run(self, connection: Connection, address: str | None) -> None:
        self._connections.add(connection)
        self._admission.opened(address)
        try:
            await connection.run()
        finally:
            self._admission.closed(address)
            self._connections.remove(connection)


async def deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a handshake with an HTTP status and a message (403 where the server can't),
    and log it with its reason."""
    REFUSALS.refused(websocket.scope, status, message)
    try:
        await websocket.send_denial_response(PlainTextResponse(message + "\n", status_code=status))
    except RuntimeError:
        await websocket.close(1008, message.encode()[:120].decode(errors="ignore"))
