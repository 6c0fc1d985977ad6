"""The ASGI entry point of ``gateway serve``: WebSocket handshakes go straight to their
endpoint, everything else to the FastAPI app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

WebSocketEndpoint = Callable[[WebSocket], Awaitable[None]]


class WebSocketLane:
    """The ASGI entry point of ``gateway serve``: WebSocket handshakes on ``/ws`` and
    ``/websocket`` go straight to the replica; everything else (HTTP, lifespan) goes to
    the FastAPI app.

    A long-lived connection otherwise keeps the whole middleware and routing stack
    suspended under it (about 7 KiB a connection); the lane keeps none of it. Mounted into
    another app, the gateway's FastAPI routes serve the same endpoints.
    """

    def __init__(
        self,
        app: ASGIApp,
        endpoints: dict[str, WebSocketEndpoint],
        streams: dict[str, ASGIApp] | None = None,
    ) -> None:
        """``streams`` are long-lived HTTP endpoints (``/sse``) served the same way."""
        self._app = app
        self._endpoints = endpoints
        self._streams = streams or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(WebSocket(scope, receive, send))
                return
        elif scope["type"] == "http":
            stream = self._streams.get(scope["path"])
            if stream is not None:
                await stream(scope, receive, send)
                return
        await self._app(scope, receive, send)
