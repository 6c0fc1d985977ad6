"""The PNG chart of one run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.loadgen.worker import TIMELINE_NS
from bench.report import METRIC, REFERENCE, ratio

PANELS = (
    ("saturation", "deliveries_per_s", "Saturation: sustained deliveries/s\n(higher is better)"),
    (
        "fanout",
        "server_cpu_us_per_delivery",
        "Fan-out: server CPU µs per delivery\n(lower is better)",
    ),
    ("fanout", "latency_ms.p99", "Fan-out: p99 latency, ms\n(lower is better)"),
    (
        "saturation",
        "server_cpu_us_per_delivery",
        "Saturation: server CPU µs per delivery\n(lower is better)",
    ),
    (
        "rooms",
        "server_cpu_us_per_delivery",
        "Many rooms: server CPU µs per delivery\n(lower is better)",
    ),
    ("memory", "kib_per_connection", "Memory: KiB per idle connection\n(lower is better)"),
    ("connect", "connections_per_s", "Connect: connections/s\n(higher is better)"),
    (
        "connections",
        "kib_per_connection",
        "Connections on one replica: KiB per connection\n(lower is better)",
    ),
    (
        "connections",
        "latency_ms.p99",
        "Connections on one replica: fan-out p99, ms\n(lower is better)",
    ),
)
SCALE_PANELS = (
    ("deliveries_per_s", "Scale: sustained deliveries/s by replicas\n(higher is better)"),
    ("redis_cpu_us_per_publication", "Scale: Redis CPU µs per publication\n(lower is better)"),
)
COLOURS = {"bare": "#7f7f7f", "gateway": "#1f77b4", "socketio": "#ff7f0e", "node": "#2ca02c"}


def draw(results: dict[str, Any], path: Path) -> None:
    """Bars for the key figures of each server, and the saturation timeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = {name: data for name, data in results["servers"].items() if "results" in data}
    figure, axes = plt.subplots(3, 4, figsize=(18, 12.5))
    cells = list(axes.flat)
    for ax, (workload, key, title) in zip(cells, PANELS, strict=False):
        metric = METRIC[(workload, key)]
        names = [name for name in servers if metric.of(servers[name]) is not None]
        values = [float(metric.of(servers[name])) for name in names]
        if not names:
            _not_measured(ax, title)
            continue
        bars = ax.bar(names, values, color=[COLOURS.get(name, "#9467bd") for name in names])
        labels = []
        for name, value in zip(names, values, strict=True):
            versus = ratio(servers, metric, name, REFERENCE) if name != REFERENCE else None
            labels.append(_short(value) + (f"\n{versus:.2f}× bare" if versus else ""))
        ax.bar_label(bars, labels=labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.25)
        ax.tick_params(axis="x", labelsize=9)
    timeline = cells[len(PANELS)]
    for name, data in servers.items():
        buckets = data["results"].get("saturation", {}).get("timeline") or []
        seconds = [index * TIMELINE_NS / 1e9 for index in range(len(buckets))]
        rates = [count * 1e9 / TIMELINE_NS for count in buckets]
        timeline.plot(seconds, rates, label=name, color=COLOURS.get(name))
    timeline.set_title("Saturation: deliveries/s over time", fontsize=10)
    timeline.set_xlabel("seconds")
    timeline.legend(fontsize=9)
    used = len(PANELS) + 1
    for ax, (key, title) in zip(cells[used:], SCALE_PANELS, strict=False):
        _scale_panel(ax, servers, key, title)
    for ax in cells[used + len(SCALE_PANELS) :]:
        ax.axis("off")
    machine = results["machine"]
    figure.suptitle(
        f"pubsub gateway bench ({results['profile']['name']}): {machine['cpu_model']}, "
        f"{machine['cpus']} CPUs, Linux {machine['kernel']}, Python {machine['python']}\n"
        f"{results['placement']['description']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _scale_panel(ax: Any, servers: dict[str, Any], key: str, title: str) -> None:
    """One line per server measured at several replica counts."""
    for name, data in servers.items():
        sizes = data["results"].get("scale", {}).get("sizes", {})
        points = [(int(size), part.get(key)) for size, part in sizes.items()]
        points = [(size, value) for size, value in points if value is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name, color=COLOURS.get(name))
            ax.set_xticks(sorted({size for size, _ in points}))
    if not ax.get_legend_handles_labels()[0]:
        _not_measured(ax, title)
        return
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("replicas")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=9)


def _not_measured(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _short(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"
