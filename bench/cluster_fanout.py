"""Fan-out through the whole topology: nginx, R replicas and Redis, as `gateway cluster` runs it.

Starts ``gateway cluster`` on a free port, connects N subscribers through nginx (which
spreads them over the replicas), publishes M messages in NDJSON batches from one more
connection, and reports deliveries/s, loss, and the CPU time per delivery of each kind of
process (replicas, nginx, redis). Bounded in count and in time.

    python -m bench.cluster_fanout --replicas 3 --subscribers 600 --messages 1000 [--config F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.processes import free_port
from bench.system import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
CHILD_LINE = re.compile(r"^  (\S+)\s+pid (\d+)\s", re.MULTILINE)
SUBSCRIBE = b'{"op":"subscribe","id":1,"channel":"bench"}'
PUBLISH = '{"op":"publish","channel":"bench","data":{"text":"' + "x" * 100 + '"}}'


class Tally:
    """Deliveries counted over every subscriber; done once all expected ones arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done = asyncio.Event()

    def add(self, count: int) -> None:
        self.received += count
        if self.received >= self.expected:
            self.done.set()


class Subscriber(WSListener):  # type: ignore[misc]
    """One subscriber connection; adds the `message` events of each frame to the tally."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.subscribed = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, SUBSCRIBE)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        payload = frame.get_payload_as_bytes()
        self.tally.add(payload.count(b'"op":"message"'))
        if not self.subscribed.done() and b'"subscribed"' in payload:
            self.subscribed.set_result(None)


def start_cluster(
    replicas: int, port: int, config: str | None
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """`gateway cluster` and the pid of each process it announced (nginx's master only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    env["GATEWAY_RATE"] = "0"  # the publisher's batches are far above the per-connection limit
    command = [sys.executable, "-m", "gateway", "cluster", "--replicas", str(replicas)]
    command += ["--port", str(port), "--log-level", "warning"]
    if config:
        command += ["--config", config]
    cluster = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert cluster.stdout is not None
    announced = ""
    deadline = time.monotonic() + 60
    while "Ctrl-C stops everything." not in announced:
        line = cluster.stdout.readline().decode()
        if not line or time.monotonic() > deadline:
            cluster.kill()
            raise RuntimeError(f"gateway cluster did not start:\n{announced}")
        announced += line
    return cluster, {name: int(pid) for name, pid in CHILD_LINE.findall(announced)}


def nginx_workers(master: int) -> list[int]:
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                workers.append(int(stat.parent.name))
    return workers


def cpu_by_kind(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by the replicas, nginx (master and workers) and redis."""
    totals = {"replicas": 0.0, "nginx": 0.0, "redis": 0.0}
    for name, pid in pids.items():
        kind = "replicas" if name.startswith("gateway-") else name
        group = [pid, *nginx_workers(pid)] if name == "nginx" else [pid]
        totals[kind] += sum(cpu_seconds(member) for member in group)
    return totals


async def measure(
    url: str, pids: dict[str, int], subscribers: int, messages: int, batch: int
) -> dict[str, object]:
    """Connect, subscribe, publish and count through nginx; CPU per kind of process."""
    tally = Tally(subscribers * messages)
    connections = [await ws_connect(lambda: Subscriber(tally), url) for _ in range(subscribers)]
    await asyncio.wait_for(asyncio.gather(*(sub.subscribed for _, sub in connections)), 60)
    publisher, _ = await ws_connect(WSListener, url)
    cpu_before = cpu_by_kind(pids)
    started = time.perf_counter()
    for start in range(0, messages, batch):
        publisher.send(WSMsgType.TEXT, "\n".join([PUBLISH] * min(batch, messages - start)).encode())
        await asyncio.sleep(0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.done.wait(), 120)
    elapsed = time.perf_counter() - started
    cpu_after = cpu_by_kind(pids)
    for transport, _ in [*connections, (publisher, None)]:
        transport.disconnect()
    delivered = max(tally.received, 1)
    return {
        "replicas": sum(name.startswith("gateway-") for name in pids),
        "subscribers": subscribers,
        "messages": messages,
        "delivered": tally.received,
        "lost": tally.expected - tally.received,
        "seconds": round(elapsed, 3),
        "deliveries_per_second": round(tally.received / elapsed),
        "cpu_us_per_delivery": {
            kind: round((cpu_after[kind] - cpu_before[kind]) / delivered * 1e6, 2)
            for kind in cpu_before
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=600)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=20, help="publishes per NDJSON frame")
    parser.add_argument("--config", help="TOML config for the replicas (e.g. history off)")
    args = parser.parse_args()
    port = free_port()
    cluster, pids = start_cluster(args.replicas, port, args.config)
    try:
        result = asyncio.run(
            measure(f"ws://127.0.0.1:{port}/ws", pids, args.subscribers, args.messages, args.batch)
        )
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(60)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
