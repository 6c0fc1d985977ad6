"""Turning one run's results into ratios, target checks and a Markdown report."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REFERENCE = "bare"
SUBJECT = "gateway"
PEER = "socketio"


@dataclass(frozen=True)
class Metric:
    """One figure of one workload, as the report shows it."""

    workload: str
    path: str
    label: str
    fmt: str
    better: str | None
    """``higher`` or ``lower``; None for counts that get no ratio (loss)."""

    def of(self, server: dict[str, Any]) -> Any:
        value: Any = server.get("results", {}).get(self.workload)
        for key in self.path.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value


METRICS = (
    Metric("fanout", "deliveries_per_s", "fan-out: deliveries/s (fixed rate)", "{:,.0f}", "higher"),
    Metric("fanout", "latency_ms.p50", "fan-out: p50 latency, ms", "{:.2f}", "lower"),
    Metric("fanout", "latency_ms.p99", "fan-out: p99 latency, ms", "{:.2f}", "lower"),
    Metric("fanout", "latency_ms.max", "fan-out: max latency, ms", "{:.2f}", "lower"),
    Metric(
        "fanout", "server_cpu_us_per_delivery", "fan-out: server CPU µs/delivery", "{:.2f}", "lower"
    ),
    Metric("fanout", "lost", "fan-out: lost deliveries", "{:,}", None),
    Metric(
        "saturation", "deliveries_per_s", "saturation: sustained deliveries/s", "{:,.0f}", "higher"
    ),
    Metric(
        "saturation",
        "server_cpu_us_per_delivery",
        "saturation: server CPU µs/delivery",
        "{:.2f}",
        "lower",
    ),
    Metric("saturation", "latency_ms.p99", "saturation: p99 latency, ms", "{:.1f}", "lower"),
    Metric("saturation", "lost", "saturation: lost deliveries", "{:,}", None),
    Metric(
        "rooms", "deliveries_per_s", "many rooms: deliveries/s (fixed rate)", "{:,.0f}", "higher"
    ),
    Metric("rooms", "latency_ms.p99", "many rooms: p99 latency, ms", "{:.2f}", "lower"),
    Metric(
        "rooms",
        "server_cpu_us_per_delivery",
        "many rooms: server CPU µs/delivery",
        "{:.2f}",
        "lower",
    ),
    Metric("rooms", "lost", "many rooms: lost deliveries", "{:,}", None),
    Metric(
        "memory",
        "kib_per_connection",
        "memory: KiB per idle subscribed connection",
        "{:.1f}",
        "lower",
    ),
    Metric(
        "connect",
        "connections_per_s",
        "connect: connections/s until subscribed",
        "{:,.0f}",
        "higher",
    ),
)
METRIC = {(metric.workload, metric.path): metric for metric in METRICS}


@dataclass(frozen=True)
class Target:
    """A goal for the gateway, as a ratio of its figure to another server's in the same run."""

    workload: str
    path: str
    other: str
    relation: str
    bound: float
    note: str = ""

    @property
    def metric(self) -> Metric:
        return METRIC[(self.workload, self.path)]

    def describe(self) -> str:
        text = f"{self.metric.label} {self.relation} {self.bound:g}× {self.other}"
        return f"{text} ({self.note})" if self.note else text


TARGETS = (
    Target("saturation", "deliveries_per_s", REFERENCE, "≥", 0.8),
    Target("fanout", "server_cpu_us_per_delivery", REFERENCE, "≤", 1.25),
    Target("saturation", "server_cpu_us_per_delivery", REFERENCE, "≤", 1.25),
    Target("rooms", "server_cpu_us_per_delivery", REFERENCE, "≤", 1.25),
    Target("fanout", "latency_ms.p99", REFERENCE, "≤", 1.5),
    Target("rooms", "latency_ms.p99", REFERENCE, "≤", 1.5),
    Target("memory", "kib_per_connection", REFERENCE, "≤", 1.5),
    Target("fanout", "server_cpu_us_per_delivery", PEER, "≤", 0.5, "2× as efficient"),
    Target("saturation", "deliveries_per_s", PEER, "≥", 2.0),
)
_RELATIONS: dict[str, Callable[[float, float], bool]] = {"≥": operator.ge, "≤": operator.le}


def ratio(servers: dict[str, Any], metric: Metric, subject: str, other: str) -> float | None:
    """``subject``'s figure divided by ``other``'s; None when either is missing or zero."""
    if subject not in servers or other not in servers:
        return None
    mine, theirs = metric.of(servers[subject]), metric.of(servers[other])
    if not isinstance(mine, int | float) or not isinstance(theirs, int | float) or not theirs:
        return None
    return float(mine) / float(theirs)


def comparisons(servers: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric with a direction, as ratios to the bare reference and to socketio."""
    rows = []
    for metric in METRICS:
        if metric.better is None:
            continue
        row: dict[str, Any] = {"workload": metric.workload, "metric": metric.path}
        for name in servers:
            if name != REFERENCE:
                row[f"{name}_over_{REFERENCE}"] = ratio(servers, metric, name, REFERENCE)
        row[f"{SUBJECT}_over_{PEER}"] = ratio(servers, metric, SUBJECT, PEER)
        rows.append(row)
    return rows


def target_checks(servers: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured ratio and whether it is met (None: not measured)."""
    checks = []
    for target in TARGETS:
        value = ratio(servers, target.metric, SUBJECT, target.other)
        met = None if value is None else _RELATIONS[target.relation](value, target.bound)
        checks.append({"target": target.describe(), "ratio": value, "met": met})
    return checks


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, the table of figures and ratios, targets, warnings."""
    servers: dict[str, Any] = results["servers"]
    names = list(servers)
    measured = [name for name in names if "results" in servers[name]]
    rounds = results.get("rounds", 1)
    title = f"### Bench results ({results['profile']['name']} profile"
    title += f", median of {rounds} rounds)" if rounds > 1 else ")"
    lines = [title, ""]
    lines += _machine_lines(results)
    lines += ["", "Servers:", ""]
    for name in names:
        server = servers[name]
        state = server.get("skipped") or "; ".join(server.get("errors", []))
        if not state:
            note = ""
        elif "results" in server:
            note = f" — **failed in a round, figures from the others: {state}**"
        else:
            note = f" — **not measured: {state}**"
        if name == SUBJECT and results.get("gateway_env"):
            settings = ", ".join(f"{k}={v}" for k, v in results["gateway_env"].items())
            note = f" (environment: {settings}; other settings at their defaults){note}"
        lines.append(
            f"- `{name}`: {server['label']}, {server.get('replicas', '?')} processes{note}"
        )
    lines.append("")
    ratio_columns = [(name, REFERENCE) for name in measured if name != REFERENCE]
    if SUBJECT in measured and PEER in measured:
        ratio_columns.append((SUBJECT, PEER))
    header = ["metric", *measured, *(f"{a} ÷ {b}" for a, b in ratio_columns)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in METRICS:
        values = [metric.of(servers[name]) for name in measured]
        if all(value is None for value in values):
            continue
        cells = [metric.label, *(_format(metric, value) for value in values)]
        for subject, other in ratio_columns:
            value = ratio(servers, metric, subject, other) if metric.better else None
            cells.append(f"{value:.2f}×" if value is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    checks = results.get("targets", [])
    if any(check["ratio"] is not None for check in checks):
        lines += ["", "Targets for the gateway (ratios in this run):", ""]
        lines += ["| target | measured | met |", "|---|---|---|"]
        for check in checks:
            if check["ratio"] is None:
                continue
            mark = "yes" if check["met"] else "**no**"
            lines.append(f"| {check['target']} | {check['ratio']:.2f}× | {mark} |")
    lines += ["", *_method_lines(results)]
    warnings = results.get("warnings", [])
    lines += ["", "Warnings:" if warnings else "Warnings: none.", ""]
    lines += [f"- {warning}" for warning in warnings]
    return "\n".join(lines).rstrip() + "\n"


def _format(metric: Metric, value: Any) -> str:
    if value is None:
        return "-"
    text = metric.fmt.format(value)
    if metric.better is None and value:
        return f"**{text}**"
    return text


def _machine_lines(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    libraries = ", ".join(
        f"{name} {version}" for name, version in machine["libraries"].items() if version
    )
    load_before = " ".join(f"{value:g}" for value in machine["load_average"])
    load_after = " ".join(f"{value:g}" for value in results.get("load_average_after", []))
    return [
        f"Machine: {machine['cpu_model']}, {machine['cpus']} CPUs ({machine['cpus_usable']} "
        f"usable), {machine['memory_gib']} GiB, Linux {machine['kernel']}, "
        f"{machine['python_implementation']} {machine['python']}, "
        f"redis-server {machine['redis_server']}.",
        "",
        f"Libraries: {libraries}.",
        "",
        f"Pinning: {results['placement']['description']}. Load average before: {load_before}; "
        f"after: {load_after}. Run on {results['started_at']}, {results['seconds']:.0f} s.",
    ]


def _method_lines(results: dict[str, Any]) -> list[str]:
    profile = results["profile"]
    idle = profile["rooms"] * profile["room_subscribers"]
    return [
        "How: every server runs as "
        f"{profile['replicas']} processes relaying through one redis-server; "
        f"{profile['loadgen_processes']} picows load-generator processes. "
        f"Fan-out: {profile['fanout_subscribers']:,} subscribers of one channel spread over "
        f"the replicas, {profile['fanout_rate']:g} publications/s for "
        f"{profile['fanout_seconds']:g} s. Saturation: the same subscribers, "
        f"{profile['publishers_per_replica']} publishers per replica, each keeping "
        f"{profile['saturation_window']} publications in flight for "
        f"{profile['saturation_seconds']:g} s. Many rooms: {profile['rooms']} channels × "
        f"{profile['room_subscribers']} subscribers, {profile['room_rate']:g} publications/s "
        f"round-robin for {profile['room_seconds']:g} s. Memory: RSS growth of the server "
        f"processes per idle subscribed connection at {idle:,} connections (the many-rooms "
        "subscribers, before publishing). Latency: from the "
        "publisher's send time to arrival at the subscriber (one monotonic clock). Server CPU: "
        "user + system time of the server processes over the run, per delivery. "
        "Ratios: the server in the column header divided by the other; lower is better for "
        "latency, CPU and memory.",
    ]
