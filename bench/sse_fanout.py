"""Server CPU per delivery: ``GET /sse`` streams against ``/ws`` subscribers, same session,
same replica.

    python -m bench.sse_fanout [--subscribers 500] [--publications 400] [--rate 40]
                               [--channels 1]

One ``gateway serve`` process (in-memory broker: what differs is the replica's fan-out,
not Redis), ``subscribers`` clients of one transport on one channel, then
``publications`` at ``rate`` per second from a ``/ws`` publisher; the replica's CPU time
over the publishing window divided by the deliveries. With ``--channels N`` every client
also holds N - 1 quiet channels (a stream's event id then carries N positions, written
for each stream; with one channel a message's event is built once and shared). A stream
client is a bare TCP connection that sends the ``GET /sse`` request and counts the events
it reads (no HTTP library: the bench process's own CPU stays out of the way). The
transports run in turn on fresh channels of the same process, ``rounds`` times (ws sse ws
sse), and the report gives each one's median. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.history_cost import wait_ready
from bench.processes import free_port
from bench.system import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
TRANSPORTS = ("ws", "sse")
MESSAGE = b'"op":"message"'
DEADLINE = 30.0
"""Seconds a run waits for its last deliveries."""


class Counter:
    """Deliveries counted by every subscriber of a run."""

    def __init__(self) -> None:
        self.count = 0


async def ws_subscriber(port: int, channels: list[str], counter: Counter) -> ClientConnection:
    """A ``/ws`` subscriber of ``channels``, once subscribed, counting the messages it gets."""
    socket = await connect(f"ws://127.0.0.1:{port}/ws", max_size=None)
    commands = [{"op": "subscribe", "id": n, "channel": c} for n, c in enumerate(channels)]
    await socket.send("\n".join(orjson.dumps(command).decode() for command in commands))
    replies = 0
    while replies < len(channels):
        replies += str(await asyncio.wait_for(socket.recv(), 10)).count('"op":"subscribed"')

    async def count() -> None:
        try:
            async for frame in socket:
                counter.count += str(frame).count('"op":"message"')
        except Exception:  # the run is over
            return

    asyncio.get_running_loop().create_task(count())
    return socket


async def sse_subscriber(port: int, channels: list[str], counter: Counter) -> asyncio.StreamWriter:
    """A ``GET /sse`` stream of ``channels``, once subscribed, counting the message events
    it reads."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    query = "&".join(f"channel={channel}" for channel in channels)
    request = (
        f"GET /sse?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    received = b""
    while received.count(b'"op":"subscribed"') < len(channels):
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        if not chunk:
            raise ConnectionError(f"the stream ended before subscribed: {received[-200:]!r}")
        received += chunk

    async def count() -> None:
        tail = received[-(len(MESSAGE) - 1) :]
        counter.count += received.count(MESSAGE)
        try:
            while chunk := await reader.read(65536):
                data = tail + chunk
                counter.count += data.count(MESSAGE)
                tail = data[-(len(MESSAGE) - 1) :]
        except Exception:  # the run is over
            return

    asyncio.get_running_loop().create_task(count())
    return writer


async def run_one(port: int, pid: int, transport: str, args: argparse.Namespace) -> dict[str, Any]:
    channel = f"bench{uuid.uuid4().hex[:8]}"
    channels = [channel, *(f"{channel}-quiet{n}" for n in range(1, args.channels))]
    counter = Counter()
    clients: list[ClientConnection | asyncio.StreamWriter] = []
    for _ in range(args.subscribers):
        if transport == "ws":
            clients.append(await ws_subscriber(port, channels, counter))
        else:
            clients.append(await sse_subscriber(port, channels, counter))
    async with connect(f"ws://127.0.0.1:{port}/ws") as publisher:
        await publisher.recv()
        text = "a chat line of about the size people type, with a little more text; " * 2
        counter.count = 0
        started_cpu, started = cpu_seconds(pid), time.monotonic()
        for number in range(args.publications):
            body = {"op": "publish", "channel": channel, "data": {"text": text, "n": number}}
            await publisher.send(orjson.dumps(body).decode())
            await asyncio.sleep(max(0.0, started + (number + 1) / args.rate - time.monotonic()))
        expected = args.subscribers * args.publications
        deadline = time.monotonic() + DEADLINE
        while counter.count < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        used = cpu_seconds(pid) - started_cpu
        delivered = counter.count
    for client in clients:
        if isinstance(client, asyncio.StreamWriter):
            client.close()
        else:
            await client.close()
    return {
        "transport": transport,
        "delivered": delivered,
        "expected": expected,
        "us": used / max(1, delivered) * 1e6,
    }


async def run_all(port: int, pid: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for _ in range(args.rounds):
        for transport in TRANSPORTS:
            results.append(await run_one(port, pid, transport, args))
    return results


def serve_and_run(args: argparse.Namespace) -> list[dict[str, Any]]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    env.update(PYTHONPATH=str(ROOT), GATEWAY_RATE="0", GATEWAY_MAX_CONNECTIONS="0")
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env, cwd=ROOT)
    try:
        wait_ready(port, server)
        return asyncio.run(run_all(port, server.pid, args))
    finally:
        server.terminate()
        server.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--publications", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=1, help="channels each client holds")
    args = parser.parse_args()
    results = serve_and_run(args)
    summary: dict[str, Any] = {}
    for transport in TRANSPORTS:
        mine = [result for result in results if result["transport"] == transport]
        summary[transport] = {
            "server_cpu_us_per_delivery": round(statistics.median(r["us"] for r in mine), 2),
            "delivered": sum(r["delivered"] for r in mine),
            "expected": sum(r["expected"] for r in mine),
        }
    summary["ratio"] = round(
        summary["sse"]["server_cpu_us_per_delivery"] / summary["ws"]["server_cpu_us_per_delivery"],
        3,
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
