"""The transport of ``GET /sse``: an HTTP response that stays open (``text/event-stream``),
as a connection's `Sink` and `Inbound`.

Under ``gateway serve`` the HTTP protocol (`gateway.transport.http`) offers, through the
ASGI scope extension ``gateway.stream``, a synchronous write of one chunk of the response
body: a prepared event goes straight to the socket when the socket can take it, with no
task switch, as `DirectSink` does for a WebSocket. Elsewhere (mounted into another app)
every write goes through the ASGI ``send``. The client sends nothing after its request, so
the `SseInbound` only waits for the end of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from gateway.transport.websocket import CLOSE_DEADLINE
from gateway.wire.sse import event

STREAM_EXTENSION = "gateway.stream"
"""ASGI scope extension: a callable that writes one body chunk now, or returns False."""

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
"""The response headers of a stream (``X-Accel-Buffering: no`` turns nginx's buffering
off for it, whatever the location's setting)."""


class SseSink:
    """Writes a stream's events: straight to the socket when it can take them, else
    through ASGI (`send` waits while the socket's buffer is full)."""

    __slots__ = ("_closed", "_send", "try_write")

    def __init__(self, send: Send, direct: Callable[[bytes], bool] | None) -> None:
        self._send = send
        self._closed = False
        self.try_write: Callable[[bytes], bool] = direct if direct is not None else _never

    async def start(self, headers: list[tuple[bytes, bytes]], first: bytes) -> None:
        """Send the response's status and headers, and its first bytes."""
        await self._send(
            {"type": "http.response.start", "status": 200, "headers": HEADERS + headers}
        )
        await self._send({"type": "http.response.body", "body": first, "more_body": True})

    async def send(self, payload: bytes) -> None:
        await self._send({"type": "http.response.body", "body": payload, "more_body": True})

    async def close(self, final: bytes, code: int, reason: str) -> None:
        """Send ``final`` (the `disconnect` frame) as a last event and end the response,
        each given at most ``CLOSE_DEADLINE``."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send(event(final)), CLOSE_DEADLINE)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._send({"type": "http.response.body", "body": b"", "more_body": False}),
                CLOSE_DEADLINE,
            )


def _never(chunk: bytes) -> bool:
    return False


class SseInbound:
    """A stream's side of the `Inbound` interface: its query, and its end as a
    ``websocket.disconnect`` (a client of ``/sse`` sends nothing after its request)."""

    __slots__ = ("_receive", "query_params")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self.query_params: Mapping[str, str] = QueryParams(scope.get("query_string", b""))

    async def receive(self) -> Mapping[str, Any]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return {"type": "websocket.disconnect", "code": 1001}


def direct_writer(scope: Scope) -> Callable[[bytes], bool] | None:
    """The synchronous chunk writer of ``gateway serve``'s HTTP protocol, if it runs this."""
    writer = scope.get("extensions", {}).get(STREAM_EXTENSION)
    return writer if callable(writer) else None
