"""The processes under test: a redis-server and groups of server replicas of each kind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import nodejs
from bench.system import cpu_seconds, raise_open_files_limit, rss_bytes, thread_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]

START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _starter(cpus: list[int] | None) -> Callable[[], None]:
    """Run in each child before it executes: pin it, and let it open as many files as allowed."""

    def start() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        raise_open_files_limit()

    return start


def _child_env(extra: dict[str, str], root: Path = ROOT) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    paths = dict.fromkeys([str(root), str(ROOT)])  # this tree's bench under another's gateway
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _terminate(*processes: subprocess.Popen[bytes]) -> None:
    """SIGTERM to every process at once, then wait for each (killing it after 15 s)."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class RedisProcess:
    """A throwaway redis-server on a free loopback port, without persistence."""

    def __init__(self, cpus: list[int] | None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_starter(cpus),
        )
        _wait(self._answers, self.process, "redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *words: str) -> bytes:
        """Send one inline command and return the first reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            return sock.recv(65536).split(b"\r\n", 1)[0]

    def _answers(self) -> bool:
        try:
            return self.command("PING") == b"+PONG"
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        """Its CPU time so far, to the nanosecond: Redis uses little, ticks are too coarse."""
        return thread_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        _terminate(self.process)
        shutil.rmtree(self._dir, ignore_errors=True)


@dataclass(frozen=True)
class ServerKind:
    """One kind of server the bench compares: how to start it and how clients reach it."""

    name: str
    label: str
    dialect: str
    ws_path: str
    module: list[str]
    """``python -m`` arguments; empty for the Node peer."""
    env: dict[str, str] = field(default_factory=dict)
    redis_env: str | None = None
    """Environment variable carrying the Redis URL; None: passed as ``--redis-url``."""
    runtime: str = "python"
    """``python`` (``module`` is run with this interpreter) or ``node`` (bench/servers/node)."""
    root: str | None = None
    """The tree the server runs from (its working directory, first on ``PYTHONPATH``);
    None: this one. Another copy runs a patched server against the same load."""

    def command(self, port: int, redis_url: str) -> list[str]:
        if self.runtime == "node":
            program = [nodejs.node_binary(), str(nodejs.SERVER)]
        else:
            program = [sys.executable, "-m", *self.module]
        args = [*program, "--port", str(port)]
        if self.redis_env is None:
            args += ["--redis-url", redis_url]
        return args

    def environment(self, redis_url: str, node: str) -> dict[str, str]:
        env = dict(self.env)
        if self.redis_env is not None:
            env[self.redis_env] = redis_url
        if self.name == "gateway":
            env["GATEWAY_NODE_ID"] = node
        return env


KINDS: dict[str, ServerKind] = {
    kind.name: kind
    for kind in (
        ServerKind(
            name="bare",
            label="bare websockets + redis-py",
            dialect="pubsub",
            ws_path="/ws",
            module=["bench.servers.bare"],
        ),
        ServerKind(
            name="gateway",
            label="gateway",
            dialect="pubsub",
            ws_path="/ws",
            module=["gateway", "serve", "--log-level", "warning"],
            # The bench's publishers send thousands of commands per second on one
            # connection; the per-connection command rate limit would refuse them. A
            # replica stopped between workloads closes its last clients at once rather
            # than spreading them over the default 10 s drain.
            env={"GATEWAY_RATE": "1000000", "GATEWAY_DRAIN_SECONDS": "0"},
            redis_env="GATEWAY_REDIS_URL",
        ),
        ServerKind(
            name="socketio",
            label="python-socketio + AsyncRedisManager",
            dialect="socketio",
            ws_path="/socket.io/?EIO=4&transport=websocket",
            module=["bench.servers.sio"],
        ),
        ServerKind(
            name="node",
            label="Node socket.io + @socket.io/redis-adapter",
            dialect="socketio",
            ws_path="/socket.io/?EIO=4&transport=websocket",
            module=[],
            runtime="node",
        ),
    )
}


class ServerProcess:
    """One replica of a server kind, pinned to the server CPUs; its output goes to a log."""

    def __init__(self, kind: ServerKind, node: str, redis_url: str, cpus: list[int] | None):
        self.kind = kind
        self.node = node
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{node}-", suffix=".log")[1])
        root = Path(kind.root) if kind.root else ROOT
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                kind.command(self.port, redis_url),
                env=_child_env(kind.environment(redis_url, node), root),
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_starter(cpus),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.kind.ws_path}"

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self) -> None:
        try:
            _wait(self.ready, self.process, f"{self.kind.name} replica {self.node}")
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; its log:\n{self.log_tail()}") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        _terminate(self.process)
        with contextlib.suppress(OSError):
            self.log.unlink()


class ServerGroup:
    """The replicas of one kind, started together, measured together."""

    def __init__(
        self, kind: ServerKind, replicas: int, redis_url: str, cpus: list[int] | None
    ) -> None:
        self.kind = kind
        self.replicas = [
            ServerProcess(kind, f"{kind.name}-{index + 1}", redis_url, cpus)
            for index in range(replicas)
        ]
        try:
            for replica in self.replicas:
                replica.wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> list[str]:
        return [replica.ws_url for replica in self.replicas]

    @property
    def pids(self) -> list[int]:
        return [replica.pid for replica in self.replicas]

    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_replica())

    def cpu_by_replica(self) -> list[float]:
        return [cpu_seconds(replica.pid) for replica in self.replicas]

    def rss_bytes(self) -> list[int]:
        return [rss_bytes(replica.pid) for replica in self.replicas]

    def check_alive(self) -> None:
        """Raise when a replica died: every figure after that would be meaningless."""
        for replica in self.replicas:
            if not replica.alive():
                raise RuntimeError(
                    f"{replica.node} exited with status {replica.process.returncode}:\n"
                    f"{replica.log_tail()}"
                )

    def stop(self) -> None:
        _terminate(*(replica.process for replica in self.replicas))
        for replica in self.replicas:
            replica.stop()
