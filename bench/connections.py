"""The connections workload: many subscribed connections on ONE replica.

``profile.connections`` subscribers (15,000 in the full profile) of one channel connect to
a single fresh replica: how long the whole set takes to connect and subscribe, the
replica's resident memory per connection, then publications at a fixed low rate
(``connections_rate``, 2/s) that each reach every connection: fan-out latency and loss to
all of them, while ``GET /readyz`` is probed every ``readyz_interval`` seconds (as a
kubelet would, a new connection each time) to see whether the replica still answers its
orchestrator promptly.

Thousands of sockets need thousands of file descriptors: every process of the bench raises
its soft limit to the hard one, and the load generator runs enough processes that none of
them needs more than it may open. The run refuses, with the reason, when the server's hard
limit or the loopback port range cannot hold the set.
"""

from __future__ import annotations

import http.client
import math
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import (
    Rig,
    Setup,
    deliveries,
    idle_connections,
    summary,
    wait_until_idle,
)
from bench.system import open_files_hard_limit

CHANNEL = "crowd"
SPARE_FILES = 256
"""Descriptors a process needs beyond its connections (listening sockets, Redis, logs)."""
PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
PROBE_TIMEOUT = 2.0
"""As the readiness probe of deploy/k8s/deployment.yaml: slower counts as a failure."""
IDLE_PROBES = 10


def loadgen_processes_needed(connections: int) -> int:
    """Load-generator processes needed so that none holds more sockets than it may open."""
    per_process = max(1, open_files_hard_limit() - SPARE_FILES)
    return -(-connections // per_process)


def check_limits(connections: int) -> None:
    """Raise, saying why, when one replica could not hold ``connections`` sockets here."""
    hard = open_files_hard_limit()
    if connections + SPARE_FILES > hard:
        raise RuntimeError(
            f"{connections:,} connections on one replica need about "
            f"{connections + SPARE_FILES:,} open files, but the hard limit is {hard:,} "
            "(ulimit -Hn): raise it or lower --set connections=N"
        )
    ports = _ephemeral_ports()
    if ports is not None and connections > ports:
        raise RuntimeError(
            f"{connections:,} connections to one address need as many local ports, but "
            f"net.ipv4.ip_local_port_range holds {ports:,}: widen it or lower "
            "--set connections=N"
        )


def _ephemeral_ports() -> int | None:
    try:
        low, high = (int(v) for v in PORT_RANGE.read_text().split())
    except (OSError, ValueError):
        return None
    return high - low + 1


def run(setup: Setup) -> dict[str, Any]:
    """Connect the set to one replica, weigh it, then publish to all of it at a fixed rate."""
    profile = setup.profile
    count = profile.connections
    check_limits(count)
    with setup.replicas(1, 1) as rig:
        replica = rig.servers.replicas[0]
        wait_until_idle(rig)
        idle_probes = Prober(replica.port, 0.0).run_count(IDLE_PROBES)
        rate, memory = idle_connections(rig, [CHANNEL], count, tolerate=True)
        connected = rate["connections"]
        rig.log(
            f"  connections: {connected:,} of {count:,} on one replica in "
            f"{rate['seconds']:.1f} s ({rate['connections_per_s']:,.0f}/s), "
            f"{memory['kib_per_connection']:.1f} KiB each"
        )
        if not connected:
            raise RuntimeError(f"no connection of {count:,} succeeded: {rate['first_failure']}")
        wait_until_idle(rig)
        result = _fanout(rig, connected, Prober(replica.port, profile.readyz_interval))
        rig.log("  connections fan-out: " + summary(result))
        rig.log(
            f"  /readyz under load: p50 {_ms(result['readyz_ms']['p50'])}, "
            f"p99 {_ms(result['readyz_ms']['p99'])}, failed {result['readyz_ms']['failed']}"
        )
    return {
        "connections": count,
        "connected": connected,
        "failed_connections": rate["failed"],
        "first_connect_failure": rate["first_failure"],
        "replicas": 1,
        "connect_seconds": rate["seconds"],
        "connections_per_s": rate["connections_per_s"],
        "connect_server_cpu_ms_per_connection": rate["server_cpu_ms_per_connection"],
        "connect_limited_by": rate["limited_by"],
        "baseline_mib": memory["baseline_mib"][0],
        "loaded_mib": memory["loaded_mib"][0],
        "kib_per_connection": memory["kib_per_connection"],
        "idle_server_cpu_share": memory["idle_server_cpu_share"],
        "readyz_idle_ms": idle_probes.summary(),
        **result,
    }


def _fanout(rig: Rig, subscribers: int, prober: Prober) -> dict[str, Any]:
    profile = rig.profile
    publications = max(1, round(profile.connections_rate * profile.connections_seconds))
    prober.start()
    try:
        result = deliveries(
            rig,
            lambda: rig.loadgen.publish(
                [CHANNEL], profile.connections_rate, publications, timeout=10
            ),
            per_publication=subscribers,
            offered_rate=profile.connections_rate,
        )
    finally:
        prober.stop()
    return {**result, "readyz_ms": prober.summary()}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


class Prober:
    """``GET /readyz`` every ``interval`` seconds on a fresh connection, in a thread;
    latencies in milliseconds, failures (an error, a timeout, a status other than 200)."""

    def __init__(self, port: int, interval: float) -> None:
        self.port = port
        self.interval = interval
        self.latencies: list[float] = []
        self.failed = 0
        self.first_failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="readyz-prober", daemon=True)

    def probe(self) -> None:
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT)
        try:
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                self._fail(f"status {response.status}")
        except (OSError, http.client.HTTPException) as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
        self.latencies.append((time.perf_counter() - started) * 1e3)

    def run_count(self, count: int) -> Prober:
        for _ in range(count):
            self.probe()
        return self

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(PROBE_TIMEOUT + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.probe()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _fail(self, reason: str) -> None:
        self.failed += 1
        if self.first_failure is None:
            self.first_failure = reason

    def summary(self) -> dict[str, Any]:
        values = sorted(self.latencies)
        return {
            "probes": len(values),
            "failed": self.failed,
            "first_failure": self.first_failure,
            "p50": statistics.median(values) if values else None,
            "p99": _quantile(values, 0.99),
            "max": values[-1] if values else None,
        }


def _quantile(ordered: list[float], quantile: float) -> float | None:
    """The nearest-rank quantile of sorted values."""
    if not ordered:
        return None
    rank = min(len(ordered), max(1, math.ceil(quantile * len(ordered))))
    return ordered[rank - 1]
