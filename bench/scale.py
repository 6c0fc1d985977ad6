"""The scale workload: 1, 2, 4 replicas of a server on one Redis, each size at saturation.

For each size in ``profile.scale_sizes``, fresh replicas; ``scale_subscribers`` subscribers
spread over ``scale_channels`` channels and over the replicas; ``scale_publishers``
publisher connections (the same number at every size, spread over the replicas, so that
only the replicas change) keep a window of publications in flight for ``scale_seconds``
(as in saturation, round-robin over the channels). Reported per size: sustained
deliveries/s, server CPU per delivery, deliveries per replica-CPU-second (overall and per
replica), and Redis's own CPU per publication (``/proc`` of redis-server).

Redis is one process on one core: every publication costs it a PUBLISH (plus, for the
gateway with history on, the script that stores it) and one write per replica subscribed
to the channel. From its CPU per publication follows the publication rate at which its
core is full, and from the servers' CPU per delivery, how many server CPUs the replicas
would need to get there: where Redis becomes the bottleneck. With fewer server CPUs than
replicas (2 cores: one for the servers) deliveries/s cannot grow with replicas; the figures
then show what adding a replica costs, and the report says so.
"""

from __future__ import annotations

from typing import Any

from bench.measure import Setup, deliveries, subscribe, summary, sustained, wait_until_idle


def channels(count: int) -> list[str]:
    return [f"scale-{index}" for index in range(count)]


def run(setup: Setup) -> dict[str, Any]:
    """Every size in turn, then what they show together."""
    profile = setup.profile
    per_channel, extra = divmod(profile.scale_subscribers, profile.scale_channels)
    if extra or not per_channel:
        raise ValueError(
            f"scale_subscribers ({profile.scale_subscribers}) must be a positive multiple of "
            f"scale_channels ({profile.scale_channels})"
        )
    sizes: dict[str, dict[str, Any]] = {}
    for size in profile.scale_sizes:
        sizes[str(size)] = _size(setup, size, per_channel)
        setup.log(f"  scale, {size} replica{'s' if size > 1 else ''}: " + _line(sizes[str(size)]))
    server_cpus = len(setup.placement.servers or [0])
    first = sizes[str(profile.scale_sizes[0])]["deliveries_per_s"]
    for result in sizes.values():
        result["speedup"] = result["deliveries_per_s"] / first if first else None
    return {
        "channels": profile.scale_channels,
        "subscribers": profile.scale_subscribers,
        "subscribers_per_channel": per_channel,
        "publishing_seconds": profile.scale_seconds,
        "publishers": profile.scale_publishers,
        "server_cpus": server_cpus,
        "can_grow_linearly": server_cpus >= max(profile.scale_sizes),
        "sizes": sizes,
    }


def _size(setup: Setup, size: int, per_channel: int) -> dict[str, Any]:
    profile = setup.profile
    names = channels(profile.scale_channels)
    with setup.replicas(size, profile.scale_publishers) as rig:
        wait_until_idle(rig)
        subscribe(rig, names, profile.scale_subscribers)
        wait_until_idle(rig)
        result = deliveries(
            rig,
            lambda: rig.loadgen.saturate(
                names, profile.scale_seconds, profile.saturation_window, timeout=10
            ),
            per_publication=per_channel,
            offered_rate=None,
            spill=True,
        )
    return {"replicas": size, **result, **_derived(result, profile.scale_seconds, per_channel)}


def _derived(result: dict[str, Any], seconds: float, per_channel: int) -> dict[str, Any]:
    """Sustained rates, per-replica efficiency, and where Redis's core would be full."""
    rate = sustained(result, seconds)
    publications_per_s = result["publications"] / seconds
    pairs = zip(result["replica_deliveries"], result["replica_cpu_s"], strict=True)
    efficiency = [delivered / cpu for delivered, cpu in pairs if cpu > 0]
    redis_us = result["redis_cpu_us_per_publication"]
    server_us = result["server_cpu_us_per_delivery"]
    redis_full = 1e6 / redis_us if redis_us else None
    derived: dict[str, Any] = {
        "deliveries_per_s": rate,
        "deliveries_per_s_overall": result["deliveries_per_s"],
        "publications_per_s": publications_per_s,
        "deliveries_per_replica_cpu_s": (
            result["received"] / result["server_cpu_s"] if result["server_cpu_s"] else None
        ),
        "replica_deliveries_per_cpu_s": [round(value) for value in efficiency],
        "redis_full_publications_per_s": redis_full,
        "redis_full_deliveries_per_s": redis_full * per_channel if redis_full else None,
        "redis_full_server_cpus": (
            redis_full * per_channel * server_us / 1e6 if redis_full and server_us else None
        ),
    }
    return derived


def _line(result: dict[str, Any]) -> str:
    text = summary(result)
    redis_us = result["redis_cpu_us_per_publication"]
    if redis_us:
        text += (
            f", Redis {redis_us:.1f} µs/publication ({result['redis_cpu_share']:.0%} of a core;"
            f" full at {result['redis_full_publications_per_s']:,.0f} publications/s)"
        )
    return text
