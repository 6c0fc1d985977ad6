"""The cost of history on publish throughput: the same run, with and without it.

Starts a throwaway redis-server and one replica in which the ``plain`` namespace has
history off and every other channel keeps the default history (100 messages, 300 s).
P publisher connections each publish M messages (NDJSON batches) to a channel of one kind,
one subscriber receives them all; the run alternates the two kinds R times and reports the
median publishes/s and the server's CPU time per publish. Bounded in count and time.

    python -m bench.history_cost [--publishers 8] [--messages 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.processes import free_port
from bench.system import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gateway exited during start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("gateway did not become ready")


async def publish_all(websocket: ClientConnection, channel: str, count: int) -> None:
    batch = 50
    for start in range(0, count, batch):
        size = min(batch, count - start)
        lines = [
            orjson.dumps({"op": "publish", "channel": channel, "data": {"n": start + i}}).decode()
            for i in range(size)
        ]
        await websocket.send("\n".join(lines))
        replies = 0
        while replies < size:
            frame = await asyncio.wait_for(websocket.recv(), 30)
            replies += str(frame).count('"op":"published"')


async def receive(websocket: ClientConnection, expected: int) -> None:
    received = 0
    while received < expected:
        frame = await asyncio.wait_for(websocket.recv(), 30)
        received += str(frame).count('"op":"message"')


async def one_round(
    url: str, pid: int, channel: str, publishers: int, messages: int
) -> dict[str, float]:
    async with connect(url, max_size=None) as subscriber:
        await subscriber.recv()
        await subscriber.send(orjson.dumps({"op": "subscribe", "channel": channel}).decode())
        await subscriber.recv()
        senders = [await connect(url, max_size=None) for _ in range(publishers)]
        for sender in senders:
            await sender.recv()
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(
            receive(subscriber, publishers * messages),
            *(publish_all(sender, channel, messages) for sender in senders),
        )
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
        for sender in senders:
            await sender.close()
    total = publishers * messages
    return {"publishes_per_second": total / elapsed, "server_cpu_us_per_publish": cpu / total * 1e6}


async def measure(
    url: str, pid: int, publishers: int, messages: int, rounds: int
) -> dict[str, dict[str, float]]:
    results: dict[str, list[dict[str, float]]] = {"without_history": [], "with_history": []}
    for index in range(rounds):
        for kind, channel in (("without_history", "plain:bench"), ("with_history", "hist:bench")):
            results[kind].append(
                await one_round(url, pid, f"{channel}{index}", publishers, messages)
            )
    return {
        kind: {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
        for kind, runs in results.items()
    }


@contextlib.contextmanager
def replica_on_redis(env: dict[str, str], *serve_args: str) -> Iterator[tuple[str, int]]:
    """A throwaway redis-server and one ``gateway serve`` replica on it (with ``env`` and
    ``serve_args``), ready; yields the replica's WebSocket URL and pid."""
    redis_port, port = free_port(), free_port()
    redis = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tempfile.mkdtemp(),
        ],
        stdout=subprocess.DEVNULL,
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    environment.update(
        PYTHONPATH=str(ROOT),
        GATEWAY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        GATEWAY_RATE="0",  # publishers send batches far above the per-connection rate limit
        **env,
    )
    command = [sys.executable, "-m", "gateway", "serve", *serve_args]
    command += ["--port", str(port), "--log-level", "warning"]
    gateway = subprocess.Popen(command, env=environment, cwd=ROOT)
    try:
        wait_ready(port, gateway)
        yield f"ws://127.0.0.1:{port}/ws", gateway.pid
    finally:
        gateway.terminate()
        gateway.wait(20)
        redis.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--messages", type=int, default=500, help="per publisher and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    namespaces = json.dumps({"plain": {"history_size": 0}})
    with replica_on_redis({"GATEWAY_NAMESPACES": namespaces}) as (url, pid):
        result = asyncio.run(measure(url, pid, args.publishers, args.messages, args.rounds))
    result["ratio"] = {
        "publishes_per_second": round(
            result["with_history"]["publishes_per_second"]
            / result["without_history"]["publishes_per_second"],
            3,
        )
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
