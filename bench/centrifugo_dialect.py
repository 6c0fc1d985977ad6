"""Server CPU per delivery: ``/ws`` subscribers against ``/connection/websocket`` ones
(Centrifugo JSON, Protobuf, and JSON with fossil deltas), same session, same replica.

    python -m bench.centrifugo_dialect [--subscribers 500] [--publications 400] [--rate 40]

One gateway process (in-memory broker: what differs is the replica's fan-out, not Redis),
``subscribers`` connections of one dialect on one channel, then ``publications`` at
``rate`` per second from a ``/ws`` publisher; the replica's CPU time (``/proc/PID/stat``)
over the publishing window divided by the deliveries. The dialects run in turn on fresh
channels of the same process, twice (A B C D A B C D), and the report gives each one's
median. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.processes import free_port
from gateway.wire.centrifugo.codec import (
    PROTOBUF_SUBPROTOCOL,
    Encoding,
    decode_replies,
    encode_frame,
)
from gateway.wire.centrifugo.protocol_pb2 import Command

CONFIG = """
rate = 0
max_connections = 0
[namespaces.default]
history_size = 100
history_ttl = 300
allowed_delta_types = ["fossil"]
"""
DIALECTS = ("ws", "centrifugo-json", "centrifugo-protobuf", "centrifugo-json-delta")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:  # a read of /proc does not block
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def subscriber(port: int, dialect: str, channel: str, counts: list[int]) -> ClientConnection:
    if dialect == "ws":
        socket = await connect(f"ws://127.0.0.1:{port}/ws")
        await socket.send(orjson.dumps({"op": "subscribe", "id": 1, "channel": channel}).decode())
    else:
        wire = Encoding.PROTOBUF if "protobuf" in dialect else Encoding.JSON
        protocols = [Subprotocol(PROTOBUF_SUBPROTOCOL)] if wire.binary else None
        socket = await connect(
            f"ws://127.0.0.1:{port}/connection/websocket", subprotocols=protocols
        )
        delta = "fossil" if dialect.endswith("delta") else ""
        frame = encode_frame(
            [
                Command(id=1, connect={}),
                Command(id=2, subscribe={"channel": channel, "delta": delta}),
            ],
            wire,
        )
        await socket.send(frame if wire.binary else frame.decode())
    asyncio.get_running_loop().create_task(_count(socket, counts))
    return socket


async def _count(socket: ClientConnection, counts: list[int]) -> None:
    try:
        async for frame in socket:
            if isinstance(frame, bytes):
                replies = decode_replies(frame, Encoding.PROTOBUF)
                counts[0] += sum(1 for reply in replies if reply.push.HasField("pub"))
            else:
                counts[0] += frame.count('"offset"')
    except Exception:  # the run is over
        return


async def run_one(port: int, pid: int, dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    channel = f"bench{uuid.uuid4().hex[:8]}"
    counts = [0]
    sockets = [await subscriber(port, dialect, channel, counts) for _ in range(args.subscribers)]
    await asyncio.sleep(1.0)
    publisher = await connect(f"ws://127.0.0.1:{port}/ws")
    text = "a payload that changes a little from one publication to the next; " * 4
    counts[0] = 0
    started_cpu, started = cpu_seconds(pid), time.monotonic()
    for number in range(args.publications):
        body = {
            "op": "publish",
            "id": number,
            "channel": channel,
            "data": {"text": text, "n": number},
        }
        await publisher.send(orjson.dumps(body).decode())
        await asyncio.sleep(max(0.0, started + (number + 1) / args.rate - time.monotonic()))
    expected = args.subscribers * args.publications
    deadline = time.monotonic() + 20
    while counts[0] < expected and time.monotonic() < deadline:  # noqa: ASYNC110 (polls a count)
        await asyncio.sleep(0.05)
    used = cpu_seconds(pid) - started_cpu
    delivered = counts[0]
    for socket in [publisher, *sockets]:
        await socket.close()
    return {
        "dialect": dialect,
        "delivered": delivered,
        "expected": expected,
        "us": used / max(1, delivered) * 1e6,
    }


async def run_all(port: int, pid: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for _ in range(args.rounds):
        for dialect in DIALECTS:
            results.append(await run_one(port, pid, dialect, args))
    return results


def serve_and_run(args: argparse.Namespace) -> list[dict[str, Any]]:
    port = free_port()
    config = Path(tempfile.mkstemp(suffix=".toml")[1])
    config.write_text(CONFIG)
    env = {**os.environ, "GATEWAY_CONFIG": str(config)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return asyncio.run(run_all(port, server.pid, args))
    finally:
        server.terminate()
        server.wait(20)
        config.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--publications", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = serve_and_run(args)
    print("| dialect | server CPU per delivery (µs, median) | delivered |")
    print("|---|---|---|")
    for dialect in DIALECTS:
        mine = [result for result in results if result["dialect"] == dialect]
        median = statistics.median(result["us"] for result in mine)
        delivered = f"{sum(r['delivered'] for r in mine)}/{sum(r['expected'] for r in mine)}"
        print(f"| {dialect} | {median:.2f} | {delivered} |")


if __name__ == "__main__":
    main()
