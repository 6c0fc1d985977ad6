"""Where a connection's frames go: the sinks that fulfil `gateway.core.outbox.Sink`.

Under ``gateway serve`` a `DirectSink` writes a frame prepared once per publication straight
to each transport (`GatewayWebSocketProtocol`), with no task switch and no per-client
serialization. Under any other ASGI server (the gateway mounted into another app) the
``gateway.direct`` extension is absent and an `AsgiSink` sends through the standard ASGI
``send``. A transport that is not a WebSocket brings a sink of its own.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket

from gateway.core.frames import binary_frame, text_frame
from gateway.transport.websocket import (
    CLOSE_DEADLINE,
    DIRECT_EXTENSION,
    GatewayWebSocketProtocol,
)

__all__ = ["CLOSE_DEADLINE", "AsgiSink", "DirectSink", "sink_for"]


class DirectSink:
    """Writes frames straight to a `GatewayWebSocketProtocol`."""

    __slots__ = ("_protocol", "try_write")

    def __init__(self, protocol: GatewayWebSocketProtocol) -> None:
        self._protocol = protocol
        self.try_write = protocol.try_write

    async def send(self, payload: bytes, binary: bool = False) -> None:
        await self._protocol.send_frame(binary_frame(payload) if binary else text_frame(payload))

    async def close(self, final: bytes, code: int, reason: str) -> None:
        """Send ``final`` (if any) and close with ``code``, without waiting for a slow peer."""
        self._protocol.close_now(text_frame(final) if final else b"", code, reason)


class AsgiSink:
    """Sends frames through the ASGI interface: portable, one await per frame."""

    __slots__ = ("_websocket",)

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    def try_write(self, frame: bytes) -> bool:
        return False

    async def send(self, payload: bytes, binary: bool = False) -> None:
        if binary:
            await self._websocket.send({"type": "websocket.send", "bytes": payload})
        else:
            await self._websocket.send({"type": "websocket.send", "text": payload.decode()})

    async def close(self, final: bytes, code: int, reason: str) -> None:
        """Send ``final`` (if any) and close with ``code``, each given at most
        ``CLOSE_DEADLINE``."""
        if final:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send(final), CLOSE_DEADLINE)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._websocket.close(code, reason), CLOSE_DEADLINE)


def sink_for(websocket: WebSocket) -> DirectSink | AsgiSink:
    """The fastest sink the server running this WebSocket offers."""
    protocol = websocket.scope.get("extensions", {}).get(DIRECT_EXTENSION)
    if isinstance(protocol, GatewayWebSocketProtocol):
        return DirectSink(protocol)
    return AsgiSink(websocket)
