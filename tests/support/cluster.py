"""`gateway cluster` as a subprocess: start it, read what it announces, stop it, find leftovers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gateways import REPO_ROOT, gateway_env
from tests.support.net import free_port, wait_until_sync

CHILD_LINE = re.compile(
    r"^  (?P<name>\S+)\s+pid (?P<pid>\d+)\s+(?P<address>\S+)(?:  internal (?P<internal>\S+))?$",
    re.MULTILINE,
)
READY_LINE = "Ctrl-C stops everything."


@dataclass
class ClusterChild:
    name: str
    pid: int
    address: str
    internal: str | None = None

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1].split("/", 1)[0])


@dataclass
class ClusterProcess:
    """One ``python -m gateway cluster`` run; ``start()`` returns once it announced itself."""

    replicas: int = 3
    settings: dict[str, str | int | float | bool] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    children: dict[str, ClusterChild] = field(default_factory=dict)

    def __post_init__(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="gw-cluster-test-"))
        self.stdout_path = directory / "stdout"
        self.stderr_path = directory / "stderr"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self, *args: str) -> None:
        command = [sys.executable, "-m", "gateway", "cluster", "--port", str(self.port)]
        command += ["--replicas", str(self.replicas), "--log-level", "warning", *args]
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                command,
                env=gateway_env(**self.settings),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )

    def start(self, *args: str, timeout: float = 45.0) -> ClusterProcess:
        self.launch(*args)
        wait_until_sync(self._announced, timeout, "gateway cluster to announce itself")
        self.children = {
            match["name"]: ClusterChild(
                match["name"], int(match["pid"]), match["address"], match["internal"]
            )
            for match in CHILD_LINE.finditer(self.stdout())
        }
        return self

    def _announced(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"gateway cluster exited early:\n{self.output()}")
        return READY_LINE in self.stdout()

    def replica_names(self) -> set[str]:
        return {name for name in self.children if name.startswith("gateway-")}

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout()}\n--- stderr\n{self.stderr()[-4000:]}"

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        """Clean-up after a failed test: SIGTERM, then SIGKILL every process it started."""
        if self.process is None:
            return
        leftovers = descendants(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for pid in alive(leftovers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running.add(pid)
    return running
