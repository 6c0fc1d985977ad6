"""Quick fan-out figure: messages/s delivered to N subscribers of one channel on one replica.

Starts one ``gateway serve`` (memory broker, or a throwaway redis-server with ``--redis``),
connects N subscribers with picows (a Cython WebSocket client, cheaper than the server),
publishes M messages in NDJSON batches from one more connection, and reports deliveries/s,
loss, and the server's CPU time per delivery. Bounded in count and in time.

    python bench/quick_fanout.py --subscribers 500 --messages 2000 [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

ROOT = Path(__file__).resolve().parents[1]
MESSAGE_MARK = b'"op":"message"'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counter(WSListener):  # type: ignore[misc]
    """Counts `message` events; one instance per subscriber connection."""

    total = 0
    expected = 0
    all_arrived: asyncio.Event

    def __init__(self) -> None:
        self.ready = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        payload = frame.get_payload_as_bytes()
        Counter.total += payload.count(MESSAGE_MARK)
        if Counter.total >= Counter.expected:
            Counter.all_arrived.set()
        if not self.ready.done() and b'"subscribed"' in payload:
            self.ready.set_result(None)


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


def run(subscribers: int, messages: int, batch: int, use_redis: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    redis_process = None
    if use_redis:
        redis_port = free_port()
        redis_process = subprocess.Popen(
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
        env["GATEWAY_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=ROOT,
    )
    try:
        wait_ready(port, gateway)
        return asyncio.run(
            measure(f"ws://127.0.0.1:{port}/ws", gateway.pid, subscribers, messages, batch)
        )
    finally:
        gateway.terminate()
        gateway.wait(20)
        if redis_process is not None:
            redis_process.kill()


async def measure(
    url: str, pid: int, subscribers: int, messages: int, batch: int
) -> dict[str, float]:
    """Connect, subscribe, publish and count; the gateway at ``url`` runs as process ``pid``."""
    Counter.expected = subscribers * messages
    Counter.all_arrived = asyncio.Event()
    listeners = []
    for _ in range(subscribers):
        transport, listener = await ws_connect(Counter, url)
        transport.send(WSMsgType.TEXT, b'{"op":"subscribe","id":1,"channel":"bench"}')
        listeners.append((transport, listener))
    await asyncio.wait_for(asyncio.gather(*(item.ready for _, item in listeners)), 30)
    publisher, _ = await ws_connect(WSListener, url)
    payload = json.dumps({"text": "x" * 100})
    line = f'{{"op":"publish","channel":"bench","data":{payload}}}'
    expected = Counter.expected
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    for start in range(0, messages, batch):
        frame = "\n".join([line] * min(batch, messages - start))
        publisher.send(WSMsgType.TEXT, frame.encode())
        await asyncio.sleep(0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(Counter.all_arrived.wait(), 60)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    for transport, _ in listeners:
        transport.disconnect()
    publisher.disconnect()
    delivered = Counter.total
    return {
        "subscribers": subscribers,
        "messages": messages,
        "delivered": delivered,
        "lost": expected - delivered,
        "seconds": round(elapsed, 3),
        "deliveries_per_second": round(delivered / elapsed),
        "server_cpu_us_per_delivery": round(cpu / max(delivered, 1) * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20, help="publishes per NDJSON frame")
    parser.add_argument("--redis", action="store_true", help="relay through a redis-server")
    args = parser.parse_args()
    result = run(args.subscribers, args.messages, args.batch, args.redis)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
