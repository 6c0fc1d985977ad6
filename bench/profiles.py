"""How big each workload is: the full bench, and the smoke run CI uses."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Profile:
    """Counts, rates and time bounds of one bench run (the same for every server)."""

    name: str
    replicas: int = 2
    loadgen_processes: int = 0
    """Load-generator processes; 0: one per load-generator CPU, at least 2 (and more when
    the connections workload needs more open files than one process may have)."""
    rooms: int = 500
    """Many rooms: channels, each with ``room_subscribers`` subscribers."""
    room_subscribers: int = 10
    room_rate: float = 250
    """Publications per second, spread round-robin over the rooms."""
    room_seconds: float = 10
    fanout_subscribers: int = 1000
    fanout_rate: float = 10
    """Publications per second to the one fan-out channel."""
    fanout_seconds: float = 10
    saturation_seconds: float = 10
    saturation_window: int = 8
    """Publications each publisher keeps in flight while saturating."""
    publishers_per_replica: int = 2
    """Publisher connections per replica (in the first load-generator process)."""
    connect_concurrency: int = 50
    """Handshakes in flight per load-generator process."""
    connect_timeout: float = 30
    drain_seconds: float = 20
    """After the last publication: how long deliveries may still arrive."""
    settle_seconds: float = 1.0
    """Pause before reading memory, so the servers finish what connecting started."""
    quiet_seconds: float = 15
    """Before each measured phase: at most this long for the servers to become idle (finish
    closing the previous phase's connections, drain what it left queued)."""
    quiet_window: float = 0.5
    """The servers count as idle after a window this long in which they used (almost) no
    CPU."""
    connections: int = 15_000
    """Connections workload: subscribers of one channel, all on one replica."""
    connections_rate: float = 2
    """Publications per second to those subscribers (each reaches all of them)."""
    connections_seconds: float = 10
    readyz_interval: float = 0.1
    """Seconds between two ``GET /readyz`` probes while the connections are busy."""
    scale_sizes: tuple[int, ...] = (1, 2, 4)
    """Scale workload: replica counts, each measured on fresh replicas."""
    scale_channels: int = 10
    scale_subscribers: int = 1000
    """Subscribers in all, spread over the channels and over the replicas."""
    scale_publishers: int = 8
    """Publisher connections in all (each with ``saturation_window`` in flight), spread over
    the replicas: the same offered load at every size."""
    scale_seconds: float = 8

    @property
    def idle_connections(self) -> int:
        return self.rooms * self.room_subscribers

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


FULL = Profile(name="full")

SMOKE = Profile(
    name="smoke",
    rooms=20,
    room_subscribers=5,
    room_rate=100,
    room_seconds=0.5,
    fanout_subscribers=100,
    fanout_rate=50,
    fanout_seconds=0.5,
    saturation_seconds=0.5,
    saturation_window=4,
    drain_seconds=10,
    settle_seconds=0.2,
    quiet_window=0.2,
    connections=300,
    connections_seconds=1,
    scale_sizes=(1, 2),
    scale_channels=2,
    scale_subscribers=100,
    scale_publishers=4,
    scale_seconds=0.5,
)

PROFILES = {profile.name: profile for profile in (FULL, SMOKE)}
