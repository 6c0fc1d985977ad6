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
)
COLOURS = {"bare": "#7f7f7f", "gateway": "#1f77b4", "socketio": "#ff7f0e"}


def draw(results: dict[str, Any], path: Path) -> None:
    """Bars for the key figures of each server, and the saturation timeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = {name: data for name, data in results["servers"].items() if "results" in data}
    figure, axes = plt.subplots(2, 4, figsize=(18, 8.5))
    cells = list(axes.flat)
    for ax, (workload, key, title) in zip(cells, PANELS, strict=False):
        metric = METRIC[(workload, key)]
        names = [name for name in servers if metric.of(servers[name]) is not None]
        values = [float(metric.of(servers[name])) for name in names]
        bars = ax.bar(names, values, color=[COLOURS.get(name, "#2ca02c") for name in names])
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
    for ax in cells[len(PANELS) + 1 :]:
        ax.axis("off")
    machine = results["machine"]
    figure.suptitle(
        f"pubsub gateway bench ({results['profile']['name']}): {machine['cpu_model']}, "
        f"{machine['cpus']} CPUs, Linux {machine['kernel']}, Python {machine['python']}; "
        f"{results['placement']['description']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _short(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"
