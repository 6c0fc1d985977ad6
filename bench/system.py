"""The machine the bench runs on: its description, CPU placement, and /proc readings."""

from __future__ import annotations

import importlib.metadata
import os
import platform
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


@dataclass(frozen=True)
class Placement:
    """Which CPUs the servers (and Redis) and the load generators may run on."""

    servers: list[int] | None
    loadgen: list[int] | None

    def describe(self) -> str:
        if self.servers is None or self.loadgen is None:
            return "not pinned (one CPU available)"
        return (
            f"servers on CPU {_cpu_list(self.servers)}; load generators, Redis and the "
            f"coordinator on CPU {_cpu_list(self.loadgen)}"
        )


def placement(pin: bool = True) -> Placement:
    """Split the CPUs this process may use: the upper half for the servers, the rest for
    load generators, so neither steals the other's cycles. No pinning with one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return Placement(None, None)
    half = len(cpus) // 2
    return Placement(servers=cpus[half:], loadgen=cpus[:half])


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
