"""``gateway serve`` with instruments the bench reads from outside, chosen by environment.

Run as ``python -m bench.instrumented serve ...`` (the arguments of ``python -m gateway``),
or ``python -m bench.instrumented --module bench.servers.bare --port ...`` for another
server; the server itself is unchanged. What the environment turns on:

- ``BENCH_INSTRUMENT_DIR=DIR``: every garbage collection's pause (from `gc.callbacks`),
  by generation, and the event loop's lag (how late a 10 ms sleep wakes up), with the
  worst of each; SIGUSR2 writes what was seen since the previous SIGUSR2 (or the start)
  to ``DIR/PID.json`` and starts a new window.
- ``BENCH_TRACEMALLOC=FRAMES``: `tracemalloc` with that many frames per allocation;
  SIGUSR1 writes a snapshot to ``BENCH_SNAPSHOT_DIR`` (``snapshot-N.pickle``) and a
  census of the objects the collector tracks, by type: count and `sys.getsizeof` bytes
  (``census-N.json``).
- ``BENCH_GC_FREEZE=1``: `gc.freeze()` once the replica has started (its start-up objects
  are never traversed again); ``BENCH_GC_FREEZE=full``: that, and again after every full
  collection (what survived one is not traversed by the next: a full collection then
  costs what was allocated since, not the whole heap); ``BENCH_GC_THRESHOLD=A,B,C``:
  `gc.set_threshold`.

`bench.memory_profile` and `bench.profile_hotpath` (``--instrumented``) use it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

LAG_INTERVAL = 0.01


class GcLog:
    """Pause of every collection, by generation."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.collected: dict[int, int] = {0: 0, 1: 0, 2: 0}
        self.worst: list[tuple[float, int, float]] = []

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        if self.started is None:
            return
        pause = time.perf_counter() - self.started
        generation = int(info["generation"])
        self.pauses[generation].append(pause)
        self.collected[generation] += int(info.get("collected", 0))
        if generation == 2 or pause > 0.01:
            self.worst.append((round(pause * 1e3, 3), generation, round(time.time(), 3)))
        self.started = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tracked_objects": len(gc.get_objects())}
        for generation, pauses in self.pauses.items():
            ordered = sorted(pauses)
            out[f"gen{generation}"] = {
                "count": len(ordered),
                "total_ms": round(sum(ordered) * 1e3, 3),
                "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 3) if ordered else None,
                "max_ms": round(ordered[-1] * 1e3, 3) if ordered else None,
                "collected": self.collected[generation],
            }
        out["worst"] = sorted(self.worst, reverse=True)[:20]
        out["threshold"] = gc.get_threshold()
        out["frozen"] = gc.get_freeze_count()
        return out


class LagLog:
    """How late the event loop runs a 10 ms sleep: stalls of the whole replica."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.worst: list[tuple[float, float]] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            lag = loop.time() - before - LAG_INTERVAL
            self.lags.append(lag)
            if lag > 0.05:
                self.worst.append((round(lag * 1e3, 1), round(time.time(), 3)))

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.lags)
        if not ordered:
            return {"samples": 0}

        def at(quantile: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1e3, 2)

        return {
            "samples": len(ordered),
            "p50_ms": at(0.5),
            "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1e3, 2),
            "over_50ms": len(self.worst),
            "worst": sorted(self.worst, reverse=True)[:20],
        }


def census() -> dict[str, list[int]]:
    """``{type: [count, bytes]}`` of every object the garbage collector tracks, with the
    bytes and str objects they refer to directly (those are not tracked themselves)."""
    counts: dict[str, list[int]] = {}
    seen: set[int] = set()
    for item in gc.get_objects():
        for thing in (item, *(ref for ref in gc.get_referents(item) if _untracked(ref))):
            if id(thing) in seen:
                continue
            seen.add(id(thing))
            name = f"{type(thing).__module__}.{type(thing).__qualname__}"
            entry = counts.setdefault(name, [0, 0])
            entry[0] += 1
            entry[1] += sys.getsizeof(thing)
    return counts


def _untracked(thing: object) -> bool:
    return isinstance(thing, (bytes, str, int, float, bytearray)) and not gc.is_tracked(thing)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--module":
        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        instrument(None)
        import runpy

        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    from gateway.cli import main as cli
    from gateway.replica import Replica

    instrument(Replica)
    return cli.main(sys.argv[1:])


def instrument(replica_class: Any) -> None:
    """Install what the environment asks for; hooks `Replica.start` when given it."""
    directory = os.environ.get("BENCH_INSTRUMENT_DIR")
    frames = os.environ.get("BENCH_TRACEMALLOC")
    threshold = os.environ.get("BENCH_GC_THRESHOLD")
    freeze = os.environ.get("BENCH_GC_FREEZE", "")
    logs = [GcLog(), LagLog()] if directory else None
    if logs is not None:
        gc.callbacks.append(lambda phase, info: logs[0].callback(phase, info))
    if freeze == "full":

        def freeze_after_full(phase: str, info: dict[str, Any]) -> None:
            if phase == "stop" and info["generation"] == 2:
                gc.freeze()

        gc.callbacks.append(freeze_after_full)
    if threshold:
        gc.set_threshold(*(int(part) for part in threshold.split(",")))
    if frames:
        tracemalloc.start(int(frames))
        snapshots = Path(os.environ.get("BENCH_SNAPSHOT_DIR", "."))
        taken = [0]

        def snapshot(signum: int, frame: FrameType | None) -> None:
            taken[0] += 1
            gc.collect()
            tracemalloc.take_snapshot().dump(str(snapshots / f"snapshot-{taken[0]}.pickle"))
            (snapshots / f"census-{taken[0]}.json").write_text(json.dumps(census()))
            (snapshots / f"snapshot-{taken[0]}.done").write_text("ok\n")

        signal.signal(signal.SIGUSR1, snapshot)

    def write_logs(*_: Any) -> None:
        if logs is None or directory is None:
            return
        window = {"gc": logs[0].summary(), "lag": logs[1].summary()}
        logs[0] = GcLog()
        logs[1].lags, logs[1].worst = [], []
        path = Path(directory) / f"{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(window, indent=2) + "\n")
        temporary.replace(path)

    signal.signal(signal.SIGUSR2, write_logs)

    if replica_class is None:
        return
    original_start = replica_class.start
    lag_tasks: list[asyncio.Task[None]] = []

    async def start(self: Any) -> None:
        await original_start(self)
        if logs is not None:
            lag_tasks.append(asyncio.get_running_loop().create_task(logs[1].run()))
        if freeze:
            gc.collect()
            gc.freeze()

    replica_class.start = start


if __name__ == "__main__":
    sys.exit(main())
