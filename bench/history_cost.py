"""The cost of history, and of idempotent publishing, on publish throughput: the same run
with and without each.

Starts a throwaway redis-server and one replica in which the ``plain`` namespace has
history off and every other channel keeps the default history (100 messages, 300 s).
P publisher connections each publish M messages (NDJSON batches) to a channel of one kind,
one subscriber receives them all; the run alternates the kinds (history on or off, each
with and without an ``idempotency_key`` on every publish) R times and reports the median
publishes/s and the server's CPU time per publish. Bounded in count and time.

    python -m bench.history_cost [--publishers 8] [--messages 500] [--rounds 3] [--no-keys]
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


KINDS = {
    "without_history": ("plain:bench", False),
    "with_history": ("hist:bench", False),
    "without_history_keyed": ("plain:keyed", True),
    "with_history_keyed": ("hist:keyed", True),
}
"""Each kind's channel prefix, and whether every publish carries an ``idempotency_key``."""


async def publish_all(websocket: ClientConnection, channel: str, count: int, keyed: bool) -> None:
    batch = 50
    prefix = os.urandom(6).hex()
    for start in range(0, count, batch):
        size = min(batch, count - start)
        commands = [
            {"op": "publish", "channel": channel, "data": {"n": start + i}} for i in range(size)
        ]
        if keyed:
            for i, command in enumerate(commands):
                command["idempotency_key"] = f"{prefix}-{start + i}"
        lines = [orjson.dumps(command).decode() for command in commands]
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
    url: str,
    pid: int,
    channel: str,
    publishers: int,
    messages: int,
    *,
    keyed: bool = False,
    redis_pid: int | None = None,
) -> dict[str, float]:
    """One kind's run: publishes/s, and the CPU per publish of the gateway (and of Redis,
    given its pid)."""
    async with connect(url, max_size=None) as subscriber:
        await subscriber.recv()
        await subscriber.send(orjson.dumps({"op": "subscribe", "channel": channel}).decode())
        await subscriber.recv()
        senders = [await connect(url, max_size=None) for _ in range(publishers)]
        for sender in senders:
            await sender.recv()
        redis_before = cpu_seconds(redis_pid) if redis_pid is not None else 0.0
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        await asyncio.gather(
            receive(subscriber, publishers * messages),
            *(publish_all(sender, channel, messages, keyed) for sender in senders),
        )
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
        redis_cpu = cpu_seconds(redis_pid) - redis_before if redis_pid is not None else 0.0
        for sender in senders:
            await sender.close()
    total = publishers * messages
    result = {
        "publishes_per_second": total / elapsed,
        "server_cpu_us_per_publish": cpu / total * 1e6,
    }
    if redis_pid is not None:
        result["redis_cpu_us_per_publish"] = redis_cpu / total * 1e6
    return result


async def measure(
    url: str, pids: tuple[int, int], publishers: int, messages: int, rounds: int, kinds: list[str]
) -> dict[str, dict[str, float]]:
    pid, redis_pid = pids
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for index in range(rounds):
        for kind in kinds:
            channel, keyed = KINDS[kind]
            results[kind].append(
                await one_round(
                    url,
                    pid,
                    f"{channel}{index}",
                    publishers,
                    messages,
                    keyed=keyed,
                    redis_pid=redis_pid,
                )
            )
    return {
        kind: {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
        for kind, runs in results.items()
    }


@contextlib.contextmanager
def replica_on_redis(env: dict[str, str], *serve_args: str) -> Iterator[tuple[str, int, int]]:
    """A throwaway redis-server and one ``gateway serve`` replica on it (with ``env`` and
    ``serve_args``), ready; yields the replica's WebSocket URL, its pid and Redis's."""
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
        yield f"ws://127.0.0.1:{port}/ws", gateway.pid, redis.pid
    finally:
        gateway.terminate()
        gateway.wait(20)
        redis.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--messages", type=int, default=500, help="per publisher and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-keys", action="store_true", help="only the kinds without an idempotency key"
    )
    args = parser.parse_args()
    kinds = [kind for kind, (_, keyed) in KINDS.items() if not (keyed and args.no_keys)]

    namespaces = json.dumps({"plain": {"history_size": 0}})
    with replica_on_redis({"GATEWAY_NAMESPACES": namespaces}) as (url, pid, redis_pid):
        result = asyncio.run(
            measure(url, (pid, redis_pid), args.publishers, args.messages, args.rounds, kinds)
        )
    result["ratio"] = {
        f"{kind} / {base}": round(
            result[kind]["publishes_per_second"] / result[base]["publishes_per_second"], 3
        )
        for kind, base in (
            ("with_history", "without_history"),
            ("with_history_keyed", "with_history"),
            ("without_history_keyed", "without_history"),
        )
        if kind in result
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
