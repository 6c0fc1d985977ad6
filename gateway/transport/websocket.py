"""The WebSocket protocol ``gateway serve`` runs: uvicorn's own sans-I/O WebSocket protocol
(over the ``websockets`` library) that also hands the application a synchronous writer
through the ASGI scope extension ``gateway.direct`` (see `gateway.transport.sinks`).

It subclasses uvicorn internals: the ``uvicorn`` range in pyproject.toml is the one this is
tested on, and tests/unit/test_uvicorn_internals.py says what moved when that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import OPEN, Protocol

from gateway.transport.upgrade import fields_acceptable, offered_subprotocols, switching_protocols

DIRECT_EXTENSION = "gateway.direct"
CLOSE_DEADLINE = 5.0
"""Seconds a peer has to answer a server-initiated close before its TCP connection is dropped
(less when 3 ping intervals are shorter)."""


_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
"""SO_LINGER on, with a zero timeout: closing the socket resets the connection."""


def handshake_request(
    method: str, target: bytes, version: str, headers: Iterable[tuple[bytes, bytes]]
) -> Request | None:
    """The handshake request uvicorn's HTTP parser read, as websockets' parser would make
    it from the same bytes; None for a request that parser should judge itself (another
    method or version, an over-long line, too many headers, a body), so that its refusals
    stay exactly its own."""
    if method != "GET" or version != "1.1" or not fields_acceptable(target, headers):
        return None
    parsed = Headers()
    for name, value in headers:
        parsed[name.decode("ascii")] = value.decode("iso-8859-1")
    if "Transfer-Encoding" in parsed or "Content-Length" in parsed:
        return None
    return Request(target.decode("ascii"), parsed)


class _Inbox:
    """The part of `asyncio.Queue` uvicorn's protocol uses, for one consumer, in a fraction
    of its memory (a queue carries four deques and an event: about 2.4 KiB a connection)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """The part of `asyncio.Event` uvicorn's protocol uses, without a deque per instance."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol plus a direct, non-blocking frame writer.

    It also keeps less per connection than its parent: lighter queue and flag objects,
    and the handshake's request and response are dropped once the socket is open.

    And it drops peers that stop reading. uvicorn ends a connection with
    ``transport.close()``, which waits until the write buffer has drained: a peer that
    no longer reads (a zero TCP window) never lets it finish, and the connection with
    everything it buffered stays forever, unanswered pings included. Here a ping left
    unanswered for uvicorn's ping timeout, and every close that has not completed within
    `close_deadline`, abort the TCP connection, which frees its buffers.
    """

    paused = False
    accept: str | None = None
    """The ``Sec-WebSocket-Accept`` of a handshake taken with `take_upgrade`, until the
    application accepts it."""
    linger: asyncio.TimerHandle | None = None
    """The abort armed for a close that waits on a peer that does not read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    @property
    def close_deadline(self) -> float:
        """Seconds a closing connection may wait on its peer: `CLOSE_DEADLINE`, or 3 ping
        intervals if that is less."""
        interval = self.ping_interval
        return min(CLOSE_DEADLINE, 3 * interval) if interval else CLOSE_DEADLINE

    def take_request(self, request: Request) -> None:
        """Start the handshake from a request already parsed (`handshake_request`), instead
        of from its bytes: websockets' server parser would read the request line and headers
        again (about a tenth of what a connection costs), then parse frames; here the
        frame parser starts at once."""
        conn = self.conn
        conn.parser.close()
        conn.parser = Protocol.parse(conn)
        next(conn.parser)
        conn.events.append(request)
        self.handle_events()

    def take_upgrade(
        self, transport: asyncio.Transport, http_scope: Any, target: bytes, accept: str
    ) -> None:
        """Start a connection whose handshake `gateway.transport.upgrade.accept_upgrade`
        accepted, from the HTTP protocol's transport, scope (``http_scope``) and request
        target: no request or response object for websockets to build, no headers to
        encode again, no addresses to look up again. The 101 response leaves when the
        application accepts (`send`)."""
        self.connections.add(self)
        self.transport = transport
        self.server = http_scope["server"]
        self.client = http_scope["client"]
        self.scheme = "wss" if http_scope["scheme"] == "https" else "ws"
        conn = self.conn
        conn.parser.close()
        conn.parser = Protocol.parse(conn)
        next(conn.parser)
        self.accept = accept
        self.handshake_initiated = True
        headers = http_scope["headers"]
        raw_path, _, query_string = target.partition(b"?")
        extensions: dict[str, Any] = {"websocket.http.response": {}, DIRECT_EXTENSION: self}
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path.decode("ascii")),
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": query_string,
            "headers": headers,
            "subprotocols": offered_subprotocols(headers),
            "state": self.app_state.copy(),
            "extensions": extensions,
        }
        self.queue.put_nowait({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and not self.conn.extensions:
            scope["extensions"][DIRECT_EXTENSION] = self
        self.abort_if_lingering()

    async def send(self, message: Any) -> None:
        if self.accept is not None and message["type"] == "websocket.accept":
            await self._accept_upgrade(message)
            return
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.request = self.response = None  # type: ignore[assignment]
        elif message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # uvicorn's sans-I/O protocol does not mark a handshake answered with an HTTP
            # response (a 403 or 503 denial) as complete, then logs an error for it
            self.handshake_complete = True
        elif message["type"] == "websocket.close" and self.close_timer is not None:
            # uvicorn's own close timer only calls transport.close(): abort instead
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_deadline, self.abort)

    async def _accept_upgrade(self, message: Any) -> None:
        """The application accepted a handshake taken with `take_upgrade`: send the 101
        response uvicorn would (its default headers, the application's, the subprotocol)."""
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        accept, self.accept = self.accept, None
        assert accept is not None
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(self.scope),
                get_path_with_query_string(self.scope),
            )
        headers = [*self.default_headers, *message.get("headers", ())]
        response = switching_protocols(accept, headers, message.get("subprotocol"))
        if not self.transport.is_closing():
            self.handshake_complete = True
            self.conn.state = OPEN
            self.transport.write(response)
            self.start_keepalive()

    def handle_close(self, event: Any) -> None:
        super().handle_close(event)
        self.abort_if_lingering()

    def handle_parser_exception(self) -> None:
        super().handle_parser_exception()
        self.abort_if_lingering()

    def keepalive_timeout(self) -> None:
        """The peer left a ping unanswered for the ping timeout: it is gone or does not
        read. Abort at once: a close would wait for buffers (ours, or the kernel's) that
        such a peer never drains."""
        closing = self.close_sent or self.transport.is_closing()
        super().keepalive_timeout()
        if not closing:
            self.abort()

    def shutdown(self) -> None:
        super().shutdown()
        self.abort_if_lingering()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self.abort_if_lingering()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        linger, self.linger = self.linger, None
        if linger is not None:
            linger.cancel()

    def abort_if_lingering(self) -> None:
        """If the transport is closing with data still buffered, abort it after
        `close_deadline` seconds unless the buffer drains first."""
        transport = self.transport
        if transport is None or self.linger is not None or self.disconnected:
            return
        if transport.is_closing() and transport.get_write_buffer_size():
            self.linger = self.loop.call_later(self.close_deadline, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection with a reset, discarding what is buffered, ours and the
        kernel's (a plain close would still wait, in the kernel, for the peer to read)."""
        transport = self.transport
        sock = transport.get_extra_info("socket")
        if sock is not None and not self.disconnected:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        transport.abort()

    def pause_writing(self) -> None:
        self.paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        super().resume_writing()

    def try_write(self, frame: bytes) -> bool:
        """Write a complete frame if the socket is open and its buffer below the high mark."""
        if self.paused or self.close_sent or self.disconnected:
            return False
        self.transport.write(frame)
        return True

    async def send_frame(self, frame: bytes) -> None:
        """Write a complete frame once the transport's buffer has drained below its low mark."""
        await self.writable.wait()
        if self.close_sent or self.disconnected:
            raise ConnectionResetError("the WebSocket is closed")
        self.transport.write(frame)

    def close_now(self, final_frame: bytes, code: int, reason: str) -> None:
        """Write a last frame and a close frame even if the peer is not reading, then close.

        The TCP connection is aborted if the peer has not answered the close within
        `close_deadline` seconds (a slow consumer may never read what is buffered).
        """
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        if final_frame:
            self.transport.write(final_frame)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_deadline, self.abort)
