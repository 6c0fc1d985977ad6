"""Profile one server replica under a bench load: where its CPU goes, by measurement.

``python -m bench.profile_hotpath --workload saturation`` starts a throwaway Redis, the
server replicas (``--server gateway``, 2 by default, pinned as the bench pins them) and
the bench's load generator, subscribes the fan-out set, then runs the workload while a
profiler samples the first replica:

- ``--profiler py-spy`` (default): Python frames, and with ``--native`` the C frames under
  them (uvloop, the interpreter, libc); printed as the top functions by own samples and
  by inclusive samples, each also in µs per delivery (the replica's CPU per delivery
  times the function's share of the samples).
- ``--profiler perf``: ``perf record -e cpu-clock -g`` of the replica, printed by shared
  object (user space libraries vs the kernel) and by symbol; kernel time is where the
  socket writes go.
- ``--profiler none``: just the figures of the run (the bench's CPU per delivery).

Workloads: ``fanout`` (a fixed rate to one channel), ``saturation`` (as fast as
acknowledged), ``connections`` (``--subscribers`` on ONE replica at ``--rate``, with
``GET /readyz`` probed as the bench's connections workload does). Every wait is bounded:
the workload by ``--seconds`` and the bench's drain deadline, the profiler by a timeout.

``--root DIR`` runs the server from another copy of the tree (DIR holds ``gateway/``):
the same load against a patched gateway, for before/after figures in one session.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.connections import Prober, loadgen_processes_needed
from bench.loadgen.pool import LoadGenerator
from bench.measure import Setup, deliveries, idle_connections, subscribe, wait_until_idle
from bench.processes import KINDS, RedisProcess, ServerKind
from bench.profiles import FULL
from bench.system import placement

CHANNEL = "fanout"
ROOMS = 500
PROFILER_GRACE = 20.0
"""Seconds the profiler may take to write its output after the workload."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result = run(args)
    print(json.dumps(result["figures"], indent=2))
    if result.get("profile"):
        print(result["profile"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_hotpath", description=__doc__)
    parser.add_argument("--server", default="gateway", choices=sorted(KINDS))
    parser.add_argument(
        "--workload",
        default="saturation",
        choices=("fanout", "saturation", "connections", "idle", "connect"),
    )
    parser.add_argument("--replicas", type=int, default=None, help="default 2 (1: connections)")
    parser.add_argument("--subscribers", type=int, default=None, help="default 1000 (15000)")
    parser.add_argument("--rate", type=float, default=None, help="fixed rate (fanout: 10/s)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--profiler", default="py-spy", choices=("py-spy", "perf", "none"))
    parser.add_argument("--native", action="store_true", help="py-spy: C frames too")
    parser.add_argument("--samples", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--root", default=None, help="run the server from this tree")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--keep", default=None, help="directory for the raw profile")
    parser.add_argument("--json", default=None, help="write figures and profile here")
    parser.add_argument(
        "--instrumented",
        action="store_true",
        help="run the server under bench.instrumented: GC pauses and event-loop lag of the "
        "profiled replica during the workload (BENCH_* settings via --gateway-env)",
    )
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    workload = args.workload
    replicas = args.replicas or (1 if workload == "connections" else 2)
    subscribers = args.subscribers or {"connections": 15_000, "connect": 5000}.get(workload, 1000)
    profile = dataclasses.replace(
        FULL, replicas=replicas, fanout_subscribers=subscribers, connections=subscribers
    )
    kind = KINDS[args.server]
    env = dict(item.partition("=")[::2] for item in args.gateway_env)
    if env:
        kind = dataclasses.replace(kind, env={**kind.env, **env})
    if args.root:
        kind = dataclasses.replace(kind, root=str(Path(args.root).resolve()))
    logs = Path(tempfile.mkdtemp(prefix="bench-instruments-"))
    if args.instrumented:
        kind = _instrumented(kind, logs)
    cpus = placement(not args.no_pin, None, "off")
    if cpus.loadgen:
        os.sched_setaffinity(0, cpus.loadgen)
    loadgens = max(2, loadgen_processes_needed(subscribers))
    redis = RedisProcess(cpus.loadgen)
    loadgen = LoadGenerator(loadgens, cpus.loadgen)
    log = _log
    try:
        setup = Setup(kind, profile, redis, loadgen, cpus, log)
        publishers = replicas * profile.publishers_per_replica
        with setup.replicas(replicas, publishers) as rig:
            wait_until_idle(rig)
            if workload != "connect":
                started = time.monotonic()
                connected = subscribe(rig, [CHANNEL], subscribers, tolerate=True)
                log(f"{connected['connected']:,} subscribers in {time.monotonic() - started:.1f} s")
                wait_until_idle(rig)
            target = rig.servers.replicas[0]
            profiler = Profiler(args, target.pid, cpus.loadgen)
            prober = Prober(target.port, 0.1) if workload == "connections" else None
            profiler.start()
            if prober is not None:
                prober.start()
            if args.instrumented:
                _instruments(rig, logs)  # the window starts now
            io_before = syscalls(target.pid)
            try:
                figures = _workload(rig, args, workload, subscribers)
            finally:
                io_after = syscalls(target.pid)
                if prober is not None:
                    prober.stop()
                profiler.stop()
            received = figures["replica_deliveries"][0]
            figures["profiled_replica_syscalls"] = {
                key: io_after[key] - io_before[key] for key in io_after
            }
            if received:
                figures["profiled_replica_writes_per_delivery"] = (
                    io_after["syscw"] - io_before["syscw"]
                ) / received
            if prober is not None:
                figures["readyz_ms"] = prober.summary()
            if args.instrumented:
                figures["instruments"] = _instruments(rig, logs)
            per_delivery = figures.get("server_cpu_us_per_delivery")
            if workload == "idle":
                per_delivery = figures["replica_cpu_s"][0] / args.seconds * 1e3
            elif workload == "connect":
                per_delivery = figures["server_cpu_ms_per_connection"] * 1e3
            share = figures["replica_cpu_s"][0] / max(sum(figures["replica_cpu_s"]), 1e-9)
            figures["profiled_replica_cpu_share"] = share
            report = profiler.report(args.top, per_delivery)
    finally:
        loadgen.stop()
        redis.stop()
    return {"figures": _brief(figures), "profile": report, "raw": profiler.kept}


def _instrumented(kind: ServerKind, logs: Path) -> ServerKind:
    """``kind`` under `bench.instrumented`, each replica logging GC pauses and loop lag."""
    if kind.name == "gateway":
        module = ["bench.instrumented", *kind.module[1:]]
    else:
        module = ["bench.instrumented", "--module", *kind.module]
    env = {"BENCH_INSTRUMENT_DIR": str(logs), **kind.env}
    return dataclasses.replace(kind, module=module, env=env)


def _instruments(rig: Any, logs: Path) -> dict[str, Any]:
    """What each instrumented replica logged since the previous call (SIGUSR2 writes
    the window and starts the next)."""
    for item in logs.glob("*.json"):
        item.unlink()
    for replica in rig.servers.replicas:
        os.kill(replica.pid, signal.SIGUSR2)
    found = {}
    deadline = time.monotonic() + 10
    for replica in rig.servers.replicas:
        path = logs / f"{replica.pid}.json"
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if path.exists():
            found[replica.node] = json.loads(path.read_text())
    return found


def syscalls(pid: int) -> dict[str, int]:
    """Read and write system calls of a process so far (``/proc/PID/io``: ``syscr``,
    ``syscw``; socket sends through write/writev count as writes)."""
    counts = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("syscr", "syscw"):
            counts[key] = int(value)
    return counts


def _workload(rig: Any, args: argparse.Namespace, workload: str, subscribers: int) -> Any:
    seconds = args.seconds
    loadgen = rig.loadgen
    if workload == "idle":
        return _idle(rig, seconds)
    if workload == "connect":
        return _connect(rig, subscribers)
    if workload == "saturation":
        return deliveries(
            rig,
            lambda: loadgen.saturate([CHANNEL], seconds, rig.profile.saturation_window, 10),
            per_publication=subscribers,
            offered_rate=None,
        )
    rate = args.rate or (10.0 if workload == "fanout" else 2.0)
    count = max(1, round(rate * seconds))
    return deliveries(
        rig,
        lambda: loadgen.publish([CHANNEL], rate, count, timeout=10),
        per_publication=subscribers,
        offered_rate=rate,
    )


def _idle(rig: Any, seconds: float) -> dict[str, Any]:
    """Nothing published for ``seconds``: what the replicas spend on their own (pings,
    heartbeats, timers) with the subscribers connected."""
    before = [*rig.servers.cpu_by_replica()]
    time.sleep(seconds)
    used = [
        after - start for after, start in zip(rig.servers.cpu_by_replica(), before, strict=True)
    ]
    return {
        "seconds": seconds,
        "replica_cpu_s": [round(value, 3) for value in used],
        "replica_cpu_ms_per_s": [round(value / seconds * 1e3, 2) for value in used],
        "replica_deliveries": [0] * len(used),
    }


def _connect(rig: Any, count: int) -> dict[str, Any]:
    """Connect ``count`` subscribers over `ROOMS` channels (as the bench's connect and
    memory workloads do): connections/s, server CPU per connection, RSS per connection."""
    rooms = [f"room-{index}" for index in range(ROOMS)]
    before = rig.servers.cpu_by_replica()
    rate, memory = idle_connections(rig, rooms, count)
    used = [
        after - start for after, start in zip(rig.servers.cpu_by_replica(), before, strict=True)
    ]
    return {
        **rate,
        "kib_per_connection": memory["kib_per_connection"],
        "baseline_mib": memory["baseline_mib"],
        "loaded_mib": memory["loaded_mib"],
        "replica_cpu_s": [round(value, 3) for value in used],
        "replica_deliveries": [0] * len(used),
    }


BRIEF = (
    "connections",
    "connections_per_s",
    "server_cpu_ms_per_connection",
    "kib_per_connection",
    "baseline_mib",
    "loaded_mib",
    "replica_cpu_ms_per_s",
    "publications",
    "expected",
    "received",
    "lost",
    "seconds",
    "deliveries_per_s",
    "latency_ms",
    "server_cpu_us_per_delivery",
    "loadgen_cpu_us_per_delivery",
    "server_cpu_share",
    "loadgen_level",
    "limited_by",
    "other_work_cpus",
    "replica_cpu_s",
    "readyz_ms",
    "profiled_replica_cpu_share",
    "replica_deliveries",
    "profiled_replica_syscalls",
    "profiled_replica_writes_per_delivery",
    "instruments",
)


def _brief(figures: dict[str, Any]) -> dict[str, Any]:
    return {key: figures[key] for key in BRIEF if key in figures}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Profiler:
    """py-spy or perf attached to one process for the length of a workload."""

    def __init__(self, args: argparse.Namespace, pid: int, cpus: list[int] | None) -> None:
        self.kind = args.profiler
        self.native = args.native
        self.rate = args.samples
        self.pid = pid
        self.cpus = cpus
        self.dir = Path(args.keep or tempfile.mkdtemp(prefix="bench-profile-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kept: str | None = None
        self.errors = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.kind == "none":
            return
        if self.kind == "py-spy":
            binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            output = self.dir / "profile.txt"
            command = [
                binary,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(output),
            ]
            # native stacks need the target paused while sampled
            command.append("--native" if self.native else "--nonblocking")
        else:
            output = self.dir / "perf.data"
            command = [
                "perf",
                "record",
                "-e",
                "cpu-clock",
                "-F",
                str(self.rate),
                "-g",
                "-p",
                str(self.pid),
                "-o",
                str(output),
            ]
        self.kept = str(output)
        cpus = self.cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pin
        )
        time.sleep(1.0)  # let it attach before the load begins

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        process.send_signal(2)  # SIGINT: both write their output and exit
        try:
            process.wait(PROFILER_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        assert process.stderr is not None
        self.errors = process.stderr.read().decode(errors="replace")

    def report(self, top: int, us_per_delivery: float | None) -> str | None:
        if self.kind == "none" or self.kept is None:
            return None
        if not Path(self.kept).exists():
            return f"{self.kind} wrote nothing; its output:\n{self.errors}"
        if self.kind == "py-spy":
            return collapsed_report(Path(self.kept).read_text(), top, us_per_delivery)
        return perf_report(self.kept, top)


def collapsed_report(text: str, top: int, us_per_delivery: float | None) -> str:
    """Top functions of a collapsed-stack profile (``frame;frame;frame count`` lines)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if frame]
        if not frames:
            continue
        if frames[-1].split(" (")[0] in IDLE_FRAMES:
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples on CPU ({idle} more waiting in epoll, left out)"]
    for title, counter in (("own", own), ("inclusive", inclusive)):
        lines.append(f"\ntop {top} by {title} samples:")
        for frame, count in counter.most_common(top):
            share = count / max(total, 1)
            cost = f"  {share * us_per_delivery:6.2f} µs/delivery" if us_per_delivery else ""
            lines.append(f"  {share:6.1%}{cost}  {frame}")
    return "\n".join(lines)


IDLE_FRAMES = frozenset({"epoll_pwait", "epoll_wait", "epoll_pwait2"})
"""Native leaf frames of a thread waiting for events: py-spy --native samples them too."""


def _short(frame: str) -> str:
    """``function (path/to/module.py:line)`` as ``function (module.py)``: one entry per
    function, whatever line a sample was on."""
    frame = frame.strip()
    if frame.startswith("process ") or frame.startswith("thread "):
        return ""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if short else name


def perf_report(data: str, top: int) -> str:
    """``perf report`` of a recording: by shared object, then by symbol (own time)."""
    sections = []
    for sort in ("dso", "dso,sym"):
        output = subprocess.run(
            [
                "perf",
                "report",
                "-i",
                data,
                "--stdio",
                "--no-children",
                "--sort",
                sort,
                "-g",
                "none",
                "--percent-limit",
                "0.5",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ).stdout
        rows = [line for line in output.splitlines() if line and not line.startswith("#")]
        sections.append(f"by {sort}:\n" + "\n".join(rows[:top]))
    return "\n\n".join(sections)


if __name__ == "__main__":
    sys.exit(main())
