"""What every workload shares: the rig, CPU samples, connecting, and measuring deliveries.

A delivery run publishes (at a fixed rate, or as fast as acknowledged), waits (bounded) for
every delivery, and reports deliveries/s, latency from the publisher's stamp, loss, the
server processes' CPU per delivery, and who was the limit: the servers, or the load
generator (its busiest process near a full core, or all of them near the CPU they could
use, while the servers were less busy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.limits import OTHER_WORK, limit
from bench.loadgen.pool import LoadGenerator
from bench.loadgen.worker import TIMELINE_NS
from bench.processes import RedisProcess, ServerGroup, ServerKind
from bench.profiles import Profile
from bench.system import Placement, busy_cpu_seconds, cpu_seconds

POLL_SECONDS = 0.05
QUIET_PROBE = 0.5
"""Seconds over which ``--spill auto`` looks at the machine's other work."""
IDLE = 0.05
"""Share of their CPUs below which the servers count as idle between phases."""
KEPT_UP = 0.9
"""A fixed-rate run whose deliveries/s fall below this share of the offered rate was, for
that server, above saturation."""
WARMUP_CHANNEL = "warmup"


@dataclass(frozen=True)
class Setup:
    """What one server kind's workloads share: the kind, the profile, Redis, the load
    generator and the CPU placement."""

    kind: ServerKind
    profile: Profile
    redis: RedisProcess
    loadgen: LoadGenerator
    placement: Placement
    log: Callable[[str], None]

    @contextlib.contextmanager
    def replicas(self, count: int, publishers: int) -> Iterator[Rig]:
        """``count`` fresh replicas on an empty Redis, ``publishers`` publisher connections
        spread round-robin over them, and a publication seen by every replica; on leaving,
        every connection is closed and the replicas stopped."""
        self.redis.command("FLUSHALL")
        servers = ServerGroup(self.kind, count, self.redis.url, self.placement.servers)
        rig = Rig(
            self.kind,
            self.profile,
            self.redis,
            self.loadgen,
            self.placement,
            self.log,
            servers=servers,
        )
        try:
            urls = [servers.urls[index % count] for index in range(publishers)]
            self.loadgen.open_publishers(self.kind.dialect, urls)
            warm_up(rig)
            yield rig
            self.loadgen.close_subscribers()
            self.loadgen.close_publishers()
            servers.check_alive()
        finally:
            servers.stop()


@dataclass(frozen=True)
class Rig(Setup):
    """A setup with its running replicas: what a workload measures."""

    servers: ServerGroup = dataclasses.field(kw_only=True)

    @property
    def server_cores(self) -> int:
        return len(self.placement.servers or [0])

    @property
    def loadgen_cores(self) -> int:
        return len(self.placement.loadgen or [0])


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by each process of the run, and by the whole machine."""

    servers_each: tuple[float, ...]
    loadgen_each: tuple[float, ...]
    redis: float
    machine: float
    coordinator: float

    @classmethod
    def take(cls, rig: Rig) -> CpuSample:
        return cls(
            servers_each=tuple(rig.servers.cpu_by_replica()),
            loadgen_each=tuple(rig.loadgen.cpu_by_process()),
            redis=rig.redis.cpu_seconds(),
            machine=busy_cpu_seconds(),
            coordinator=cpu_seconds(os.getpid()),
        )

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(
            servers_each=_minus(self.servers_each, other.servers_each),
            loadgen_each=_minus(self.loadgen_each, other.loadgen_each),
            redis=self.redis - other.redis,
            machine=self.machine - other.machine,
            coordinator=self.coordinator - other.coordinator,
        )

    @property
    def servers(self) -> float:
        return sum(self.servers_each)

    @property
    def loadgen(self) -> float:
        return sum(self.loadgen_each)

    @property
    def other(self) -> float:
        """CPU seconds used by processes outside the bench."""
        return self.machine - self.servers - self.loadgen - self.redis - self.coordinator


def _minus(mine: tuple[float, ...], theirs: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(a - b for a, b in zip(mine, theirs, strict=True))


def wait_until_idle(rig: Rig) -> None:
    """Give the servers (bounded) time to finish the previous phase before measuring."""
    deadline = time.monotonic() + rig.profile.quiet_seconds
    window = rig.profile.quiet_window
    while time.monotonic() < deadline:
        before = rig.servers.cpu_seconds()
        time.sleep(window)
        if (rig.servers.cpu_seconds() - before) / window / rig.server_cores < IDLE:
            return


def subscribe(
    rig: Rig,
    channels: list[str],
    count: int,
    urls: list[str] | None = None,
    tolerate: bool = False,
) -> dict[str, Any]:
    """Open ``count`` subscribers spread over the channels and ``urls`` (default: every
    replica); raises when any of them failed, unless ``tolerate`` (then the failures are
    in the result: a figure of their own)."""
    profile = rig.profile
    result = rig.loadgen.connect(
        rig.kind.dialect,
        urls or rig.servers.urls,
        channels,
        count,
        profile.connect_concurrency,
        profile.connect_timeout,
    )
    if result["failed"] and not tolerate:
        raise RuntimeError(
            f"{rig.kind.name}: {result['failed']} of {count} connections failed "
            f"(first: {result['failure']})"
        )
    return result


def idle_connections(
    rig: Rig, channels: list[str], count: int, tolerate: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect ``count`` subscribers (see `subscribe`): the connect rate, then the servers'
    resident memory per idle subscribed connection (RSS growth over the baseline)."""
    profile = rig.profile
    before = rig.servers.rss_bytes()
    cpu_before = CpuSample.take(rig)
    connected = subscribe(rig, channels, count, tolerate=tolerate)
    settling = CpuSample.take(rig)
    used = settling - cpu_before
    wall = max(connected["seconds"], 1e-9)
    time.sleep(profile.settle_seconds)
    idle = CpuSample.take(rig) - settling
    after = rig.servers.rss_bytes()
    rate = {
        "connections": connected["connected"],
        "failed": connected["failed"],
        "first_failure": connected["failure"],
        "seconds": round(connected["seconds"], 3),
        "connections_per_s": connected["connected"] / wall,
        "concurrency_per_loadgen": profile.connect_concurrency,
        "server_cpu_ms_per_connection": used.servers / max(connected["connected"], 1) * 1e3,
        **cpu_shares(rig, used, wall),
    }
    memory = {
        "connections": connected["connected"],
        "baseline_mib": [round(value / 2**20, 1) for value in before],
        "loaded_mib": [round(value / 2**20, 1) for value in after],
        "kib_per_connection": (sum(after) - sum(before)) / max(connected["connected"], 1) / 1024,
        "idle_server_cpu_share": idle.servers / profile.settle_seconds / rig.server_cores,
    }
    return rate, memory


def warm_up(rig: Rig) -> None:
    """Make sure a publication reaches every replica before anything is measured."""
    loadgen = rig.loadgen
    urls = rig.servers.urls
    subscribe(rig, [WARMUP_CHANNEL], len(urls))
    for _ in range(50):
        loadgen.reset(time.monotonic_ns())
        loadgen.publish([WARMUP_CHANNEL], rate=100, count=1, timeout=5)
        if wait_for(loadgen, len(urls), 2.0) >= len(urls):
            break
    else:
        raise RuntimeError(f"{rig.kind.name}: no publication reached every replica in warm-up")
    loadgen.close_subscribers()


def wait_for(loadgen: LoadGenerator, expected: int, timeout: float) -> int:
    """Poll until ``expected`` deliveries arrived or ``timeout`` passed; how many did."""
    deadline = time.monotonic() + timeout
    while (received := loadgen.received()) < expected and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return received


def deliveries(
    rig: Rig,
    publish: Callable[[], dict[str, Any]],
    *,
    per_publication: int,
    offered_rate: float | None,
    spill: bool = False,
) -> dict[str, Any]:
    """Run ``publish``, wait (bounded) for every delivery, and measure what it cost.

    ``spill``: meanwhile the load generators may use the servers' idle CPU time (when the
    placement allows it), so that they can outrun the servers at saturation.
    """
    loadgen = rig.loadgen
    spilled = spill and bool(rig.placement.servers) and _may_spill(rig)
    t0 = time.monotonic_ns()
    loadgen.reset(t0)
    with loadgen.spilling(rig.placement.servers if spilled else None):
        before = CpuSample.take(rig)
        published = publish()
        expected = published["acked"] * per_publication
        wait_for(loadgen, expected, rig.profile.drain_seconds)
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
        "loadgen_cpu_us_per_delivery": used.loadgen / received * 1e6 if received else None,
        **cpu_shares(rig, used, wall, spilled),
        "redis_cpu_s": round(used.redis, 3),
        "redis_cpu_us_per_publication": (
            used.redis / published["acked"] * 1e6 if published["acked"] else None
        ),
        "replica_deliveries": [totals.by_replica.get(i, 0) for i in range(len(rig.servers.urls))],
        "replica_cpu_s": [round(value, 3) for value in used.servers_each],
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


def _may_spill(rig: Rig) -> bool:
    """``on``; ``auto`` when processes outside the bench are (almost) idle right now."""
    mode = rig.placement.spill
    if mode != "auto":
        return mode == "on"
    before = CpuSample.take(rig)
    time.sleep(QUIET_PROBE)
    return (CpuSample.take(rig) - before).other / QUIET_PROBE < OTHER_WORK


def cpu_shares(rig: Rig, used: CpuSample, wall: float, spilled: bool = False) -> dict[str, Any]:
    """How busy each part was over ``wall`` seconds, and which part was the limit.

    The load generator's level is the larger of its busiest process's share of one core
    and all its processes' share of the CPU they could use: their own CPUs less what Redis
    and the coordinator took there, plus the servers' idle time when they ``spilled`` onto
    the servers' CPUs.
    """
    wall = max(wall, 1e-9)
    server_share = used.servers / wall / rig.server_cores
    redis_share = used.redis / wall
    shares = [value / wall for value in used.loadgen_each]
    available = rig.loadgen_cores - (used.redis + max(0.0, used.coordinator)) / wall
    if spilled:
        available += rig.server_cores * max(0.0, 1.0 - server_share)
    level = max(max(shares, default=0.0), used.loadgen / wall / max(available, 0.05))
    return {
        "server_cpu_share": server_share,
        "loadgen_cpu_share": used.loadgen / wall / rig.loadgen_cores,
        "loadgen_process_shares": [round(share, 3) for share in shares],
        "loadgen_level": level,
        "redis_cpu_share": redis_share,
        "other_work_cpus": max(0.0, used.other) / wall,
        "limited_by": limit(server_share, level, redis_share),
        "loadgen_spilled": spilled,
    }


def sustained(result: dict[str, Any], seconds: float) -> float:
    """Deliveries/s over a publishing window of ``seconds`` (its first second left out when
    it lasts 4 s or more), from the run's timeline."""
    skip = 1.0 if seconds >= 4 else 0.0
    buckets = result["timeline"]
    first, last = round(skip * 1e9 / TIMELINE_NS), round(seconds * 1e9 / TIMELINE_NS)
    return float(sum(buckets[first:last]) / (seconds - skip))


def summary(result: dict[str, Any]) -> str:
    """One line for the progress log."""
    parts = [f"{result['deliveries_per_s']:,.0f} deliveries/s"]
    p99 = result["latency_ms"]["p99"]
    if p99 is not None:
        parts.append(f"p99 {p99:.1f} ms")
    cpu = result["server_cpu_us_per_delivery"]
    if cpu is not None:
        parts.append(
            f"{cpu:.1f} µs server CPU/delivery "
            f"({result['loadgen_cpu_us_per_delivery']:.1f} µs load generator)"
        )
    parts.append(f"lost {result['lost']} of {result['expected']}")
    parts.append(f"servers {result['server_cpu_share']:.0%} of their CPU")
    parts.append(f"load generator {result['loadgen_level']:.0%} (busiest process or all)")
    parts.append(f"limit: {result['limited_by']}")
    parts.append(f"other work {result['other_work_cpus']:.2f} CPUs")
    return ", ".join(parts)
