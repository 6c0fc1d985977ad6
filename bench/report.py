"""Turning one run's results into ratios, target checks and a Markdown report."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.limits import BUSY

REFERENCE = "bare"
SUBJECT = "gateway"
PEER = "socketio"
PEERS = ("socketio", "node")
"""The other servers the gateway is compared with directly (a ratio column each)."""


@dataclass(frozen=True)
class Metric:
    """One figure of one workload, as the report shows it."""

    workload: str
    path: str
    label: str
    fmt: str
    better: str | None
    """``higher`` or ``lower``; None for counts that get no ratio and are bold when not zero
    (loss); ``text`` for words (no ratio, never bold)."""

    @property
    def ratios(self) -> bool:
        return self.better in ("higher", "lower")

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
    Metric(
        "saturation",
        "loadgen_cpu_us_per_delivery",
        "saturation: load generator CPU µs/delivery",
        "{:.2f}",
        "text",
    ),
    Metric("saturation", "latency_ms.p99", "saturation: p99 latency, ms", "{:.1f}", "lower"),
    Metric("saturation", "lost", "saturation: lost deliveries", "{:,}", None),
    Metric("saturation", "limited_by", "saturation: limited by", "{}", "text"),
    Metric(
        "saturation",
        "server_cpu_share",
        "saturation: servers' share of their CPU",
        "{:.0%}",
        "text",
    ),
    Metric(
        "saturation",
        "loadgen_level",
        "saturation: load generator's share of the CPU it could use",
        "{:.0%}",
        "text",
    ),
    Metric(
        "saturation",
        "loadgen_spilled",
        "saturation: load generator spilled onto the servers' idle CPU",
        "{}",
        "text",
    ),
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
    Metric(
        "connections",
        "connect_seconds",
        "connections on one replica: seconds to connect them all",
        "{:.1f}",
        "lower",
    ),
    Metric(
        "connections",
        "failed_connections",
        "connections on one replica: failed to connect",
        "{:,}",
        None,
    ),
    Metric(
        "connections",
        "kib_per_connection",
        "connections on one replica: KiB (RSS) per connection",
        "{:.1f}",
        "lower",
    ),
    Metric(
        "connections",
        "latency_ms.p50",
        "connections on one replica: fan-out p50 latency, ms",
        "{:.1f}",
        "lower",
    ),
    Metric(
        "connections",
        "latency_ms.p99",
        "connections on one replica: fan-out p99 latency, ms",
        "{:.1f}",
        "lower",
    ),
    Metric(
        "connections",
        "server_cpu_us_per_delivery",
        "connections on one replica: server CPU µs/delivery",
        "{:.2f}",
        "lower",
    ),
    Metric("connections", "lost", "connections on one replica: lost deliveries", "{:,}", None),
    Metric(
        "connections",
        "readyz_ms.p99",
        "connections on one replica: /readyz p99 under load, ms",
        "{:.1f}",
        "lower",
    ),
    Metric(
        "connections",
        "readyz_ms.failed",
        "connections on one replica: /readyz failures",
        "{:,}",
        None,
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
    """Every metric with a direction, as ratios to the bare reference and of the gateway to
    each peer."""
    rows = []
    for metric in METRICS:
        if not metric.ratios:
            continue
        row: dict[str, Any] = {"workload": metric.workload, "metric": metric.path}
        for name in servers:
            if name != REFERENCE:
                row[f"{name}_over_{REFERENCE}"] = ratio(servers, metric, name, REFERENCE)
        for peer in PEERS:
            row[f"{SUBJECT}_over_{peer}"] = ratio(servers, metric, SUBJECT, peer)
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
    if REFERENCE not in measured:
        ratio_columns = []
    ratio_columns += [(SUBJECT, peer) for peer in PEERS if {SUBJECT, peer} <= set(measured)]
    header = ["metric", *measured, *(f"{a} ÷ {b}" for a, b in ratio_columns)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in METRICS:
        values = [metric.of(servers[name]) for name in measured]
        if all(value is None for value in values):
            continue
        cells = [metric.label, *(_format(metric, value) for value in values)]
        for subject, other in ratio_columns:
            value = ratio(servers, metric, subject, other) if metric.ratios else None
            cells.append(f"{value:.2f}×" if value is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += scale_lines(results)
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
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = metric.fmt.format(value)
    if metric.better is None and value:
        return f"**{text}**"
    return text


def scale_lines(results: dict[str, Any]) -> list[str]:
    """The scale workload: a row per server and size, then what the sizes show."""
    scaled = {
        name: server["results"]["scale"]
        for name, server in results["servers"].items()
        if "scale" in server.get("results", {})
    }
    if not scaled:
        return []
    shape = next(iter(scaled.values()))
    lines = [
        "",
        f"Scale: replicas on one Redis, at saturation ({shape['subscribers']:,} subscribers over "
        f"{shape['channels']} channels, {shape['subscribers_per_channel']:,} per publication; "
        f"{shape['publishing_seconds']:g} s per size):",
        "",
        "| server | replicas | deliveries/s | × first size | server CPU µs/delivery | "
        "deliveries per replica-CPU-s (each replica) | servers' CPU | Redis µs/publication | "
        "Redis CPU | Redis's core full at | server CPUs to get there | limit |",
        "|" + "---|" * 12,
    ]
    for name, scale in scaled.items():
        for size, part in scale["sizes"].items():
            each = ", ".join(f"{value:,}" for value in part.get("replica_deliveries_per_cpu_s", []))
            full = part.get("redis_full_publications_per_s")
            full_text = (
                f"{full:,.0f} publications/s ({part['redis_full_deliveries_per_s']:,.0f} "
                "deliveries/s)"
                if full
                else "-"
            )
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        size,
                        f"{part['deliveries_per_s']:,.0f}",
                        _maybe("{:.2f}×", part.get("speedup")),
                        _maybe("{:.2f}", part.get("server_cpu_us_per_delivery")),
                        _maybe("{:,.0f}", part.get("deliveries_per_replica_cpu_s"))
                        + (f" ({each})" if each else ""),
                        f"{part['server_cpu_share']:.0%}",
                        _maybe("{:.1f}", part.get("redis_cpu_us_per_publication")),
                        f"{part['redis_cpu_share']:.0%}",
                        full_text,
                        _maybe("{:.1f}", part.get("redis_full_server_cpus")),
                        part.get("limited_by", "-"),
                    ]
                )
                + " |"
            )
    lines += ["", *_scale_reading(scaled)]
    return lines


def _scale_reading(scaled: dict[str, Any]) -> list[str]:
    """What the sizes show, in words: whether growth could be linear, where Redis binds."""
    notes = []
    shape = next(iter(scaled.values()))
    largest = max(int(size) for size in shape["sizes"])
    if not shape["can_grow_linearly"]:
        notes.append(
            f"The servers have {_cpus(shape['server_cpus'])} here, fewer than the "
            f"{largest} replicas of the largest size: deliveries/s cannot grow linearly with "
            "replicas on this machine. What the sizes show is what each added replica costs "
            "(every replica receives every publication for the channels its clients "
            "subscribe to) and how Redis's cost per publication grows with the replicas it "
            "writes each publication to."
        )
    for name, scale in scaled.items():
        part = scale["sizes"][str(largest)] if str(largest) in scale["sizes"] else None
        if not part or not part.get("redis_full_server_cpus"):
            continue
        notes.append(
            f"{name}: at {largest} replicas Redis used "
            f"{part['redis_cpu_us_per_publication']:.1f} µs per publication, so its one core "
            f"is full at about {part['redis_full_publications_per_s']:,.0f} publications/s "
            f"({part['redis_full_deliveries_per_s']:,.0f} deliveries/s at "
            f"{scale['subscribers_per_channel']:,} subscribers per publication); at "
            f"{part['server_cpu_us_per_delivery']:.2f} µs of server CPU per delivery, replicas "
            f"with about {part['redis_full_server_cpus']:.1f} CPUs in all would get there. "
            "Below that the replicas' CPU is the limit and adding replicas on their own CPUs "
            "adds throughput; beyond it Redis is the bottleneck (a projection from this run's "
            "per-publication and per-delivery costs, not a measurement; at this run's "
            f"{part['publications_per_s']:,.0f} publications/s each one wakes Redis nearly "
            "alone, so its cost per publication is an upper bound of what it is near its "
            "ceiling, where commands arrive pipelined)."
        )
    return notes


def _cpus(count: int) -> str:
    return "1 CPU" if count == 1 else f"{count} CPUs"


def _maybe(fmt: str, value: Any) -> str:
    return "-" if value is None else fmt.format(value)


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
    processes = results.get("loadgen_processes") or profile["loadgen_processes"]
    workloads = set(results.get("workloads", []))
    text = (
        "How: every server runs as "
        f"{profile['replicas']} processes relaying through one redis-server; "
        f"{processes} picows load-generator processes. "
        f"Fan-out: {profile['fanout_subscribers']:,} subscribers of one channel spread over "
        f"the replicas, {profile['fanout_rate']:g} publications/s for "
        f"{profile['fanout_seconds']:g} s. Saturation: the same subscribers, "
        f"{profile['publishers_per_replica']} publishers per replica, each keeping "
        f"{profile['saturation_window']} publications in flight for "
        f"{profile['saturation_seconds']:g} s. Many rooms: {profile['rooms']} channels × "
        f"{profile['room_subscribers']} subscribers, {profile['room_rate']:g} publications/s "
        f"round-robin for {profile['room_seconds']:g} s. Memory: RSS growth of the server "
        f"processes per idle subscribed connection at {idle:,} connections (the many-rooms "
        "subscribers, before publishing). "
    )
    if "connections" in workloads:
        text += (
            f"Connections: {profile['connections']:,} subscribers of one channel on ONE fresh "
            "replica: the time to connect and subscribe them all, the replica's RSS growth per "
            f"connection, then {profile['connections_rate']:g} publications/s for "
            f"{profile['connections_seconds']:g} s to all of them while GET /readyz is probed "
            f"every {profile['readyz_interval']:g} s on a fresh connection. "
        )
    if "scale" in workloads:
        sizes = ", ".join(str(size) for size in profile["scale_sizes"])
        text += (
            f"Scale ({', '.join(results.get('scale_servers', [])) or 'none'}): {sizes} fresh "
            f"replicas on the same redis-server, {profile['scale_subscribers']:,} subscribers "
            f"over {profile['scale_channels']} channels and the replicas, "
            f"{profile['scale_publishers']} publishers in all (spread over the replicas) each "
            f"keeping {profile['saturation_window']} publications in flight for "
            f"{profile['scale_seconds']:g} s; Redis CPU from /proc of redis-server. "
        )
    text += (
        "Latency: from the publisher's send time to arrival at the subscriber (one monotonic "
        "clock). Server CPU: user + system time of the server processes over the run, per "
        "delivery. Limited by: the servers, or the load generator when its busiest process "
        f"used {BUSY:.0%} of a core or more (or all its processes that much of the CPU they "
        "could use) while the servers were less busy. Ratios: the server in the column "
        "header divided by the other; lower is better for latency, CPU and memory."
    )
    return [text]
