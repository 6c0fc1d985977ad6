"""The machine the bench runs on: its description, CPU placement, and /proc readings."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

LIBRARIES = (
    "fastapi",
    "uvicorn",
    "websockets",
    "redis",
    "orjson",
    "uvloop",
    "python-socketio",
    "python-engineio",
    "picows",
)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads, to the nanosecond (``/proc/PID/task/*/schedstat``).

    Far finer than `cpu_seconds` (whole clock ticks), for a process that uses little CPU;
    right only for a process whose threads live as long as it does (redis-server), since
    the time of a thread that exited is no longer listed. Falls back to `cpu_seconds`.
    """
    try:
        return (
            sum(
                int((task / "schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        return cpu_seconds(pid)


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy so far, over all CPUs (``/proc/stat``).

    Compared with what the bench's own processes used, it tells how much other work ran.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``/proc/PID/statm``)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new limit.

    Thousands of connections need thousands of descriptors; many systems start processes
    with a soft limit of 1,024 and a much higher hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = open_files_hard_limit()
    if soft != target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_files_hard_limit() -> int:
    """The most open files this process and its children may each have."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        return hard
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        return 1 << 20


@dataclass(frozen=True)
class Placement:
    """Which CPUs the servers and the load generators (with Redis) may run on.

    ``spill``: whether at saturation the load generators may also run on the servers' CPUs,
    at idle priority (they take only time the servers leave unused): ``on``, ``off``, or
    ``auto`` (when the machine is quiet just before).
    """

    servers: list[int] | None
    loadgen: list[int] | None
    spill: str = "off"

    def describe(self) -> str:
        if self.servers is None or self.loadgen is None:
            return "not pinned (one CPU available)"
        text = (
            f"servers on CPU {_cpu_list(self.servers)}; load generators, Redis and the "
            f"coordinator on CPU {_cpu_list(self.loadgen)}"
        )
        if self.spill != "off":
            when = "when the machine is otherwise quiet, " if self.spill == "auto" else ""
            text += (
                f"; at saturation, {when}the load generators may also use the servers' idle "
                f"time on CPU {_cpu_list(self.servers)} (SCHED_IDLE)"
            )
        return text


SPILL_MODES = ("auto", "on", "off")


def placement(pin: bool = True, server_cpus: int | None = None, spill: str = "off") -> Placement:
    """Split the CPUs this process may use: the upper ones (half of them unless
    ``server_cpus`` says how many) for the servers, the rest for the load generators, so
    neither steals the other's cycles. No pinning with one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return Placement(None, None)
    count = len(cpus) - len(cpus) // 2 if server_cpus is None else server_cpus
    if not 1 <= count < len(cpus):
        raise ValueError(f"the servers need 1 to {len(cpus) - 1} of the {len(cpus)} CPUs")
    split = len(cpus) - count
    return Placement(servers=cpus[split:], loadgen=cpus[:split], spill=spill)


def _cpu_list(cpus: list[int]) -> str:
    return ",".join(str(cpu) for cpu in cpus)


def machine() -> dict[str, object]:
    """CPU model, cores, memory, kernel, Python and library versions, load average."""
    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "redis_server": _redis_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _redis_version() -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    output = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    for part in output.split():
        if part.startswith("v="):
            return part[2:]
    return output.strip() or None
