"""One load-generator process: picows connections on one event loop, run by commands.

The coordinator sends commands (dicts with an ``op`` and an ``id``) through a pipe; each
runs as a task and is answered with a dict carrying the same ``id`` (or an ``error``).
Subscribers count every publication they receive and the latency from the send time
stamped in its data; publishers send at a fixed rate or as fast as acknowledgements allow.
Every wait here is bounded by a timeout the coordinator passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.loadgen.dialects import DIALECTS, STAMP, Dialect
from bench.system import raise_open_files_limit

HISTOGRAM_STEPS = 64
"""Latency buckets per factor e (about 1.6 % wide): bucket = int(ln(ns) * steps)."""
TIMELINE_NS = 100_000_000
"""Width of one timeline bucket: deliveries are also counted per 100 ms."""
PAD = b"x" * 64
"""Filler in each publication's data, so a message is about the size of a chat line."""
TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE
find_stamps = STAMP.findall


class Deliveries:
    """What this process's subscribers received since the last reset.

    Latencies are kept raw while deliveries arrive (the cheapest thing to do per message)
    and folded into a histogram only when asked for the full statistics.
    """

    __slots__ = (
        "folded",
        "histogram",
        "last_ns",
        "latencies",
        "max_ns",
        "received",
        "t0",
        "timeline",
    )

    def __init__(self, t0: int = 0) -> None:
        self.reset(t0)

    def reset(self, t0: int) -> None:
        self.t0 = t0
        self.received = 0
        self.last_ns = 0
        self.max_ns = 0
        self.latencies = array("q")
        self.folded = 0
        self.histogram: Counter[int] = Counter()
        self.timeline: dict[int, int] = {}

    def record(self, stamps: list[bytes]) -> None:
        now = time.monotonic_ns()
        count = len(stamps)
        self.received += count
        self.last_ns = now
        bucket = (now - self.t0) // TIMELINE_NS
        timeline = self.timeline
        timeline[bucket] = timeline.get(bucket, 0) + count
        append = self.latencies.append
        for stamp in stamps:
            append(now - int(stamp))

    def progress(self) -> dict[str, Any]:
        return {"received": self.received, "last_ns": self.last_ns}

    def snapshot(self) -> dict[str, Any]:
        fresh = self.latencies[self.folded :]
        self.folded = len(self.latencies)
        if fresh:
            self.max_ns = max(self.max_ns, max(fresh))
            log = math.log
            self.histogram.update(int(log(max(value, 1)) * HISTOGRAM_STEPS) for value in fresh)
        return {
            **self.progress(),
            "max_ns": self.max_ns,
            "histogram": dict(self.histogram),
            "timeline": dict(self.timeline),
        }


class Peer(WSListener):  # type: ignore[misc]
    """One client connection: a subscriber (``channel`` set) or a publisher.

    ``replica`` is the index of the server URL it connected to; ``received`` counts the
    publications it received since the last reset, so deliveries can be told per replica.
    """

    def __init__(
        self, worker: Worker, dialect: Dialect, channel: str | None, replica: int = 0
    ) -> None:
        self.worker = worker
        self.dialect = dialect
        self.channel = channel
        self.replica = replica
        self.received = 0
        self.record = worker.deliveries.record
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing = False
        self.on_ack: Callable[[int], None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.dialect.opened(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == TEXT:
            payload = frame.get_payload_as_bytes()
            stamps = find_stamps(payload)
            if stamps:
                self.record(stamps)
                self.received += len(stamps)
            else:
                self.dialect.control(self, payload)
        elif kind == CLOSE:
            self.worker.close_codes[int(frame.get_close_code())] += 1
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closing:
            self.worker.dropped += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before it was ready"))

    def write(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.send(WSMsgType.TEXT, frame)

    def confirmed(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def acknowledged(self, count: int) -> None:
        self.worker.acked += count
        self.worker.answered.set()
        if self.on_ack is not None:
            self.on_ack(count)

    def failed(self, count: int, frame: bytes) -> None:
        self.worker.errors += count
        self.worker.answered.set()
        if self.worker.first_error is None:
            self.worker.first_error = frame[:200].decode(errors="replace")
        if self.on_ack is not None:
            self.on_ack(count)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(frame[:200].decode(errors="replace")))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.disconnect()


class Worker:
    """The connections of one load-generator process and the commands that drive them."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.subscribers: list[Peer] = []
        self.publishers: list[Peer] = []
        self.deliveries = Deliveries()
        self.acked = 0
        self.errors = 0
        self.dropped = 0
        self.first_error: str | None = None
        self.close_codes: Counter[int] = Counter()
        self.answered = asyncio.Event()
        """Set whenever a publication is acknowledged or refused."""
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.handlers: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "connect": self.connect,
            "publishers": self.open_publishers,
            "reset": self.reset,
            "stats": self.stats,
            "progress": self.progress,
            "publish": self.publish,
            "saturate": self.saturate,
            "close": self.close_subscribers,
            "close_publishers": self.close_publishers,
            "exit": self.exit,
        }

    def on_command(self) -> None:
        while self.pipe.poll():
            command: dict[str, Any] = self.pipe.recv()
            task = asyncio.get_running_loop().create_task(self.run(command))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def run(self, command: dict[str, Any]) -> None:
        number = command.pop("id")
        handler = self.handlers[command.pop("op")]
        try:
            reply = await handler(**command)
        except Exception:
            reply = {"error": traceback.format_exc()}
        reply["id"] = number
        self.pipe.send(reply)

    async def connect(
        self,
        *,
        dialect: str,
        urls: list[str],
        channels: list[str],
        first: int,
        count: int,
        concurrency: int,
        ready_within: float,
    ) -> dict[str, Any]:
        """Open ``count`` subscribers (global indices from ``first``) and wait until subscribed.

        Connection ``i`` subscribes to ``channels[i % len(channels)]`` on
        ``urls[(i // len(channels)) % len(urls)]``, so each channel's subscribers are spread
        over every replica.
        """
        chosen = DIALECTS[dialect]
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def one(index: int) -> None:
            channel = channels[index % len(channels)]
            replica = (index // len(channels)) % len(urls)
            async with gate:
                peer = Peer(self, chosen, channel, replica)
                try:
                    await ws_connect(
                        lambda: peer, urls[replica], websocket_handshake_timeout=ready_within
                    )
                    await asyncio.wait_for(peer.ready, ready_within)
                    self.subscribers.append(peer)
                except Exception as exc:
                    failures.append(repr(exc))
                    peer.close()

        started = time.monotonic_ns()
        await asyncio.gather(*(one(first + offset) for offset in range(count)))
        return {
            "connected": count - len(failures),
            "failed": len(failures),
            "failure": failures[0] if failures else None,
            "started_ns": started,
            "finished_ns": time.monotonic_ns(),
        }

    async def open_publishers(self, *, dialect: str, urls: list[str]) -> dict[str, Any]:
        chosen = DIALECTS[dialect]
        for url in urls:
            _, peer = await ws_connect(lambda: Peer(self, chosen, None), url)
            await asyncio.wait_for(peer.ready, 10)
            self.publishers.append(peer)
        return {"publishers": len(self.publishers)}

    async def reset(self, *, t0: int) -> dict[str, Any]:
        self.deliveries.reset(t0)
        for peer in self.subscribers:
            peer.received = 0
        self.acked = self.errors = self.dropped = 0
        self.first_error = None
        self.close_codes.clear()
        return {}

    async def progress(self) -> dict[str, Any]:
        """The cheap part of `stats`, for polling while a workload runs."""
        return {**self.deliveries.progress(), "acked": self.acked, "errors": self.errors}

    async def stats(self) -> dict[str, Any]:
        by_replica: Counter[int] = Counter()
        for peer in self.subscribers:
            by_replica[peer.replica] += peer.received
        return {
            **self.deliveries.snapshot(),
            "by_replica": dict(by_replica),
            "acked": self.acked,
            "errors": self.errors,
            "first_error": self.first_error,
            "dropped": self.dropped,
            "close_codes": dict(self.close_codes),
        }

    def _send(self, publisher: Peer, channel: str, number: int) -> None:
        data = b'{"ts":%d,"seq":%d,"pad":"%s"}' % (time.monotonic_ns(), number, PAD)
        publisher.write(publisher.dialect.publish(channel, data, number))

    async def _await_acks(self, sent: int, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self.acked + self.errors < sent:
                    self.answered.clear()
                    await self.answered.wait()

    async def publish(
        self, *, channels: list[str], rate: float, count: int, acks_within: float
    ) -> dict[str, Any]:
        """Publish ``count`` messages at ``rate`` per second, round-robin over channels and
        publishers, then wait (at most ``acks_within`` seconds) for their acknowledgements."""
        publishers = self.publishers
        started = time.monotonic()
        sent = 0
        while sent < count:
            due = min(count, int((time.monotonic() - started) * rate) + 1)
            while sent < due:
                sent += 1
                self._send(publishers[sent % len(publishers)], channels[sent % len(channels)], sent)
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
        finished = time.monotonic_ns()
        await self._await_acks(sent, acks_within)
        return self._published(sent, finished)

    async def saturate(
        self, *, channels: list[str], duration: float, window: int, acks_within: float
    ) -> dict[str, Any]:
        """Publish for ``duration`` seconds as fast as the servers acknowledge: each publisher
        keeps ``window`` publications in flight and sends the next one on each ack."""
        sent = 0
        stop_at = time.monotonic() + duration

        def sender(publisher: Peer) -> Callable[[int], None]:
            def on_ack(count: int) -> None:
                nonlocal sent
                if time.monotonic() >= stop_at:
                    return
                for _ in range(count):
                    sent += 1
                    self._send(publisher, channels[sent % len(channels)], sent)

            return on_ack

        for publisher in self.publishers:
            publisher.on_ack = sender(publisher)
            publisher.on_ack(window)
        await asyncio.sleep(duration)
        stopped = time.monotonic_ns()
        for publisher in self.publishers:
            publisher.on_ack = None
        await self._await_acks(sent, acks_within)
        return self._published(sent, stopped)

    def _published(self, sent: int, finished_ns: int) -> dict[str, Any]:
        """What a publishing command reports; a late ack of an earlier command never counts."""
        acked = min(self.acked, sent)
        return {"sent": sent, "acked": acked, "errors": self.errors, "finished_ns": finished_ns}

    async def close_subscribers(self, *, within: float) -> dict[str, Any]:
        return {"closed": await _close_all(self.subscribers, within)}

    async def close_publishers(self, *, within: float) -> dict[str, Any]:
        return {"closed": await _close_all(self.publishers, within)}

    async def exit(self) -> dict[str, Any]:
        await _close_all(self.subscribers + self.publishers, 5)
        self.done.set()
        return {}


async def _close_all(peers: list[Peer], within: float) -> int:
    closing = list(peers)
    peers.clear()
    for peer in closing:
        peer.close()
    waits = [peer.transport.wait_disconnected() for peer in closing if peer.transport is not None]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), within)
    return len(closing)


async def _serve(pipe: Connection) -> None:
    worker = Worker(pipe)
    loop = asyncio.get_running_loop()
    loop.add_reader(pipe.fileno(), worker.on_command)
    try:
        await worker.done.wait()
    finally:
        loop.remove_reader(pipe.fileno())


def main(pipe: Connection, cpus: list[int] | None) -> None:
    """Entry point of a load-generator process (started by `bench.loadgen.pool`)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    raise_open_files_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(pipe))
    else:
        uvloop.run(_serve(pipe))
