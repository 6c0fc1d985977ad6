"""A loopback TCP proxy: a load balancer in front of replicas, or a faulty network path.

Point it at a port. `cut()` drops every connection at once (a reset: what a killed
process or a dropped route does); ``target = None`` refuses new connections, so a test
decides when a client may come back, and to which server.

Faults of a path that stays open: `blackhole()` stops the bytes of one or both directions
without closing anything (a partition: the bytes wait, as TCP retransmits them, and flow
again on `heal()`, unless an end gave up on its connection meanwhile);
``blackhole(upstream=False)`` or ``blackhole(downstream=False)`` leaves one direction
alive (half-open); `delay()` holds every chunk for some seconds before passing it on, in
order. New connections made during a fault get the same fault.

``refuse_upgrades=True`` makes it an HTTP proxy that blocks WebSockets, as some corporate
proxies do: a connection whose first request asks for an ``Upgrade`` is answered 403 and
closed; any other is passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from tests.support.net import free_port

QUEUED_CHUNKS = 64
"""Chunks a stopped direction holds before it stops reading (then TCP pushes back)."""
UPGRADE_REFUSED = (
    b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 27\r\n"
    b"connection: close\r\n\r\nWebSockets are not allowed\n"
)


@dataclass
class _Direction:
    """One direction of every proxied connection: client to server, or back."""

    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float = 0.0

    def __post_init__(self) -> None:
        self.flowing.set()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``, in the running event loop."""

    def __init__(self, target: int | None, *, refuse_upgrades: bool = False) -> None:
        self.target = target
        self.refuse_upgrades = refuse_upgrades
        self.refused_upgrades = 0
        """Requests for an upgrade answered 403 so far."""
        self.port = free_port()
        self.connections = 0
        """Connections accepted so far."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._upstream = _Direction()
        self._downstream = _Direction()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.heal()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every open connection (a reset, not a clean close)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def blackhole(self, *, upstream: bool = True, downstream: bool = True) -> None:
        """Stop the bytes of the chosen directions (to the target, back from it); nothing
        is closed."""
        if upstream:
            self._upstream.flowing.clear()
        if downstream:
            self._downstream.flowing.clear()

    def delay(self, seconds: float) -> None:
        """Hold each chunk ``seconds`` in both directions before passing it on."""
        self._upstream.delay = self._downstream.delay = seconds

    def heal(self) -> None:
        """End every fault: held bytes flow again, without delay."""
        for direction in (self._upstream, self._downstream):
            direction.delay = 0.0
            direction.flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.target is None:
            writer.transport.abort()
            return
        head = b""
        if self.refuse_upgrades:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                writer.transport.abort()
                return
            if b"\nupgrade:" in head.lower():
                self.refused_upgrades += 1
                writer.write(UPGRADE_REFUSED)
                with contextlib.suppress(OSError):
                    await writer.drain()
                writer.close()
                return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        if head:
            up_writer.write(head)
        self.connections += 1
        self._writers.update((writer, up_writer))
        for source, sink, direction in (
            (reader, up_writer, self._upstream),
            (up_reader, writer, self._downstream),
        ):
            self._spawn(self._pipe(source, sink, direction))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: _Direction
    ) -> None:
        """Read chunks from ``source``; a second task passes them on when the direction
        lets it (stopped: they wait; delayed: each waits its time)."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED_CHUNKS)
        forwarder = asyncio.create_task(self._forward(chunks, sink, direction))
        try:
            while data := await source.read(65536):
                await chunks.put((loop.time() + direction.delay, data))
            await chunks.put((loop.time() + direction.delay, b""))
            await forwarder
        except (ConnectionError, OSError):
            forwarder.cancel()
        finally:
            if not forwarder.done():
                forwarder.cancel()
            with contextlib.suppress(BaseException):
                await forwarder
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.transport.abort()

    async def _forward(
        self,
        chunks: asyncio.Queue[tuple[float, bytes]],
        sink: asyncio.StreamWriter,
        direction: _Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await chunks.get()
            await direction.flowing.wait()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await direction.flowing.wait()
            if not data:
                return
            sink.write(data)
            await sink.drain()
