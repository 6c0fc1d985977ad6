"""What one idle subscribed connection holds in a server replica, by measurement.

``python -m bench.memory_profile`` starts a throwaway Redis and ONE replica of the server
(``--server gateway`` or ``bare``) under `bench.instrumented` with `tracemalloc` on,
connects ``--first`` subscribers of one channel (so that what is allocated once is
allocated), takes a snapshot, connects ``--more`` subscribers, takes another, and prints
per added connection:

- the resident memory it added (RSS; tracemalloc's own bookkeeping inflates it, so read
  the bench's ``memory`` workload for the figure itself);
- the Python allocations it added, grouped by the traceback that made them (the top
  ``--top`` groups, each with the frames that say where it comes from);
- the objects the garbage collector tracks, by type: count and `sys.getsizeof` bytes per
  connection.

Every wait is bounded: connecting by the bench's connect timeout, a snapshot by
`SNAPSHOT_TIMEOUT`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.loadgen.pool import LoadGenerator
from bench.measure import Setup, subscribe, wait_until_idle
from bench.processes import KINDS, RedisProcess, ServerKind
from bench.profiles import FULL
from bench.system import placement, rss_bytes

CHANNEL = "idle"
SNAPSHOT_TIMEOUT = 300.0
SETTLE_SECONDS = 2.0


def instrumented(kind: ServerKind, frames: int, directory: Path) -> ServerKind:
    """``kind`` run under `bench.instrumented` with tracemalloc on."""
    if kind.name == "gateway":
        module = ["bench.instrumented", *kind.module[1:]]
    else:
        module = ["bench.instrumented", "--module", *kind.module]
    env = {
        **kind.env,
        "BENCH_TRACEMALLOC": str(frames),
        "BENCH_SNAPSHOT_DIR": str(directory),
    }
    return dataclasses.replace(kind, module=module, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_profile", description=__doc__)
    parser.add_argument("--server", default="gateway", choices=("gateway", "bare"))
    parser.add_argument("--first", type=int, default=300)
    parser.add_argument("--more", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--root", default=None, help="run the server from this tree")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    kind = instrumented(KINDS[args.server], args.frames, directory)
    if args.root:
        kind = dataclasses.replace(kind, root=str(Path(args.root).resolve()))
    cpus = placement(True, None, "off")
    if cpus.loadgen:
        os.sched_setaffinity(0, cpus.loadgen)
    profile = dataclasses.replace(FULL, replicas=1, connect_timeout=60)
    redis = RedisProcess(cpus.loadgen)
    loadgen = LoadGenerator(2, cpus.loadgen)
    try:
        setup = Setup(kind, profile, redis, loadgen, cpus, _log)
        with setup.replicas(1, 1) as rig:
            pid = rig.servers.replicas[0].pid
            subscribe(rig, [CHANNEL], args.first)
            wait_until_idle(rig)
            time.sleep(SETTLE_SECONDS)
            rss_before = rss_bytes(pid)
            first = _snapshot(pid, directory, 1)
            subscribe(rig, [CHANNEL], args.more)
            wait_until_idle(rig)
            time.sleep(SETTLE_SECONDS)
            rss_after = rss_bytes(pid)
            second = _snapshot(pid, directory, 2)
    finally:
        loadgen.stop()
        redis.stop()
    result = report(first, second, args.more, rss_after - rss_before, args.top)
    print(result["text"])
    if args.json:
        Path(args.json).write_text(json.dumps(result["figures"], indent=2) + "\n")
    return 0


def _snapshot(pid: int, directory: Path, number: int) -> tuple[tracemalloc.Snapshot, Any]:
    os.kill(pid, signal.SIGUSR1)
    done = directory / f"snapshot-{number}.done"
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    while not done.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no snapshot from {pid} within {SNAPSHOT_TIMEOUT:.0f} s")
        time.sleep(0.2)
    snapshot = tracemalloc.Snapshot.load(str(directory / f"snapshot-{number}.pickle"))
    census = json.loads((directory / f"census-{number}.json").read_text())
    return snapshot, census


def report(
    first: tuple[tracemalloc.Snapshot, Any],
    second: tuple[tracemalloc.Snapshot, Any],
    added: int,
    rss_growth: int,
    top: int,
) -> dict[str, Any]:
    (before, census_before), (after, census_after) = first, second
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(filters), after.filter_traces(filters)
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    lines = [
        f"per added connection ({added:,} added): RSS {rss_growth / added / 1024:.2f} KiB, "
        f"Python allocations {total / added / 1024:.2f} KiB (tracemalloc)",
        f"\ntop {top} allocation sites by bytes per connection (traceback, innermost last):",
    ]
    groups = []
    for stat in after.compare_to(before, "traceback")[:top]:
        per = stat.size_diff / added
        count = stat.count_diff / added
        frames = [f"{_where(frame.filename)}:{frame.lineno}" for frame in stat.traceback]
        groups.append({"bytes": round(per, 1), "blocks": round(count, 2), "frames": frames})
        lines.append(f"  {per:8.1f} B  {count:5.2f} blocks  " + " <- ".join(reversed(frames[-4:])))
    types = []
    for name, (count, size) in census_after.items():
        old_count, old_size = census_before.get(name, (0, 0))
        per_count, per_size = (count - old_count) / added, (size - old_size) / added
        if per_count >= 0.5 or per_size >= 16:
            types.append((per_size, per_count, name))
    types.sort(reverse=True)
    lines.append("\nobjects per connection, by type (count, sys.getsizeof bytes):")
    for per_size, per_count, name in types[:top]:
        lines.append(f"  {per_count:6.2f}  {per_size:8.1f} B  {name}")
    lines.append(f"  total of the types above: {sum(t[0] for t in types):.0f} B")
    figures = {
        "added": added,
        "rss_kib_per_connection": rss_growth / added / 1024,
        "traced_kib_per_connection": total / added / 1024,
        "sites": groups,
        "types": [
            {"type": name, "count": round(count, 2), "bytes": round(size, 1)}
            for size, count, name in types
        ],
    }
    return {"text": "\n".join(lines), "figures": figures}


def _where(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "gateway", "bench", "lib"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            tail = parts[index + 1 :] if anchor in ("site-packages", "lib") else parts[index:]
            return "/".join(tail[-3:])
    return "/".join(parts[-2:])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
