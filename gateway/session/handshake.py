"""The client endpoints: a WebSocket handshake, from admission to the connection's end.

Each endpoint admits the handshake (`HandshakePolicy`: origin, readiness, limits), decides
who the connection is until a token says otherwise, accepts, and hands the dialect's
connection to `Endpoints.run`, the one place every client endpoint goes through: while the
registry holds the connection it runs ``on_connect`` (`identify`), then the connection, then
``on_disconnect``. A new endpoint (another dialect, a transport that is not a WebSocket)
builds its `Connection` and calls ``await endpoints.run(connection, scope, token=...)``.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from gateway.ops import logs
from gateway.ops.refusals import REFUSALS
from gateway.security.auth import ANONYMOUS, Principal, TokenError, TokenVerifier, anonymous
from gateway.security.guard import Security
from gateway.services.admission import Admission, HandshakePolicy, client_address
from gateway.services.connections import ConnectionRegistry
from gateway.services.hooks import ConnectRequest, Hooks
from gateway.session.centrifugo import CentrifugoConnection
from gateway.session.centrifugo_encoding import DeltaEncoding
from gateway.session.commands import Commands
from gateway.session.connection import Connection, SessionContext
from gateway.session.plain import PlainTextConnection
from gateway.session.pubsub import ProtocolConnection
from gateway.transport.sinks import sink_for
from gateway.wire.centrifugo.codec import PROTOBUF_SUBPROTOCOL, Encoding, encoding_for
from gateway.wire.channels import is_valid_channel
from gateway.wire.errors import TOKEN_EXPIRED, CloseCode, Disconnect, GatewayError, close_reason
from gateway.wire.protocol import SUBPROTOCOL

log = logging.getLogger(__name__)


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
        await self.run(connection, websocket.scope, token=websocket.query_params.get("token"))

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
        token = websocket.query_params.get("token")
        await self.run(connection, websocket.scope, token=token, transport="plain")

    async def serve_centrifugo(self, websocket: WebSocket) -> None:
        """Run a ``/connection/websocket`` client (Centrifugo's protocol) from handshake to
        close: Protobuf when it offers the ``centrifuge-protobuf`` subprotocol, else JSON."""
        if not await self._admit(websocket):
            return
        wire = encoding_for(websocket.scope.get("subprotocols") or ())
        await websocket.accept(PROTOBUF_SUBPROTOCOL if wire.binary else None)
        connection = CentrifugoConnection(
            self._context,
            websocket,
            sink_for(websocket),
            ANONYMOUS,
            wire,
            self._deltas[wire],
            scope=websocket.scope,
        )
        await self.run(
            connection, websocket.scope, token=None, transport="centrifugo", connect_hook=False
        )

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

    async def run(
        self,
        connection: Connection,
        scope: Any,
        *,
        token: str | None,
        transport: str = "pubsub",
        connect_hook: bool = True,
    ) -> None:
        """Serve an accepted client from ``on_connect`` to ``on_disconnect``, counted in
        the registry and the admission tally all along.

        ``token`` is the connection token the handshake carried (``?token=``, a header),
        for ``on_connect``'s ``claims``. A dialect whose clients authenticate later, in a
        command of their own, passes ``connect_hook=False`` and calls `identify` then.
        """
        address = client_address(scope)
        hooks = self._context.hooks
        logs.client_id.set(connection.id)
        self._connections.add(connection)
        self._admission.opened(address)
        admitted = False
        try:
            if connect_hook and hooks.on_connect is not None:
                verifier = self._security.verifier
                outcome = await identify(hooks, verifier, scope, token, transport)
                if isinstance(outcome, Disconnect):
                    connection.close(outcome)
                elif outcome is not None and not connection.closing:
                    connection.guard.grant(outcome)
            admitted = not connection.closing
            await connection.run()
        finally:
            try:
                if admitted:
                    code = connection.close_code or 1005
                    await hooks.disconnect(connection.id, connection.user, code)
            finally:
                self._admission.closed(address)
                self._connections.remove(connection)


async def identify(
    hooks: Hooks, verifier: TokenVerifier, scope: Any, token: str | None, transport: str
) -> Principal | Disconnect | None:
    """What ``on_connect`` decides for a new client: the principal it chose; None, the
    token rules decide (also without a hook); or the close that refuses the client.

    A token the client sent is verified first, for the hook's ``claims``: an invalid one
    refuses the client (4001) before the hook runs, as it would without a hook. A
    `Reject` closes as its code says (``unauthorized`` 4001, ``forbidden`` 4003), with
    its message as the close reason; a hook that fails closes with 1011.
    """
    claims = None
    if token is not None and verifier.enabled:
        try:
            claims = verifier.connection(token).claims
        except TokenError as error:
            if error.expired:
                return TOKEN_EXPIRED
            return Disconnect(CloseCode.UNAUTHORIZED, error.message)
    try:
        return await hooks.connect(ConnectRequest.from_scope(scope, claims, transport))
    except GatewayError as error:
        log.info("hook.connect_refused code=%s message=%s", error.code.value, error.message)
        return Disconnect(error.closes_with.code, close_reason(error.message))


async def deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a handshake with an HTTP status and a message (403 where the server can't),
    and log it with its reason."""
    REFUSALS.refused(websocket.scope, status, message)
    try:
        await websocket.send_denial_response(PlainTextResponse(message + "\n", status_code=status))
    except RuntimeError:
        await websocket.close(1008, message.encode()[:120].decode(errors="ignore"))
