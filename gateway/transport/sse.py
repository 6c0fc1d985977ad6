"""The transport of ``GET /sse``: an HTTP response that stays open (``text/event-stream``),
as a connection's `Sink` and `Inbound`.

Under ``gateway serve`` the HTTP protocol (`gateway.transport.http`) offers, through the
ASGI scope extension ``gateway.stream``, a synchronous write of complete chunks of the
response body: a prepared event, already framed as a chunk (`chunk`, once per message for
every stream it goes to), goes straight to the socket when the socket can take it, with no
task switch, as `DirectSink` does for a WebSocket. Elsewhere (mounted into another app)
every write goes through the ASGI ``send``. The client sends nothing after its request, so
the `SseInbound` only waits for the end of the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from gateway.transport.websocket import CLOSE_DEADLINE
from gateway.wire.sse import event

STREAM_EXTENSION = "gateway.stream"
"""ASGI scope extension: the `StreamControl` of the HTTP connection."""
SLOW_CONSUMER_CODE = 4008


def chunk(body: bytes) -> bytes:
    """``body`` as one chunk of a chunked HTTP/1.1 response body (RFC 9112, 7.1)."""
    return b"%x\r\n%s\r\n" % (len(body), body)


class StreamControl(Protocol):
    """What ``gateway serve``'s HTTP protocol offers a streamed response."""

    def write_chunks(self, chunks: bytes) -> bool:
        """Write complete chunks (`chunk`) of the started, chunked response body now; False
        when the socket cannot take them (the caller then sends the body through ASGI)."""
        ...

    def abort_stream(self) -> None:
        """Drop the connection at once."""
        ...


HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
"""The response headers of a stream (``X-Accel-Buffering: no`` turns nginx's buffering
off for it, whatever the location's setting)."""


class SseSink:
    """Writes a stream's events: straight to the socket when it can take them (`try_write`
    takes them framed as chunks), else through ASGI (`send` takes them bare, and waits
    while the socket's buffer is full). `ended` is set once the stream is over, from this
    side."""

    __slots__ = ("_abort", "_closed", "_send", "ended", "try_write")

    def __init__(self, send: Send, control: StreamControl | None) -> None:
        self._send = send
        self._closed = False
        self.ended = asyncio.Event()
        self.try_write: Callable[[bytes], bool] = (
            control.write_chunks if control is not None else _never
        )
        self._abort = control.abort_stream if control is not None else None

    async def start(self, headers: list[tuple[bytes, bytes]], first: bytes) -> None:
        """Send the response's status and headers, and its first bytes."""
        await self._send(
            {"type": "http.response.start", "status": 200, "headers": HEADERS + headers}
        )
        await self._send({"type": "http.response.body", "body": first, "more_body": True})

    async def send(self, payload: bytes, binary: bool = False) -> None:
        """Send prepared events (a stream has no binary messages)."""
        await self._send({"type": "http.response.body", "body": payload, "more_body": True})

    async def close(self, final: bytes, code: int, reason: str) -> None:
        """Send ``final`` (the `disconnect` frame) as a last event and end the response,
        each given at most ``CLOSE_DEADLINE``; a slow consumer, or one that takes neither in
        time, is dropped at once where the server allows it."""
        if self._closed:
            return
        self._closed = True
        finished = False
        try:
            finished = code != SLOW_CONSUMER_CODE and await self._finish(event(final))
        finally:
            if not finished and self._abort is not None:
                self._abort()
            self.ended.set()

    async def _finish(self, final: bytes) -> bool:
        for body, more in ((final, True), (b"", False)):
            message = {"type": "http.response.body", "body": body, "more_body": more}
            try:
                await asyncio.wait_for(self._send(message), CLOSE_DEADLINE)
            except Exception:
                return False
        return True


def _never(chunks: bytes) -> bool:
    return False


class SseInbound:
    """A stream's side of the `Inbound` interface: its query, and its end (the client went,
    or the sink ended the stream) as a ``websocket.disconnect``: a client of ``/sse`` sends
    nothing after its request."""

    __slots__ = ("_receive", "_sink", "query_params")

    def __init__(self, scope: Scope, receive: Receive, sink: SseSink) -> None:
        self._receive = receive
        self._sink = sink
        self.query_params: Mapping[str, str] = QueryParams(scope.get("query_string", b""))

    async def receive(self) -> Mapping[str, Any]:
        gone = asyncio.ensure_future(self._client_gone())
        ended = asyncio.ensure_future(self._sink.ended.wait())
        try:
            await asyncio.wait((gone, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            ended.cancel()
        return {"type": "websocket.disconnect", "code": 1001}

    async def _client_gone(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass


def stream_control(scope: Scope) -> StreamControl | None:
    """The `StreamControl` of ``gateway serve``'s HTTP protocol, if it runs this request."""
    control = scope.get("extensions", {}).get(STREAM_EXTENSION)
    return control if hasattr(control, "write_chunks") else None
