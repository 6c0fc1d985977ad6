"""``python -m bench``: run every workload against every server and write the results."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import nodejs, report
from bench.connections import loadgen_processes_needed
from bench.loadgen.pool import LoadGenerator
from bench.processes import KINDS, RedisProcess
from bench.profiles import PROFILES, Profile
from bench.rounds import combine
from bench.system import SPILL_MODES, machine, placement
from bench.workloads import (
    WORKLOADS,
    busy_warnings,
    loss_warnings,
    reset_loadgen,
    run_kind,
)

RESULTS = Path(__file__).resolve().parent / "results"
NEEDS = {"socketio": ("socketio", "python-socketio")}
"""Modules a server kind needs beyond the gateway's own dependencies."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; 0 when every selected server was measured in every round, else 1."""
    args = _parser().parse_args(argv)
    profile = _profile(args)
    servers = _names(args.servers, KINDS, "server")
    selected = set(_names(args.workloads, WORKLOADS, "workload"))
    scale_servers = _names(args.scale_servers, KINDS, "server")
    gateway_env = dict(item.partition("=")[::2] for item in args.gateway_env)
    results = run(
        profile,
        servers,
        selected,
        pin=not args.no_pin,
        rounds=args.rounds,
        gateway_env=gateway_env,
        scale_servers=scale_servers,
        server_cpus=args.server_cpus,
        spill=args.spill,
    )
    write(results, Path(args.output))
    print(report.markdown(results))
    failed = [name for name, data in results["servers"].items() if "errors" in data]
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "The gateway against a bare websockets + Redis relay, python-socketio and Node "
            "socket.io with the Redis adapter."
        ),
    )
    parser.add_argument("--smoke", action="store_true", help="small counts, well under a minute")
    parser.add_argument(
        "--servers", default=",".join(KINDS), help="comma-separated (default: %(default)s)"
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated (default: %(default)s)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a profile field, e.g. --set fanout_rate=50 (see bench/profiles.py)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every server's workloads, interleaved; figures are medians over rounds",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway replicas, e.g. GATEWAY_CONFIG=bench.toml",
    )
    parser.add_argument(
        "--scale-servers",
        default="gateway",
        help="comma-separated servers the scale workload measures (default: %(default)s)",
    )
    parser.add_argument("--output", default=str(RESULTS), help="directory for latest.{json,md,png}")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--server-cpus",
        type=int,
        default=None,
        metavar="N",
        help="CPUs for the servers (the highest N); the rest run the load generators and "
        "Redis (default: half, rounded up)",
    )
    parser.add_argument(
        "--spill",
        choices=SPILL_MODES,
        default="auto",
        help="at saturation, let the load generators also use the servers' idle CPU time, at "
        "idle priority (SCHED_IDLE), so that they can outrun the servers: on, off, or auto "
        "(only when other work on the machine is below 0.2 CPUs just before; default)",
    )
    return parser


def _profile(args: argparse.Namespace) -> Profile:
    profile = PROFILES["smoke" if args.smoke else "full"]
    types = {item.name: item.type for item in dataclasses.fields(Profile)}
    changes: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in types or key == "name":
            raise SystemExit(f"unknown profile field {key!r}; fields: {', '.join(types)}")
        try:
            changes[key] = _parse(str(types[key]), value)
        except ValueError:
            raise SystemExit(f"--set {item}: not a valid {types[key]}") from None
    return dataclasses.replace(profile, **changes)


def _parse(type_name: str, value: str) -> Any:
    if type_name == "float":
        return float(value)
    if type_name.startswith("tuple"):
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
        if not numbers or min(numbers) < 1:
            raise ValueError(value)
        return numbers
    return int(value)


def _names(text: str, known: Any, what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    profile: Profile,
    servers: list[str],
    selected: set[str],
    pin: bool,
    rounds: int = 1,
    gateway_env: dict[str, str] | None = None,
    scale_servers: list[str] | None = None,
    server_cpus: int | None = None,
    spill: str = "auto",
) -> dict[str, Any]:
    """Start Redis and the load generators once, then measure each server kind in turn,
    ``rounds`` times over (bare, gateway, socketio, node, bare, gateway, ...)."""
    kinds = dict(KINDS)
    if gateway_env:
        gateway = kinds["gateway"]
        kinds["gateway"] = dataclasses.replace(gateway, env={**gateway.env, **gateway_env})
    scaled = set(scale_servers if scale_servers is not None else ["gateway"])
    started = time.time()
    host = machine()
    try:
        cpus = placement(pin, server_cpus, spill)
    except ValueError as exc:
        raise SystemExit(f"--server-cpus: {exc}") from None
    if cpus.loadgen:
        os.sched_setaffinity(0, cpus.loadgen)
    entries: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for name in servers:
        entries[name] = {"label": kinds[name].label, "replicas": profile.replicas}
        missing = _missing(name)
        if missing:
            entries[name]["skipped"] = missing
            warnings.append(f"{name}: not measured: {missing}")
            _log(f"{name}: not measured: {missing}")
    if "node" in servers and "skipped" not in entries["node"]:
        host["node"] = nodejs.versions()
    results: dict[str, Any] = {
        "profile": profile.as_dict(),
        "rounds": rounds,
        "started_at": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "machine": host,
        "placement": {
            "servers": cpus.servers,
            "loadgen": cpus.loadgen,
            "spill": cpus.spill,
            "description": cpus.describe(),
        },
        "workloads": sorted(selected, key=WORKLOADS.index),
        "scale_servers": sorted(scaled & set(servers), key=servers.index),
        "gateway_env": kinds["gateway"].env,
        "servers": entries,
    }
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    processes = _loadgen_processes(profile, selected, cpus.loadgen)
    results["loadgen_processes"] = processes
    redis = RedisProcess(cpus.loadgen)
    loadgen = LoadGenerator(processes, cpus.loadgen)
    try:
        for number in range(1, rounds + 1):
            for name in servers:
                entry = entries[name]
                if "skipped" in entry:
                    continue
                kind = kinds[name]
                label = f"{name} (round {number})" if rounds > 1 else name
                _log(f"{label}: {kind.label}, {profile.replicas} processes")
                workloads = selected if name in scaled else selected - {"scale"}
                try:
                    result = run_kind(kind, profile, redis, loadgen, cpus, workloads, _log)
                except Exception as exc:
                    error = f"{label}: {type(exc).__name__}: {exc}"
                    entry.setdefault("errors", []).append(error)
                    warnings.append(f"FAILED: {error}")
                    _log(f"  failed: {error}")
                    reset_loadgen(loadgen, _log)
                    continue
                for workload, message in result.pop("failed", {}).items():
                    error = f"{label} {workload}: {message}"
                    entry.setdefault("errors", []).append(error)
                    warnings.append(f"FAILED: {error}")
                measured[name].append(result)
                warnings += loss_warnings(label, result) + busy_warnings(label, result)
    finally:
        loadgen.stop()
        redis.stop()
    for name, done in measured.items():
        if done:
            entries[name]["results"] = combine(done)
            entries[name]["rounds_measured"] = len(done)
            if rounds > 1:
                entries[name]["rounds"] = done
    results["comparisons"] = report.comparisons(entries)
    results["targets"] = report.target_checks(entries)
    results["warnings"] = warnings
    results["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    return results


def _missing(name: str) -> str | None:
    """Why server kind ``name`` cannot run here (installing what it needs first), or None."""
    if KINDS[name].runtime == "node":
        try:
            nodejs.ensure_installed()
        except nodejs.NodeUnavailable as exc:
            return str(exc)
        return None
    module, package = NEEDS.get(name, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{package} is not installed (pip install -e '.[bench]')"
    return None


def _loadgen_processes(profile: Profile, selected: set[str], cpus: list[int] | None) -> int:
    """The profile's count, else one per load-generator CPU (at least 2), and in any case
    enough that no process needs more sockets than it may open."""
    count = profile.loadgen_processes or max(2, len(cpus or [0]))
    if "connections" in selected:
        count = max(count, loadgen_processes_needed(profile.connections))
    return count


def write(results: dict[str, Any], directory: Path) -> None:
    """``latest.json``, ``latest.md`` and (with matplotlib) ``latest.png`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / "latest.md").write_text(report.markdown(results))
    if importlib.util.find_spec("matplotlib") is None:
        _log("matplotlib is not installed: no chart (pip install -e '.[bench]')")
        return
    from bench.chart import draw

    draw(results, directory / "latest.png")
