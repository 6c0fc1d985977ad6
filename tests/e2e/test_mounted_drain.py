"""docs/examples/mounted.py: a mounted gateway whose app drains on SIGTERM like `gateway serve`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.client import ProtocolClient
from tests.support.gateways import REPO_ROOT, gateway_env
from tests.support.net import free_port, wait_until

EXAMPLE = REPO_ROOT / "docs" / "examples" / "mounted.py"


@pytest.fixture
def mounted_app(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", str(port)],
        env=gateway_env(drain_seconds=1.5),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def test_sigterm_spreads_the_closes_and_runs_the_apps_shutdown(
    mounted_app: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = mounted_app
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

        async def ready() -> bool:
            assert process.poll() is None, "the example exited"
            try:
                return (await http.get("/realtime/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, 15, "/realtime/readyz")
        assert (await http.get("/hello")).json() == {"hello": "world"}
    url = f"ws://127.0.0.1:{port}/realtime/ws"
    clients = [await ProtocolClient.connect(url) for _ in range(8)]
    closes: list[tuple[int | None, float]] = []

    async def await_close(client: ProtocolClient) -> None:
        code, frames = await client.closed(timeout=15)
        closes.append((code, time.monotonic()))
        assert any(frame.get("code") == 1012 for frame in frames)

    process.send_signal(signal.SIGTERM)
    await asyncio.gather(*(await_close(client) for client in clients))
    assert {code for code, _ in closes} == {1012}
    arrival = [at for _, at in closes]
    assert max(arrival) - min(arrival) >= 0.5, "closes are spread over the drain window"
    assert await asyncio.to_thread(process.wait, 20) == 0
    assert process.stdout is not None
    lines = [line for line in process.stdout.read().splitlines() if line.startswith("app: ")]
    assert lines == ["app: started", "app: stopping"]
