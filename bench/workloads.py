"""The workloads, run against one kind of server at a time.

Each server kind gets fresh replicas and runs, in order: warm-up (a publication reaches every
replica), idle connections (connect rate, then memory per idle subscribed connection), many
rooms (publications spread over those connections' rooms), fan-out (one channel, a fixed
rate), saturation (the same channel, as fast as publications are acknowledged); then, on
replicas of their own, connections (`bench.connections`: thousands of subscribers on one
replica) and scale (`bench.scale`: 1, 2, 4 replicas at saturation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bench import connections, scale
from bench.limits import OTHER_WORK
from bench.loadgen.pool import LoadGenerator
from bench.measure import (
    Rig,
    Setup,
    deliveries,
    idle_connections,
    subscribe,
    summary,
    sustained,
    wait_until_idle,
)
from bench.processes import RedisProcess, ServerKind
from bench.profiles import Profile
from bench.system import Placement

WORKLOADS = ("connect", "memory", "rooms", "fanout", "saturation", "connections", "scale")
FANOUT_CHANNEL = "fanout"
SATURATED = frozenset({"saturation", "scale"})
"""Workloads that publish as fast as acknowledged: loss there is expected of a server that
sheds load."""


def room_names(count: int) -> list[str]:
    return [f"room-{index}" for index in range(count)]


def run_kind(
    kind: ServerKind,
    profile: Profile,
    redis: RedisProcess,
    loadgen: LoadGenerator,
    placement: Placement,
    selected: set[str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Run the selected workloads against fresh replicas of ``kind``.

    The first five share ``profile.replicas`` replicas; the connections workload and each
    size of the scale workload start replicas of their own.
    A phase that fails (a replica died, connections failed) is reported in ``failed``
    (workload names to the error) and the next phase still runs.
    """
    setup = Setup(kind, profile, redis, loadgen, placement, log)
    phases: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    shared = sorted(selected & set(WORKLOADS[:5]), key=WORKLOADS.index)
    if shared:
        phases.append((",".join(shared), lambda: _shared_replicas(setup, selected)))
    if "connections" in selected:
        phases.append(("connections", lambda: {"connections": connections.run(setup)}))
    if "scale" in selected:
        phases.append(("scale", lambda: {"scale": scale.run(setup)}))
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name, phase in phases:
        try:
            results.update(phase())
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            log(f"  {name} failed: {failed[name]}")
            reset_loadgen(loadgen, log)
    ordered = {key: results[key] for key in WORKLOADS if key in results}
    return {**ordered, "failed": failed} if failed else ordered


def reset_loadgen(loadgen: LoadGenerator, log: Callable[[str], None]) -> None:
    """After a failure, close whatever connections the load generator still has."""
    try:
        loadgen.close_subscribers(5)
        loadgen.close_publishers(5)
    except Exception as exc:
        log(f"  could not reset the load generator: {exc}")


def _shared_replicas(setup: Setup, selected: set[str]) -> dict[str, Any]:
    """Idle connections (connect, memory), many rooms, fan-out, saturation: on the same
    ``profile.replicas`` replicas."""
    profile = setup.profile
    publishers = profile.replicas * profile.publishers_per_replica
    with setup.replicas(profile.replicas, publishers) as rig:
        return _on(rig, selected)


def _on(rig: Rig, selected: set[str]) -> dict[str, Any]:
    profile, log = rig.profile, rig.log
    results: dict[str, Any] = {}
    if selected & {"connect", "memory", "rooms"}:
        wait_until_idle(rig)
        connect, memory = idle_connections(rig, room_names(profile.rooms), profile.idle_connections)
        results["connect"], results["memory"] = connect, memory
        log(
            f"  connect: {connect['connections_per_s']:.0f} connections/s; memory: "
            f"{memory['kib_per_connection']:.1f} KiB per idle connection"
        )
        if "rooms" in selected:
            wait_until_idle(rig)
            results["rooms"] = many_rooms(rig)
            log("  rooms: " + summary(results["rooms"]))
        rig.loadgen.close_subscribers()
    if selected & {"fanout", "saturation"}:
        wait_until_idle(rig)
        subscribe(rig, [FANOUT_CHANNEL], profile.fanout_subscribers)
        if "fanout" in selected:
            wait_until_idle(rig)
            results["fanout"] = fanout(rig)
            log("  fanout: " + summary(results["fanout"]))
        if "saturation" in selected:
            wait_until_idle(rig)
            results["saturation"] = saturation(rig)
            log("  saturation: " + summary(results["saturation"]))
        rig.loadgen.close_subscribers()
    return results


def many_rooms(rig: Rig) -> dict[str, Any]:
    """Publications at a fixed rate, round-robin over every room of the idle connections."""
    profile = rig.profile
    rooms = room_names(profile.rooms)
    count = round(profile.room_rate * profile.room_seconds)
    result = deliveries(
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
    result = deliveries(
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
    result = deliveries(
        rig,
        lambda: rig.loadgen.saturate(
            [FANOUT_CHANNEL], seconds, profile.saturation_window, timeout=10
        ),
        per_publication=profile.fanout_subscribers,
        offered_rate=None,
        spill=True,
    )
    return {
        "subscribers": profile.fanout_subscribers,
        "window_per_publisher": profile.saturation_window,
        "publishing_seconds": seconds,
        **result,
        "deliveries_per_s": sustained(result, seconds),
        "deliveries_per_s_overall": result["deliveries_per_s"],
    }


def _replicas_label(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"


def measured_parts(results: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(label, workload, result)`` of every measured run; each scale size on its own."""
    for workload, result in results.items():
        if not isinstance(result, dict):
            continue
        if workload == "scale":
            for size, part in result.get("sizes", {}).items():
                yield f"scale ({_replicas_label(int(size))})", workload, part
        else:
            yield workload, workload, result


def busy_warnings(kind: str, results: dict[str, Any]) -> list[str]:
    """Where figures may not measure the server: the load generator was the limit, or
    processes outside the bench took a noticeable share of the machine."""
    client = [
        f"{label} (busiest load-generator process {max(result['loadgen_process_shares']):.0%} "
        f"of a core, all of them {result['loadgen_level']:.0%} of the CPU they could use; "
        f"servers {result['server_cpu_share']:.0%} of theirs)"
        for label, _, result in measured_parts(results)
        if result.get("limited_by") == "load generator" and result.get("loadgen_process_shares")
    ]
    other = [
        f"{label} {result['other_work_cpus']:.2f}"
        for label, _, result in measured_parts(results)
        if result.get("other_work_cpus", 0) >= OTHER_WORK
    ]
    warnings = []
    if client:
        warnings.append(
            f"{kind}: the load generator, not the server, was the limit in "
            + "; ".join(client)
            + ": rates there measure the client (give it more CPUs with --server-cpus; at "
            "saturation, let it use the servers' idle time with --spill on)"
        )
    if other:
        warnings.append(
            f"{kind}: other work on the machine used CPUs meanwhile ({', '.join(other)}): "
            "deliveries/s and latency there are disturbed (CPU per delivery much less so)"
        )
    return warnings


def loss_warnings(kind: str, results: dict[str, Any]) -> list[str]:
    """Every loss, said plainly; below saturation any loss is a failure."""
    warnings = []
    for label, workload, result in measured_parts(results):
        if result.get("failed_connections"):
            warnings.append(
                f"{kind} {label}: {result['failed_connections']:,} of "
                f"{result['connections']:,} connections failed to connect and subscribe "
                f"(first: {result['first_connect_failure']})"
            )
        if "lost" not in result:
            continue
        below = workload not in SATURATED
        if result.get("kept_up") is False:
            warnings.append(
                f"{kind} {label}: could not keep up with the offered rate "
                f"({result['deliveries_per_s']:,.0f} of {result['offered_deliveries_per_s']:,.0f}"
                " deliveries/s): this fixed-rate run was above its saturation"
            )
        if result["lost"]:
            what = "LOSS BELOW SATURATION" if below else "loss at saturation"
            warnings.append(
                f"{kind} {label}: {what}: {result['lost']:,} of {result['expected']:,} "
                f"deliveries had not arrived {result['drain_seconds']:g} s after the last "
                f"publication (dropped connections: {result['dropped_connections']}, "
                f"close codes: {result['close_codes'] or 'none'})"
            )
        if result["errors"]:
            warnings.append(
                f"{kind} {label}: {result['errors']} publications refused "
                f"(first: {result['first_error']})"
            )
    return warnings
