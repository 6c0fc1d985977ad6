"""The workloads, run against one kind of server at a time.

Each server kind gets fresh replicas and runs, in order: warm-up (a publication reaches every
replica), idle connections (connect rate, then memory per idle subscribed connection), many
rooms (publications spread over those connections' rooms), fan-out (one channel, a fixed
rate), saturation (the same channel, as fast as publications are acknowledged).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.loadgen.pool import LoadGenerator
from bench.loadgen.worker import TIMELINE_NS
from bench.processes import RedisProcess, ServerGroup, ServerKind
from bench.profiles import Profile
from bench.system import Placement, busy_cpu_seconds, cpu_seconds

WORKLOADS = ("connect", "memory", "rooms", "fanout", "saturation")
POLL_SECONDS = 0.05
LOADGEN_BUSY = 0.85
"""Share of its CPUs above which the load generator, not the server, may be the limit."""
OTHER_WORK = 0.2
"""CPUs' worth of work by processes outside the bench above which figures are noted as
disturbed."""
IDLE = 0.05
"""Share of their CPUs below which the servers count as idle between phases."""
KEPT_UP = 0.9
"""A fixed-rate run whose deliveries/s fall below this share of the offered rate was, for
that server, above saturation."""
FANOUT_CHANNEL = "fanout"
WARMUP_CHANNEL = "warmup"


def room_names(count: int) -> list[str]:
    return [f"room-{index}" for index in range(count)]


@dataclass
class Rig:
    """Everything one server kind's run uses."""

    kind: ServerKind
    profile: Profile
    redis: RedisProcess
    loadgen: LoadGenerator
    placement: Placement
    servers: ServerGroup
    log: Callable[[str], None]

    @property
    def server_cores(self) -> int:
        return len(self.placement.servers or [0])

    @property
    def loadgen_cores(self) -> int:
        return len(self.placement.loadgen or [0])


def run_kind(
    kind: ServerKind,
    profile: Profile,
    redis: RedisProcess,
    loadgen: LoadGenerator,
    placement: Placement,
    selected: set[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Start fresh replicas of ``kind``, run the selected workloads, stop the replicas."""
    redis.command("FLUSHALL")
    servers = ServerGroup(kind, profile.replicas, redis.url, placement.servers)
    rig = Rig(kind, profile, redis, loadgen, placement, servers, log)
    results: dict[str, Any] = {}
    try:
        loadgen.open_publishers(kind.dialect, servers.urls * profile.publishers_per_replica)
        warm_up(rig)
        if selected & {"connect", "memory", "rooms"}:
            wait_until_idle(rig)
            connect, memory = idle_connections(rig)
            results["connect"], results["memory"] = connect, memory
            log(
                f"  connect: {connect['connections_per_s']:.0f} connections/s; memory: "
                f"{memory['kib_per_connection']:.1f} KiB per idle connection"
            )
            if "rooms" in selected:
                wait_until_idle(rig)
                results["rooms"] = many_rooms(rig)
                log("  rooms: " + _summary(results["rooms"]))
            loadgen.close_subscribers()
        if selected & {"fanout", "saturation"}:
            wait_until_idle(rig)
            _connect_fanout(rig)
            if "fanout" in selected:
                wait_until_idle(rig)
                results["fanout"] = fanout(rig)
                log("  fanout: " + _summary(results["fanout"]))
            if "saturation" in selected:
                wait_until_idle(rig)
                results["saturation"] = saturation(rig)
                log("  saturation: " + _summary(results["saturation"]))
            loadgen.close_subscribers()
        loadgen.close_publishers()
        servers.check_alive()
    finally:
        servers.stop()
    return {key: results[key] for key in WORKLOADS if key in results}


def wait_until_idle(rig: Rig) -> None:
    """Give the servers (bounded) time to finish the previous phase before measuring."""
    deadline = time.monotonic() + rig.profile.quiet_seconds
    window = 0.5
    while time.monotonic() < deadline:
        before = rig.servers.cpu_seconds()
        time.sleep(window)
        if (rig.servers.cpu_seconds() - before) / window / rig.server_cores < IDLE:
            return


def warm_up(rig: Rig) -> None:
    """Make sure a publication reaches every replica before anything is measured."""
    loadgen = rig.loadgen
    urls = rig.servers.urls
    _connect(rig, [WARMUP_CHANNEL], len(urls))
    for _ in range(50):
        loadgen.reset(time.monotonic_ns())
        loadgen.publish([WARMUP_CHANNEL], rate=100, count=1, timeout=5)
        if _wait_for(loadgen, len(urls), 2.0) >= len(urls):
            break
    else:
        raise RuntimeError(f"{rig.kind.name}: no publication reached every replica in warm-up")
    loadgen.close_subscribers()


def idle_connections(rig: Rig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect ``rooms × room_subscribers`` subscribers: connect rate, then the servers'
    resident memory per idle subscribed connection (RSS growth over the baseline)."""
    profile = rig.profile
    count = profile.idle_connections
    before = rig.servers.rss_bytes()
    cpu_before = CpuSample.take(rig)
    connected = _connect(rig, room_names(profile.rooms), count)
    settling = CpuSample.take(rig)
    used = settling - cpu_before
    wall = max(connected["seconds"], 1e-9)
    time.sleep(profile.settle_seconds)
    idle = CpuSample.take(rig) - settling
    after = rig.servers.rss_bytes()
    connect = {
        "connections": connected["connected"],
        "failed": connected["failed"],
        "seconds": round(connected["seconds"], 3),
        "connections_per_s": connected["connected"] / max(connected["seconds"], 1e-9),
        "concurrency_per_loadgen": profile.connect_concurrency,
        "server_cpu_ms_per_connection": used.servers / max(connected["connected"], 1) * 1e3,
        "server_cpu_share": used.servers / wall / rig.server_cores,
        "loadgen_cpu_share": used.loadgen / wall / rig.loadgen_cores,
        "other_work_cpus": max(0.0, used.other) / wall,
    }
    memory = {
        "connections": connected["connected"],
        "baseline_mib": [round(value / 2**20, 1) for value in before],
        "loaded_mib": [round(value / 2**20, 1) for value in after],
        "kib_per_connection": (sum(after) - sum(before)) / max(connected["connected"], 1) / 1024,
        "idle_server_cpu_share": idle.servers / profile.settle_seconds / rig.server_cores,
    }
    return connect, memory


def many_rooms(rig: Rig) -> dict[str, Any]:
    """Publications at a fixed rate, round-robin over every room of the idle connections."""
    profile = rig.profile
    rooms = room_names(profile.rooms)
    count = round(profile.room_rate * profile.room_seconds)
    result = _deliveries(
        rig,
        lambda: rig.loadgen.publish(rooms, profile.room_rate, count, timeout=10),
        per_publication=profile.room_subscribers,
        offered_rate=profile.room_rate,
    )
    return {"rooms": profile.rooms, "subscribers_per_room": profile.room_subscribers, **result}


def fanout(rig: Rig) -> dict[str, Any]:
    """Publications at a fixed rate to one channel with every fan-out subscriber."""
    profile = rig.profile
    count = round(profile.fanout_rate * profile.fanout_seconds)
    result = _deliveries(
        rig,
        lambda: rig.loadgen.publish([FANOUT_CHANNEL], profile.fanout_rate, count, timeout=10),
        per_publication=profile.fanout_subscribers,
        offered_rate=profile.fanout_rate,
    )
    return {"subscribers": profile.fanout_subscribers, **result}


def saturation(rig: Rig) -> dict[str, Any]:
    """Publish to the fan-out channel as fast as acknowledged; deliveries/s sustained over the
    publishing window (its first second left out when it lasts 4 s or more)."""
    profile = rig.profile
    seconds = profile.saturation_seconds
    result = _deliveries(
        rig,
        lambda: rig.loadgen.saturate(
            [FANOUT_CHANNEL], seconds, profile.saturation_window, timeout=10
        ),
        per_publication=profile.fanout_subscribers,
        offered_rate=None,
    )
    skip = 1.0 if seconds >= 4 else 0.0
    buckets = result["timeline"]
    first, last = round(skip * 1e9 / TIMELINE_NS), round(seconds * 1e9 / TIMELINE_NS)
    sustained = sum(buckets[first:last]) / (seconds - skip)
    return {
        "subscribers": profile.fanout_subscribers,
        "window_per_publisher": profile.saturation_window,
        "publishing_seconds": seconds,
        **result,
        "deliveries_per_s": sustained,
        "deliveries_per_s_overall": result["deliveries_per_s"],
    }


def _connect(rig: Rig, channels: list[str], count: int) -> dict[str, Any]:
    profile = rig.profile
    result = rig.loadgen.connect(
        rig.kind.dialect,
        rig.servers.urls,
        channels,
        count,
        profile.connect_concurrency,
        profile.connect_timeout,
    )
    if result["failed"]:
        raise RuntimeError(
            f"{rig.kind.name}: {result['failed']} of {count} connections failed "
            f"(first: {result['failure']})"
        )
    return result


def _connect_fanout(rig: Rig) -> None:
    _connect(rig, [FANOUT_CHANNEL], rig.profile.fanout_subscribers)


def _wait_for(loadgen: LoadGenerator, expected: int, timeout: float) -> int:
    """Poll until ``expected`` deliveries arrived or ``timeout`` passed; how many did."""
    deadline = time.monotonic() + timeout
    while (received := loadgen.received()) < expected and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return received


def _deliveries(
    rig: Rig,
    publish: Callable[[], dict[str, Any]],
    *,
    per_publication: int,
    offered_rate: float | None,
) -> dict[str, Any]:
    """Run ``publish``, wait (bounded) for every delivery, and measure what it cost."""
    loadgen = rig.loadgen
    t0 = time.monotonic_ns()
    loadgen.reset(t0)
    before = CpuSample.take(rig)
    published = publish()
    expected = published["acked"] * per_publication
    _wait_for(loadgen, expected, rig.profile.drain_seconds)
    wall = (time.monotonic_ns() - t0) / 1e9
    used = CpuSample.take(rig) - before
    totals = loadgen.totals()
    received = totals.received
    elapsed = max((totals.last_ns - t0) / 1e9, 1e-9) if received else wall
    last_bucket = max(totals.timeline, default=-1)
    result: dict[str, Any] = {
        "publications": published["acked"],
        "sent": published["sent"],
        "errors": totals.errors,
        "first_error": totals.first_error,
        "expected": expected,
        "received": received,
        "lost": max(0, expected - received),
        "drain_seconds": rig.profile.drain_seconds,
        "unexpected": max(0, received - expected),
        "seconds": round(elapsed, 3),
        "deliveries_per_s": received / elapsed,
        "latency_ms": {
            "p50": totals.latency_ms(0.50),
            "p90": totals.latency_ms(0.90),
            "p99": totals.latency_ms(0.99),
            "max": totals.max_ns / 1e6 if received else None,
        },
        "server_cpu_s": round(used.servers, 3),
        "server_cpu_us_per_delivery": used.servers / received * 1e6 if received else None,
        "server_cpu_share": used.servers / wall / rig.server_cores,
        "loadgen_cpu_share": used.loadgen / wall / rig.loadgen_cores,
        "redis_cpu_share": used.redis / wall,
        "other_work_cpus": max(0.0, used.other) / wall,
        "dropped_connections": totals.dropped,
        "close_codes": {str(code): n for code, n in sorted(totals.close_codes.items())},
        "timeline": [totals.timeline.get(index, 0) for index in range(last_bucket + 1)],
    }
    if offered_rate is not None:
        offered = offered_rate * per_publication
        result["offered_deliveries_per_s"] = offered
        result["kept_up"] = result["deliveries_per_s"] >= KEPT_UP * offered
    rig.servers.check_alive()
    return result


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by each part of the run, and by the whole machine."""

    servers: float
    loadgen: float
    redis: float
    machine: float
    coordinator: float

    @classmethod
    def take(cls, rig: Rig) -> CpuSample:
        return cls(
            servers=rig.servers.cpu_seconds(),
            loadgen=rig.loadgen.cpu_seconds(),
            redis=rig.redis.cpu_seconds(),
            machine=busy_cpu_seconds(),
            coordinator=cpu_seconds(os.getpid()),
        )

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(
            *(mine - theirs for mine, theirs in zip(self.fields(), other.fields(), strict=True))
        )

    def fields(self) -> tuple[float, ...]:
        return (self.servers, self.loadgen, self.redis, self.machine, self.coordinator)

    @property
    def other(self) -> float:
        """CPU seconds used by processes outside the bench."""
        return self.machine - self.servers - self.loadgen - self.redis - self.coordinator


def _summary(result: dict[str, Any]) -> str:
    parts = [f"{result['deliveries_per_s']:,.0f} deliveries/s"]
    p99 = result["latency_ms"]["p99"]
    if p99 is not None:
        parts.append(f"p99 {p99:.1f} ms")
    cpu = result["server_cpu_us_per_delivery"]
    if cpu is not None:
        parts.append(f"{cpu:.1f} µs server CPU/delivery")
    parts.append(f"lost {result['lost']} of {result['expected']}")
    parts.append(f"servers {result['server_cpu_share']:.0%} of their CPU")
    parts.append(f"load generator {result['loadgen_cpu_share']:.0%} of its CPU")
    parts.append(f"other work {result['other_work_cpus']:.2f} CPUs")
    return ", ".join(parts)


def busy_warnings(kind: str, results: dict[str, Any]) -> list[str]:
    """Where figures may not measure the server: the load generator nearly saturated, or
    processes outside the bench took a noticeable share of the machine."""
    checks = (
        (
            "loadgen_cpu_share",
            LOADGEN_BUSY,
            "{:.0%}",
            "the load generator nearly filled its CPU ({}): deliveries/s there measure the "
            "client, not the server",
        ),
        (
            "other_work_cpus",
            OTHER_WORK,
            "{:.2f}",
            "other work on the machine used CPUs meanwhile ({}): deliveries/s and latency "
            "there are disturbed (CPU per delivery much less so)",
        ),
    )
    warnings = []
    for key, threshold, fmt, message in checks:
        high = {
            workload: result[key]
            for workload, result in results.items()
            if result.get(key, 0) >= threshold
        }
        if high:
            warnings.append(f"{kind}: " + message.format(_listed(high, fmt)))
    return warnings


def _listed(values: dict[str, float], fmt: str) -> str:
    return ", ".join(f"{workload} {fmt.format(value)}" for workload, value in values.items())


def loss_warnings(kind: str, results: dict[str, Any]) -> list[str]:
    """Every loss, said plainly; below saturation any loss is a failure."""
    warnings = []
    for workload, result in results.items():
        if not isinstance(result, dict) or "lost" not in result:
            continue
        below = workload != "saturation"
        if result.get("kept_up") is False:
            warnings.append(
                f"{kind} {workload}: could not keep up with the offered rate "
                f"({result['deliveries_per_s']:,.0f} of {result['offered_deliveries_per_s']:,.0f}"
                " deliveries/s): this fixed-rate run was above its saturation"
            )
        if result["lost"]:
            what = "LOSS BELOW SATURATION" if below else "loss at saturation"
            warnings.append(
                f"{kind} {workload}: {what}: {result['lost']:,} of {result['expected']:,} "
                f"deliveries had not arrived {result['drain_seconds']:g} s after the last "
                f"publication (dropped connections: {result['dropped_connections']}, "
                f"close codes: {result['close_codes'] or 'none'})"
            )
        if result["errors"]:
            warnings.append(
                f"{kind} {workload}: {result['errors']} publications refused "
                f"(first: {result['first_error']})"
            )
    return warnings
