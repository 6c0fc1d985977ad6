"""Real gateway replicas: ``python -m gateway serve`` subprocesses on loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def gateway_env(**settings: str | int | float | bool) -> dict[str, str]:
    """The environment of a gateway process: this one without GATEWAY_*, plus ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    for key, value in settings.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"GATEWAY_{key.upper()}"] = str(value)
    return env


class GatewayProcess:
    """One replica; ``start()`` returns once ``/readyz`` answers 200."""

    def __init__(self, node_id: str, port: int | None = None, **settings: str | int | float | bool):
        self.node_id = node_id
        self.port = port or free_port()
        self.settings = {"node_id": node_id, **settings}
        self.log = Path(tempfile.mkstemp(prefix=f"gw-{node_id}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def plain_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket"

    def launch(self, *args: str) -> None:
        """Start the process without waiting for it to be ready."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), *args],
                env=gateway_env(**self.settings),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway {self.node_id} exited:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"gateway {self.node_id} not ready in {timeout}s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.http_url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, *args: str) -> GatewayProcess:
        self.launch(*args)
        self.wait_ready()
        return self

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: the replica vanishes without a word."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_all(replicas: list[GatewayProcess], *args: str) -> list[GatewayProcess]:
    """Start several replicas in parallel (each with the command-line ``args`` of ``gateway
    serve``, such as ``--app MODULE:ATTR``) and wait until each is ready."""
    for replica in replicas:
        replica.launch(*args)
    for replica in replicas:
        replica.wait_ready()
    return replicas
