"""The bench's process plumbing, with real processes: open-file limits, CPU spilling, the
/readyz prober, and installing the Node peer from its lock file."""

from __future__ import annotations

import http.server
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("picows", reason="picows is in the bench extra: pip install -e '.[bench]'")

from bench import cli, nodejs
from bench.connections import Prober
from bench.loadgen.pool import LoadGenerator
from bench.processes import free_port
from bench.system import cpu_seconds, open_files_hard_limit, thread_cpu_seconds

ROOT = Path(__file__).resolve().parents[2]
LOW = 256


def soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


def lowered() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


needs_headroom = pytest.mark.skipif(
    open_files_hard_limit() <= LOW, reason="the hard open-files limit is already low"
)


def run_with_few_files(code: str) -> list[int]:
    """Run ``code`` in a Python whose soft open-files limit is LOW; the numbers it printed."""
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lowered,
    )
    assert run.returncode == 0, run.stderr
    return [int(value) for value in run.stdout.split()]


@needs_headroom
def test_a_process_raises_its_soft_open_files_limit_to_the_hard_one() -> None:
    code = "from bench.system import raise_open_files_limit as r; print(r())"
    assert run_with_few_files(code) == [open_files_hard_limit()]


CHILDREN_LIMITS = """
from bench.loadgen.pool import LoadGenerator
from bench.processes import KINDS, RedisProcess, ServerGroup
from tests.bench.test_processes import soft_open_files

redis = RedisProcess(None)
loadgen = LoadGenerator(1, None)
group = ServerGroup(KINDS["bare"], 1, redis.url, None)
try:
    print(soft_open_files(redis.process.pid), soft_open_files(group.pids[0]),
          soft_open_files(loadgen.pids[0]))
finally:
    group.stop()
    loadgen.stop()
    redis.stop()
"""


@needs_headroom
def test_redis_replicas_and_load_generators_may_open_as_many_files_as_allowed() -> None:
    """Started by a process whose soft limit is low, each of them raises its own."""
    hard = open_files_hard_limit()
    assert run_with_few_files(CHILDREN_LIMITS) == [hard, hard, hard]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_spilling_load_generators_run_at_idle_priority_and_come_back() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    loadgen = LoadGenerator(2, cpus[:1])
    try:
        pid = loadgen.pids[0]
        with loadgen.spilling(cpus[1:]):
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            assert os.sched_getaffinity(pid) == set(cpus)
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        assert os.sched_getaffinity(pid) == set(cpus[:1])
        with loadgen.spilling(None):
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        loadgen.stop()


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def readyz_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_prober_times_answers_and_counts_refusals(
    readyz_server: http.server.ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = readyz_server.server_address[1]
    ready = Prober(port, 0.0).run_count(5).summary()
    assert ready["probes"] == 5 and ready["failed"] == 0
    assert 0 < ready["p50"] <= ready["p99"] <= ready["max"]
    monkeypatch.setattr(_Readyz, "status", 503)
    draining = Prober(port, 0.0).run_count(3).summary()
    assert draining["failed"] == 3 and draining["first_failure"] == "status 503"
    nobody = Prober(free_port(), 0.0).run_count(1).summary()
    assert nobody["failed"] == 1 and "ConnectionRefusedError" in nobody["first_failure"]


def test_the_prober_thread_probes_until_stopped(
    readyz_server: http.server.ThreadingHTTPServer,
) -> None:
    prober = Prober(readyz_server.server_address[1], 0.01)
    prober.start()
    deadline = threading.Event()
    while len(prober.latencies) < 3 and not deadline.wait(0.01):
        pass
    prober.stop()
    count = len(prober.latencies)
    assert count >= 3
    assert len(prober.latencies) == count


@pytest.fixture
def node_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the Node peer's directory, for installing into."""
    for name in ("package.json", "package-lock.json"):
        shutil.copy(nodejs.NODE_DIR / name, tmp_path / name)
    monkeypatch.setattr(nodejs, "NODE_DIR", tmp_path)
    monkeypatch.setattr(nodejs, "LOCK_FILE", tmp_path / "package-lock.json")
    monkeypatch.setattr(nodejs, "MODULES", tmp_path / "node_modules")
    monkeypatch.setattr(nodejs, "STAMP", tmp_path / "node_modules" / ".bench-lock-sha256")
    return tmp_path


def test_the_install_is_current_only_for_the_lock_file_it_came_from(node_dir: Path) -> None:
    assert not nodejs.installed()
    nodejs.MODULES.mkdir()
    nodejs.STAMP.write_text(nodejs._lock_hash() + "\n")
    assert nodejs.installed()
    lock = node_dir / "package-lock.json"
    lock.write_text(lock.read_text().replace('"lockfileVersion"', '"lockfileVersion" ', 1))
    assert not nodejs.installed()


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_a_failed_npm_ci_says_why_and_leaves_no_stamp(node_dir: Path) -> None:
    manifest = node_dir / "package.json"
    manifest.write_text(manifest.read_text().replace('"redis": "^4.7.1"', '"redis": "^3.0.0"'))
    with pytest.raises(nodejs.NodeUnavailable, match="npm ci failed"):
        nodejs.ensure_installed(timeout=120)
    assert not nodejs.STAMP.exists()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_without_npm_the_node_peer_is_skipped_with_the_reason(
    node_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        nodejs.shutil, "which", lambda name: None if name == "npm" else real_which(name)
    )
    assert cli._missing("node") == "npm is not installed (it installs the Node peer's packages)"


def test_without_node_the_node_peer_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nodejs.shutil, "which", lambda name: None)
    reason = cli._missing("node")
    assert reason is not None and reason.startswith("node is not installed")


def test_thread_cpu_time_agrees_with_the_ticks_and_is_finer() -> None:
    pid = os.getpid()
    fine, coarse = thread_cpu_seconds(pid), cpu_seconds(pid)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    fine, coarse = thread_cpu_seconds(pid) - fine, cpu_seconds(pid) - coarse
    assert 0.25 < fine < 0.6
    assert abs(fine - coarse) < 0.05
    assert fine != round(fine, 2)
