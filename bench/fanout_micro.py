"""The gateway's fan-out in one process, without sockets or Redis: its own cost per delivery.

A real `Hub`, fed the envelopes a Redis listener would hand it, fans each publication
out to ``--subscribers`` real `Outbox` es, each writing through a real `DirectSink` to a
real `GatewayWebSocketProtocol` whose transport discards what it is given (a C call, as
uvloop's ``write`` is, without the system call). What is left is the Python the gateway
runs per delivery and per publication: what a change to the hot path saves, free of the
network's and the machine's noise.

``--burst N`` hands N publications to the hub in one event-loop pass (as a listener does
when one socket read carried several): the first frame of a pass goes out at once, the
rest leave together at the end of the pass. ``--listener`` also runs the broker's
`Listener._read` over a stand-in pub/sub connection that returns redis-py's message
dicts (redis-py's own parsing is not included: see `bench.pubsub_reader`).

Timing: the best of ``--repeat`` runs, in ns of thread CPU time per delivery. With
``--instructions``, the same run under ``valgrind --tool=cachegrind`` twice (with
``--publications`` and twice as many): the difference in instructions executed, per
delivery, repeatable to a fraction of a percent on a busy machine.

``--root DIR`` imports the gateway from another copy of the tree (DIR holds ``gateway/``).
Runs are bounded: ``--publications`` × ``--subscribers`` deliveries per repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CHANNEL = "fanout"
DATA = {"t": 1234567890123456789, "pad": "x" * 64}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.instructions:
        result = instructions(args)
    else:
        result = timed(args)
    print(json.dumps(result, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_micro", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publications", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1, help="publications per loop pass")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--history", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--listener", action="store_true", help="through Listener._read")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--root", default=None, help="import the gateway from this tree")
    parser.add_argument("--instructions", action="store_true", help="count with cachegrind")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after set-up")
    return parser


def timed(args: argparse.Namespace) -> dict[str, Any]:
    if args.root:
        sys.path.insert(0, str(Path(args.root).resolve()))
    rig = Rig(args)
    runs = [rig.run_once() for _ in range(max(1, args.repeat))]
    deliveries = args.publications * args.subscribers
    return {
        "gateway": rig.gateway_path,
        "subscribers": args.subscribers,
        "publications": args.publications,
        "burst": args.burst,
        "history": args.history,
        "listener": args.listener,
        "writes_per_delivery": rig.writes / max(1, deliveries * len(runs)),
        "ns_per_delivery_best": min(runs) / deliveries,
        "ns_per_delivery_median": sorted(runs)[len(runs) // 2] / deliveries,
        "ns_per_delivery_runs": [round(run / deliveries, 1) for run in runs],
    }


class Rig:
    """The hub, its subscribers and the envelopes, built once; `run_once` fans them out."""

    def __init__(self, args: argparse.Namespace) -> None:
        import gateway

        self.gateway_path = str(Path(gateway.__file__).parent)
        self.args = args
        if args.loop == "uvloop":
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.writes = 0
        self.loop.run_until_complete(self._build())
        gc.collect()
        if args.freeze:
            gc.freeze()

    async def _build(self) -> None:
        from gateway.broker.base import BrokerRoutes
        from gateway.broker.memory import MemoryBroker
        from gateway.core.history import HistoryPolicy
        from gateway.core.hub import Hub
        from gateway.core.outbox import Outbox
        from gateway.core.passes import LoopPasses
        from gateway.ops.metrics import Metrics
        from gateway.transport.sinks import DirectSink
        from gateway.wire.envelope import envelope, now_us
        from gateway.wire.protocol import StreamPosition, close_message, message_head

        args = self.args
        broker = MemoryBroker()
        self.metrics = Metrics()
        self.hub = Hub(broker, self.metrics.publish_to_deliver.observe)
        self.handler = self.hub
        await broker.start(
            BrokerRoutes(self.hub.on_publication, lambda _: None, self.hub.on_reconnected)
        )
        passes = LoopPasses()
        history = HistoryPolicy(100, 300.0) if args.history else None
        self.sinks: list[_Transport] = []
        self.subscribers = []
        for _ in range(args.subscribers):
            protocol = _protocol()
            transport = _Transport()
            protocol.transport = transport
            self.sinks.append(transport)
            sink = DirectSink(protocol)
            outbox = Outbox(
                sink,
                1000,
                passes,
                self.metrics.queue_depth.observe,
                byte_limit=1 << 20,
                batches=True,
            )
            subscriber = _Subscriber(outbox)
            self.subscribers.append(subscriber)
            joined = await self.hub.subscribe(CHANNEL, subscriber, history)
        head = message_head(CHANNEL, DATA, "client-id-1234", None)
        self.epoch = joined.epoch if joined is not None else ""
        self.offset = joined.offset if joined is not None else 0
        self._close_message = close_message
        self._envelope = envelope
        self._position = StreamPosition
        self._head = head
        self._now_us = now_us
        self.topic_head = "gw:{"

    def envelopes(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            if self.args.history:
                self.offset += 1
                position = self._position(self.offset, self.epoch)
                frame = self._close_message(self._head, position)
            else:
                position = None
                frame = self._close_message(self._head)
            out.append(self._envelope(frame, position, self._now_us()))
        return out

    def run_once(self) -> int:
        """Fan ``publications`` out; the thread CPU time it took, in ns."""
        args = self.args
        envelopes = self.envelopes(args.publications)
        before = sum(sink.count for sink in self.sinks)
        if args.listener:
            work = self._through_listener(envelopes)
        else:
            work = self._direct(envelopes)
        started = time.thread_time_ns()
        self.loop.run_until_complete(work)
        elapsed = time.thread_time_ns() - started
        self.writes += sum(sink.count for sink in self.sinks) - before
        for sink in self.sinks:
            self._check(sink.frames, len(envelopes))
            sink.clear()
        return elapsed

    def _check(self, frames: list[bytes], expected: int) -> None:
        """Every subscriber got every publication of the run, once each and in order."""
        lines = [line for frame in frames for line in _payload(frame).split(b"\n")]
        if len(lines) != expected:
            raise AssertionError(f"a subscriber got {len(lines)} messages of {expected}")
        if self.args.history:
            offsets = [int(line.rsplit(b'"offset":', 1)[1].split(b",")[0]) for line in lines]
            if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
                raise AssertionError("a subscriber got messages out of order or twice")

    async def _direct(self, envelopes: list[bytes]) -> None:
        on_publication = self.handler.on_publication
        burst = self.args.burst
        for index, item in enumerate(envelopes, 1):
            on_publication(CHANNEL, item)
            if index % burst == 0:
                await asyncio.sleep(0)
        await self._drained()

    async def _drained(self) -> None:
        """Let the loop run until the hub has handed everything on (a hub may spread a
        fan-out over several passes)."""
        await asyncio.sleep(0)
        for _ in range(10_000):
            if not getattr(self.hub, "_due", None) and not getattr(
                self.hub, "_flush_scheduled", False
            ):
                return
            await asyncio.sleep(0)

    async def _through_listener(self, envelopes: list[bytes]) -> None:
        from gateway.broker.keys import KeySpace
        from gateway.broker.listener import Listener, ListenerEvents

        keys = KeySpace("gw")
        events = ListenerEvents(self.handler.on_publication, lambda: None, lambda _: None)
        listener = Listener(None, keys, events, name="micro", address="-")  # type: ignore[arg-type]
        listener._wanted.add(CHANNEL)
        topic = keys.topic(CHANNEL).encode()
        messages = [
            {"type": "message", "pattern": None, "channel": topic, "data": item}
            for item in envelopes
        ]
        pubsub = _PubSub(messages, self.args.burst)
        try:
            await listener._read(pubsub)  # type: ignore[arg-type]
        except _Drained:
            pass
        await self._drained()


def _payload(frame: bytes) -> bytes:
    """The payload of an unmasked WebSocket frame."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return frame[start:]


class _Drained(Exception):
    pass


class _PubSub:
    """What `Listener._read` asks of redis-py's PubSub: ``get_message``, one dict each;
    every ``burst`` messages it waits for the next loop pass, as a socket read would."""

    def __init__(self, messages: list[dict[str, Any]], burst: int) -> None:
        self._messages = iter(messages)
        self._burst = burst
        self._count = 0

    async def get_message(self, timeout: float | None = None) -> dict[str, Any] | None:  # noqa: ASYNC109
        self._count += 1
        if self._count % self._burst == 0:
            await asyncio.sleep(0)
        for message in self._messages:
            return message
        raise _Drained


class _Transport:
    """Takes frames in a C call (``list.append``), kept until `clear`."""

    __slots__ = ("frames", "write")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.write = self.frames.append

    @property
    def count(self) -> int:
        return len(self.frames)

    def clear(self) -> None:
        self.frames.clear()

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Subscriber:
    """What the hub holds of a connection: its ``deliver`` (the outbox's offer) and close."""

    __slots__ = ("__weakref__", "deliver", "outbox")

    def __init__(self, outbox: Any) -> None:
        self.outbox = outbox
        self.deliver = outbox.offer

    def close(self, reason: Any) -> None:
        raise AssertionError(f"a subscriber was closed: {reason}")


_CONFIG: Any = None


def _protocol() -> Any:
    """A `GatewayWebSocketProtocol` as uvicorn makes one (not connected)."""
    global _CONFIG
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from gateway.transport.websocket import GatewayWebSocketProtocol

    if _CONFIG is None:

        async def app(scope: Any, receive: Any, send: Any) -> None:
            return None

        _CONFIG = (Config(app, ws=GatewayWebSocketProtocol, log_config=None), ServerState())
        _CONFIG[0].load()
    config, state = _CONFIG
    return GatewayWebSocketProtocol(config, state, {}, asyncio.get_event_loop())


COLLECTED = re.compile(r"(?:Collected|I\s+refs)\s*:\s*([\d,]+)")


def instructions(args: argparse.Namespace) -> dict[str, Any]:
    """Instructions per delivery: two runs under cachegrind, the second with twice the
    publications; start-up and set-up cancel out in the difference."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    counts = []
    for publications in (args.publications, 2 * args.publications):
        command = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "bench.fanout_micro",
            "--subscribers",
            str(args.subscribers),
            "--publications",
            str(publications),
            "--burst",
            str(args.burst),
            "--repeat",
            "1",
            "--loop",
            args.loop,
            "--history" if args.history else "--no-history",
        ]
        if args.listener:
            command.append("--listener")
        if args.root:
            command += ["--root", args.root]
        if args.freeze:
            command.append("--freeze")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=1800, check=False, env=env
        )
        found = COLLECTED.findall(done.stderr)
        if done.returncode or not found:
            raise SystemExit(f"cachegrind failed ({done.returncode}):\n{done.stderr[-2000:]}")
        counts.append(int(found[-1].replace(",", "")))
    deliveries = args.publications * args.subscribers
    return {
        "root": args.root,
        "subscribers": args.subscribers,
        "publications": args.publications,
        "burst": args.burst,
        "history": args.history,
        "listener": args.listener,
        "instructions": counts,
        "instructions_per_delivery": (counts[1] - counts[0]) / deliveries,
        "instructions_per_publication": (counts[1] - counts[0]) / args.publications,
    }


if __name__ == "__main__":
    sys.exit(main())
