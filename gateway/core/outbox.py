"""Outbound frames of one connection: written at the end of the loop pass, else queued.

The fan-out path calls `Outbox.offer`, which never awaits: a frame joins the connection's
queue, bounded in messages and in bytes, and the outbox asks `LoopPasses` to have it
written at the end of the pass: straight to the socket when the transport is not paused,
as the frame built once for every subscriber when the pass brought one message, else as
one NDJSON frame (or frame by frame, for clients that take one message a frame; or, for a
binary dialect, as binary frames of concatenated messages). What the socket does not take
then is drained by a writer task, started only while there is a backlog. Only a backlog
is counted (``on_backlog``): the common case costs nothing more.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Callable
from typing import Protocol

from gateway.core.frames import Outgoing, binary_frame, text_frame
from gateway.core.passes import LoopPasses

MAX_BATCH_BYTES = 256 * 1024
"""A backlog leaves in frames of at most this size (unless a single message is larger)."""


class Sink(Protocol):
    """Where a connection's frames go."""

    def try_write(self, frame: bytes) -> bool:
        """Write a complete WebSocket frame now if the socket can take it; never blocks."""
        ...

    async def send(self, payload: bytes, binary: bool = False) -> None:
        """Send one text (or binary) message, waiting until the socket can take it."""
        ...

    async def close(self, final: bytes, code: int, reason: str) -> None:
        """Send a last text message (none when ``final`` is empty) and close the WebSocket,
        never waiting long on the peer."""
        ...


class Outbox:
    """A connection's bounded outbound queue with a direct path to the socket."""

    __slots__ = (
        "_batches",
        "_binary",
        "_byte_limit",
        "_bytes",
        "_closed",
        "_frame",
        "_framer",
        "_limit",
        "_on_backlog",
        "_passes",
        "_queue",
        "_room",
        "_single",
        "_sink",
        "_writer",
    )

    def __init__(
        self,
        sink: Sink,
        limit: int,
        passes: LoopPasses,
        on_backlog: Callable[[int], None] | None = None,
        *,
        byte_limit: int | None = None,
        batches: bool = True,
        binary: bool = False,
        framer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """At most ``limit`` messages and ``byte_limit`` bytes wait in the queue (a single
        message larger than ``byte_limit`` may wait alone). ``on_backlog`` gets the queue's
        length each time the writer takes from it. Without ``batches`` each message
        leaves in a frame of its own. With ``binary`` frames are binary and a batch is its
        messages concatenated (each carries its own length), not joined with newlines.
        ``framer`` frames a batch for the sink's `Sink.try_write` in a transport that is not
        a WebSocket (whose items come framed by it already), instead of a WebSocket frame."""
        self._sink = sink
        self._limit = limit
        self._byte_limit = byte_limit if byte_limit is not None else sys.maxsize
        self._batches = batches
        self._binary = binary
        self._framer = framer
        self._passes = passes
        self._on_backlog = on_backlog
        self._single: bytes | None = None
        """The one message waiting, when only one does and no writer runs: most connections
        never have more than one, and need no queue of their own (a deque is about 1 KiB
        a connection)."""
        self._queue: deque[bytes] | None = None
        """The messages waiting when more than one does (or a writer runs): created with
        the first of those."""
        self._bytes = 0
        """The bytes of the payloads in the queue."""
        self._writer: asyncio.Task[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._closed = False
        self._frame: bytes | None = None
        """The prebuilt frame of `_single`."""

    def __len__(self) -> int:
        if self._single is not None:
            return 1
        return len(self._queue) if self._queue else 0

    @property
    def queued_bytes(self) -> int:
        """The bytes waiting in the queue."""
        return self._bytes

    @property
    def crowded(self) -> bool:
        """More than half of the queue's room (in messages or in bytes) is taken."""
        if self._bytes > self._byte_limit // 2:
            return True
        return len(self) > self._limit // 2

    def offer(self, item: Outgoing) -> bool:
        """Queue ``item`` for the end of the pass; False when the queue is full (a slow
        client)."""
        queue = self._queue
        if queue:
            size = self._bytes + item.size
            if size > self._byte_limit or len(queue) >= self._limit:
                return False
            queue.append(item.payload)
            self._bytes = size
            return True
        if self._closed:
            return True
        single = self._single
        if self._writer is None:
            if single is None:
                self._single = item.payload
                self._frame = item.frame
                self._bytes = item.size
                self._passes.defer(self)
                return True
            size = self._bytes + item.size
            if size > self._byte_limit or self._limit <= 1:
                return False
            self._single = self._frame = None
            self._bytes = size
            if queue is None:
                self._queue = deque((single, item.payload))
            else:
                queue.append(single)
                queue.append(item.payload)
            return True
        if queue is None:
            queue = self._queue = deque()
        queue.append(item.payload)
        self._bytes += item.size
        return True

    def put(self, payload: bytes) -> bool:
        """Write or queue a frame built for this connection alone (a reply, an error)."""
        return self.offer(Outgoing(payload, binary=self._binary))

    def write_deferred(self) -> None:
        """Write the queue now if the socket can take it, else leave it to the writer."""
        if self._writer is not None or self._closed:
            return
        single = self._single
        if single is not None:
            frame = self._frame
            self._single = self._frame = None
            assert frame is not None
            if self._sink.try_write(frame):
                self._bytes = 0
            else:
                self._backlog().append(single)
                self._start_writer()
            return
        queue = self._queue
        if not queue:
            return
        while queue:
            batch = self._take_batch()
            if self._framer is not None:
                frame = self._framer(batch)
            else:
                frame = binary_frame(batch) if self._binary else text_frame(batch)
            if not self._sink.try_write(frame):
                queue.appendleft(batch)
                self._bytes += len(batch)
                self._start_writer()
                return

    async def flush(self) -> None:
        """Wait until everything queued so far has been handed to the socket."""
        self.write_deferred()
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def room(self) -> None:
        """Wait until the queue is no longer `crowded` (or the outbox closed).

        Callers bound the wait in time: a peer that stops reading never makes room.
        """
        self.write_deferred()
        while self.crowded and self._writer is not None:
            if self._room is None or self._room.done():
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)

    async def close(self) -> None:
        """Drop the backlog and stop the writer; later offers are discarded."""
        self._closed = True
        self._queue = None
        self._single = self._frame = None
        self._bytes = 0
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        self._wake_room()

    def _backlog(self) -> deque[bytes]:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        return queue

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue and not self._closed:
                batch = self._take_batch()
                await (self._sink.send(batch, True) if self._binary else self._sink.send(batch))
                if self._room is not None and not self.crowded:
                    self._wake_room()
        except Exception:  # the socket is gone: nothing more can be written
            self._closed = True
            self._queue = None
            self._bytes = 0
        finally:
            self._writer = None
            self._wake_room()

    def _wake_room(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def _take_batch(self) -> bytes:
        queue = self._queue
        assert queue
        self._frame = None
        if self._on_backlog is not None:
            self._on_backlog(len(queue))
        if len(queue) == 1 or not self._batches:
            first = queue.popleft()
            self._bytes -= len(first)
            return first
        separator = b"" if self._binary else b"\n"
        if self._bytes + (len(queue) - 2) * len(separator) < MAX_BATCH_BYTES:
            everything = separator.join(queue)
            queue.clear()
            self._bytes = 0
            return everything
        first = queue.popleft()
        size = len(first)
        batch = [first]
        while queue and size + len(queue[0]) < MAX_BATCH_BYTES:
            item = queue.popleft()
            batch.append(item)
            size += len(item) + len(separator)
        self._bytes -= size - (len(batch) - 1) * len(separator)
        return separator.join(batch)
