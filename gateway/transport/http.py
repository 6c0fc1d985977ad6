"""The HTTP protocol ``gateway serve`` runs: uvicorn's httptools protocol with a deadline
on each request and the connection reported to the replica's `Admission` while half-open.

uvicorn times out a connection that is idle between requests (``timeout_keep_alive``), but
not one that never finishes a request: a client sending nothing, or one header line every
few seconds (slowloris), would hold its socket forever. Here every request must be complete
(headers, and body if any; for a WebSocket, the handshake request) within
``handshake_timeout`` seconds of the connection's accept, or of its first byte on a
connection kept alive. Otherwise the connection is answered 408, if the application has
not seen the request yet, and closed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.services.admission import Admission, HalfOpen
from gateway.transport.sse import STREAM_EXTENSION
from gateway.transport.upgrade import accept_upgrade
from gateway.transport.websocket import GatewayWebSocketProtocol, handshake_request

STREAM_PATH = "/sse"
"""Requests for this path (under any mount prefix) get the direct chunk writer."""

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 5
"""uvicorn's default idle time between requests on a kept-alive connection."""


class GatewayHttpProtocol(HttpToolsProtocol):
    """Bound to one replica by `http_protocol`; uvicorn makes one per TCP connection."""

    admission: ClassVar[Admission]
    handshake_timeout: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: HalfOpen | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._request_seen = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._pending = self.admission.accept(self.client[0] if self.client else None)
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._request_done()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_seen = False
        if self._deadline is None and self._pending is not None:
            self._pending.hold()
            self._start_deadline()

    def on_headers_complete(self) -> None:
        self._request_seen = True
        super().on_headers_complete()
        scope = getattr(self, "scope", None)
        if scope is not None and scope.get("path", "").endswith(STREAM_PATH):
            scope.setdefault("extensions", {})[STREAM_EXTENSION] = self

    def write_chunks(self, chunks: bytes) -> bool:
        """Write complete chunks of a started, chunked response body now, if the socket can
        take them; False otherwise (the caller then sends the body through ASGI, which
        waits)."""
        cycle = self.cycle
        if (
            self.flow.write_paused
            or self.transport.is_closing()
            or cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or cycle.disconnected
        ):
            return False
        self.transport.write(chunks)
        return True

    def abort_stream(self) -> None:
        """Drop the connection at once, whatever it still had to send (a peer that stopped
        reading)."""
        self.transport.abort()

    def on_message_complete(self) -> None:
        self._request_done()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        """Hand the connection to the WebSocket protocol with the request as parsed here,
        not as bytes to parse again: a handshake websockets would accept as it stands is
        taken whole (`accept_upgrade`); another one as a websockets request; one that
        websockets should judge itself, as its bytes."""
        self._request_done()
        protocol_class = self.ws_protocol_class
        if not (
            isinstance(protocol_class, type)
            and issubclass(protocol_class, GatewayWebSocketProtocol)
        ):
            super().handle_websocket_upgrade()
            return
        scope = self.scope
        method, version, headers = scope["method"], scope["http_version"], scope["headers"]
        deflate = self.config.ws_per_message_deflate
        accept = accept_upgrade(method, self.url, version, headers, deflate=deflate)
        request = None if accept else handshake_request(method, self.url, version, headers)
        if accept is None and request is None:
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        protocol = protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        if accept is not None:
            protocol.take_upgrade(self.transport, scope, self.url, accept)
        else:
            assert request is not None
            protocol.connection_made(self.transport)
            protocol.take_request(request)
        self.transport.set_protocol(protocol)

    def _start_deadline(self) -> None:
        self._deadline = self.loop.call_later(self.handshake_timeout, self._too_slow)

    def _request_done(self) -> None:
        if self._pending is not None:
            self._pending.release()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._pending is not None:
            self._pending.release()
        if self.transport.is_closing():
            return
        self.admission.handshake_timeouts += 1
        log.debug("http.request_timeout peer=%s seconds=%g", self.client, self.handshake_timeout)
        if not self._request_seen:
            self.transport.write(_timeout_response(self.handshake_timeout))
        self.transport.close()


def http_protocol(admission: Admission, handshake_timeout: float) -> type[GatewayHttpProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for one replica."""
    bound = {"admission": admission, "handshake_timeout": handshake_timeout}
    return type("ReplicaHttpProtocol", (GatewayHttpProtocol,), bound)


def keep_alive_seconds(handshake_timeout: float) -> int:
    """How long a connection may idle between requests: uvicorn's 5 s, or less when the
    handshake timeout is shorter (an idle connection is no cheaper than a slow one)."""
    return max(1, min(KEEP_ALIVE_SECONDS, math.ceil(handshake_timeout)))


def _timeout_response(seconds: float) -> bytes:
    body = f"the request was not complete within {seconds:g} s\n".encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body
