"""Before/after figures of gateway trees under the same load, interleaved in one session.

``python -m bench.ab base=/tmp/base after=/tmp/patched --workload saturation --rounds
3`` (trees first, then the options of `bench.profile_hotpath`) runs
`bench.profile_hotpath` (no profiler) once per tree per round, in the order given, round
after round (A B A B ...), each run on fresh replicas, Redis and load generators; then
prints, per tree, the median and the spread (min-max) of each figure over its rounds,
and each tree's median divided by the first tree's. A tree is a directory holding
``gateway/`` (``client/`` too, for the browser client the app serves); ``.`` is this
one; ``NAME=@bare`` (any server kind after ``@``) runs that server as a reference beside
them. With ``--instrumented`` the table also has the cyclic collector's time and worst
pause.

On a shared machine figures move between runs: interleaving spreads the disturbance over
every tree, the medians over rounds keep one disturbed run from deciding, and the
``other work`` column says how busy the rest of the machine was.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import profile_hotpath

FIGURES = (
    ("server_cpu_us_per_delivery", "server µs/delivery"),
    ("profiled_replica_writes_per_delivery", "writes/delivery"),
    ("deliveries_per_s", "deliveries/s"),
    ("p99_ms", "p99 ms"),
    ("readyz_p50_ms", "readyz p50 ms"),
    ("readyz_p99_ms", "readyz p99 ms"),
    ("connections_per_s", "connections/s"),
    ("server_cpu_ms_per_connection", "server ms/connection"),
    ("kib_per_connection", "KiB/connection"),
    ("replica_cpu_ms_per_s", "idle ms/s"),
    ("gc_ms", "GC ms (all replicas)"),
    ("gc_worst_ms", "worst GC pause ms"),
    ("other_work_cpus", "other work"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("trees", nargs="+", metavar="NAME=DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="write every run's figures here")
    args, rest = parser.parse_known_args(argv)
    trees = [item.partition("=")[::2] for item in args.trees]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    for number in range(1, args.rounds + 1):
        for name, root in trees:
            print(f"round {number}: {name}", file=sys.stderr, flush=True)
            where = (
                ["--server", root[1:]]
                if root.startswith("@")
                else ["--root", str(Path(root).resolve())]
            )
            options = profile_hotpath._parser().parse_args([*rest, "--profiler", "none", *where])
            figures = profile_hotpath.run(options)["figures"]
            runs[name].append(flatten(figures))
            print(f"  {json.dumps(runs[name][-1])}", file=sys.stderr, flush=True)
    print(table(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n")
    return 0


def flatten(figures: dict[str, Any]) -> dict[str, float]:
    """The figures `FIGURES` names, from one run of `bench.profile_hotpath`."""
    flat = {key: figures[key] for key, _ in FIGURES if isinstance(figures.get(key), int | float)}
    latency = figures.get("latency_ms") or {}
    if latency.get("p99") is not None:
        flat["p99_ms"] = latency["p99"]
    readyz = figures.get("readyz_ms") or {}
    for quantile in ("p50", "p99"):
        if readyz.get(quantile) is not None:
            flat[f"readyz_{quantile}_ms"] = readyz[quantile]
    pauses = [
        generation
        for replica in (figures.get("instruments") or {}).values()
        for name, generation in replica["gc"].items()
        if name.startswith("gen")
    ]
    if pauses:
        flat["gc_ms"] = sum(generation["total_ms"] for generation in pauses)
        flat["gc_worst_ms"] = max(generation["max_ms"] or 0.0 for generation in pauses)
    if "replica_cpu_ms_per_s" in figures:
        flat["replica_cpu_ms_per_s"] = statistics.mean(figures["replica_cpu_ms_per_s"])
    return flat


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    names = list(runs)
    first = names[0]
    present = [item for item in FIGURES if any(item[0] in run for r in runs.values() for run in r)]
    header = "| figure | " + " | ".join(f"{name} (median, min-max)" for name in names)
    header += " | " + " | ".join(f"{name} ÷ {first}" for name in names[1:]) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(names) - 1)]
    for key, label in present:
        medians = {}
        cells = []
        for name in names:
            values = [run[key] for run in runs[name] if key in run]
            if not values:
                cells.append("-")
                continue
            medians[name] = statistics.median(values)
            cells.append(f"{_fmt(medians[name])} ({_fmt(min(values))}-{_fmt(max(values))})")
        ratios = [
            f"{medians[name] / medians[first]:.2f}×"
            if name in medians and medians.get(first)
            else "-"
            for name in names[1:]
        ]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


if __name__ == "__main__":
    sys.exit(main())
