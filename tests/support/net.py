"""Loopback ports and waiting with a deadline."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable

WORKER_PORTS = 2000
"""Ports each pytest-xdist worker takes its own from, below the kernel's ephemeral range."""
FIRST_WORKER_PORT = 12000
_next_port: dict[str, int] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Under pytest-xdist each worker takes ports from a range of its own, below the kernel's
    ephemeral range: a port one worker chose for a server it is about to start cannot be
    chosen by another worker, nor taken meanwhile by an outgoing connection. A single
    process asks the kernel for one.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    first = FIRST_WORKER_PORT + int(worker[2:]) * WORKER_PORTS
    for _ in range(WORKER_PORTS):
        offset = _next_port.get(worker, 0)
        _next_port[worker] = (offset + 1) % WORKER_PORTS
        port = first + offset
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in {first}-{first + WORKER_PORTS - 1}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_sync(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Await until ``condition`` (sync or async) holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
