"""The bench's pure parts: what the load generator says to each server, and how figures
are combined and compared."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("picows", reason="picows is in the bench extra: pip install -e '.[bench]'")

from bench import connections, measure
from bench.cli import _parser as cli_parser
from bench.cli import _profile as cli_profile
from bench.limits import limit
from bench.loadgen.dialects import STAMP, PubSubDialect, SocketIODialect
from bench.measure import CpuSample, cpu_shares
from bench.report import scale_lines, target_checks
from bench.rounds import combine
from bench.scale import _derived
from bench.system import Placement
from bench.workloads import busy_warnings, loss_warnings


class FakePeer:
    def __init__(self, channel: str | None) -> None:
        self.channel = channel
        self.sent: list[bytes] = []
        self.ready = False
        self.acks = 0
        self.errors = 0

    def write(self, frame: bytes) -> None:
        self.sent.append(frame)

    def confirmed(self) -> None:
        self.ready = True

    def acknowledged(self, count: int) -> None:
        self.acks += count

    def failed(self, count: int, frame: bytes) -> None:
        self.errors += count


def test_socketio_subscriber_connects_then_joins_its_room() -> None:
    dialect, peer = SocketIODialect(), FakePeer("room-1")
    dialect.opened(peer)
    dialect.control(peer, b'0{"sid":"x","pingInterval":25000}')
    dialect.control(peer, b'40{"sid":"y"}')
    dialect.control(peer, b"2")
    assert peer.sent == [b"40", b'420["subscribe","room-1"]', b"3"]
    assert not peer.ready
    dialect.control(peer, b"430[true]")
    assert peer.ready


def test_socketio_publisher_is_ready_once_connected_and_counts_acks() -> None:
    dialect, peer = SocketIODialect(), FakePeer(None)
    dialect.control(peer, b'40{"sid":"y"}')
    assert peer.ready and peer.sent == []
    dialect.control(peer, b"437[true]")
    dialect.control(peer, b'44{"message":"no"}')
    assert (peer.acks, peer.errors) == (1, 1)


def test_pubsub_counts_batched_replies() -> None:
    dialect, peer = PubSubDialect(), FakePeer("fanout")
    dialect.opened(peer)
    assert peer.sent == [b'{"op":"subscribe","id":0,"channel":"fanout"}']
    dialect.control(peer, b'{"op":"published","id":1}\n{"op":"published","id":2}')
    dialect.control(peer, b'{"op":"error","id":3,"code":"rate_limited","message":"slow down"}')
    assert (peer.acks, peer.errors) == (2, 1)


def test_every_dialect_publishes_a_stamp_the_subscriber_finds() -> None:
    data = b'{"ts":123456789,"seq":1,"pad":"x"}'
    for dialect in (PubSubDialect(), SocketIODialect()):
        assert STAMP.findall(dialect.publish("fanout", data, 1)) == [b"123456789"]


def test_rounds_report_medians_but_the_worst_loss() -> None:
    rounds: list[dict[str, Any]] = [
        {"fanout": {"deliveries_per_s": value, "lost": lost, "kept_up": True, "timeline": [n]}}
        for n, (value, lost) in enumerate(((10.0, 0), (30.0, 5), (20.0, 0)))
    ]
    assert combine(rounds) == {
        "fanout": {"deliveries_per_s": 20.0, "lost": 5, "kept_up": True, "timeline": [2]}
    }


def test_targets_are_ratios_to_the_named_server() -> None:
    servers = {
        "bare": {"results": {"memory": {"kib_per_connection": 10.0}}},
        "gateway": {"results": {"memory": {"kib_per_connection": 16.0}}},
    }
    memory = [check for check in target_checks(servers) if "memory" in check["target"]]
    assert memory == [
        {
            "target": "memory: KiB per idle subscribed connection ≤ 1.5× bare",
            "ratio": 1.6,
            "met": False,
        }
    ]


def test_the_client_is_the_limit_only_when_busier_than_the_servers() -> None:
    assert limit(server_share=0.60, loadgen_level=0.93) == "load generator"
    assert limit(server_share=0.97, loadgen_level=0.93) == "servers"
    assert limit(server_share=0.97, loadgen_level=0.40) == "servers"
    assert limit(server_share=0.50, loadgen_level=0.40, redis_share=0.95) == "Redis"
    assert limit(server_share=0.20, loadgen_level=0.30) == "neither"


def _rig(spill: str) -> Any:
    placement = Placement(servers=[1], loadgen=[0], spill=spill)
    return SimpleNamespace(placement=placement, server_cores=1, loadgen_cores=1)


def _used(servers: float, loadgen: tuple[float, ...], redis: float = 0.0) -> CpuSample:
    total = servers + sum(loadgen) + redis
    return CpuSample((servers,), loadgen, redis, machine=total, coordinator=0.0)


def test_one_busy_load_generator_process_is_the_limit_though_the_others_idle() -> None:
    shares = cpu_shares(_rig("off"), _used(0.5, (0.9, 0.0, 0.0, 0.0)), wall=1.0)
    assert shares["loadgen_process_shares"] == [0.9, 0.0, 0.0, 0.0]
    assert shares["loadgen_level"] == 0.9
    assert shares["limited_by"] == "load generator"


def test_what_redis_takes_on_the_load_generators_cpu_is_not_theirs_to_use() -> None:
    shares = cpu_shares(_rig("off"), _used(0.7, (0.4, 0.4), redis=0.15), wall=1.0)
    assert round(shares["loadgen_level"], 3) == round(0.8 / 0.85, 3)
    assert shares["limited_by"] == "load generator"


def test_spilling_counts_the_servers_idle_time_as_the_load_generators() -> None:
    used = _used(0.6, (0.5, 0.5))
    assert cpu_shares(_rig("off"), used, wall=1.0)["limited_by"] == "load generator"
    spilled = cpu_shares(_rig("on"), used, wall=1.0, spilled=True)
    assert round(spilled["loadgen_level"], 3) == round(1.0 / 1.4, 3)
    assert spilled["limited_by"] == "neither" and spilled["loadgen_spilled"]


def test_cpu_samples_subtract_process_by_process() -> None:
    later = CpuSample((3.0, 5.0), (2.0,), 1.5, machine=20.0, coordinator=0.5)
    earlier = CpuSample((1.0, 1.0), (0.5,), 0.5, machine=10.0, coordinator=0.25)
    used = later - earlier
    assert used.servers_each == (2.0, 4.0) and used.servers == 6.0
    assert used.loadgen == 1.5
    assert used.other == 10.0 - 6.0 - 1.5 - 1.0 - 0.25


def test_client_limit_warning_names_the_part_and_the_remedy() -> None:
    busy = {
        "limited_by": "load generator",
        "loadgen_process_shares": [0.95, 0.2],
        "loadgen_level": 0.95,
        "server_cpu_share": 0.7,
        "other_work_cpus": 0.0,
    }
    calm = {**busy, "limited_by": "servers"}
    results = {"saturation": busy, "scale": {"sizes": {"1": calm, "2": busy}}}
    [warning] = busy_warnings("gateway", results)
    assert "saturation (busiest load-generator process 95% of a core" in warning
    assert "scale (2 replicas)" in warning and "scale (1 replica)" not in warning
    assert "--spill" in warning


def test_loss_in_a_scale_size_is_loss_at_saturation() -> None:
    lost = {
        "lost": 10,
        "expected": 100,
        "drain_seconds": 20,
        "dropped_connections": 1,
        "close_codes": {"4008": 1},
        "errors": 0,
    }
    warnings = loss_warnings("gateway", {"scale": {"sizes": {"4": lost}}, "fanout": lost})
    assert any("scale (4 replicas): loss at saturation: 10 of 100" in w for w in warnings)
    assert any("fanout: LOSS BELOW SATURATION" in w for w in warnings)


def test_connections_that_failed_to_connect_are_reported() -> None:
    result = {
        "connections": 15_000,
        "failed_connections": 63,
        "first_connect_failure": "TimeoutError('websocket handshake timeout')",
        "lost": 0,
        "errors": 0,
    }
    [warning] = loss_warnings("socketio", {"connections": result})
    assert warning == (
        "socketio connections: 63 of 15,000 connections failed to connect and subscribe "
        "(first: TimeoutError('websocket handshake timeout'))"
    )


def test_scale_derives_efficiency_and_where_redis_is_full() -> None:
    result = {
        "timeline": [1000] * 40,
        "publications": 400,
        "deliveries_per_s": 900.0,
        "received": 4000,
        "server_cpu_s": 0.04,
        "replica_deliveries": [3000, 1000],
        "replica_cpu_s": [0.03, 0.0],
        "redis_cpu_us_per_publication": 50.0,
        "server_cpu_us_per_delivery": 10.0,
    }
    derived = _derived(result, seconds=4.0, per_channel=10)
    assert derived["deliveries_per_s"] == 1000 * 10 * 3 / 3.0
    assert derived["publications_per_s"] == 100.0
    assert derived["deliveries_per_replica_cpu_s"] == 100_000.0
    assert derived["replica_deliveries_per_cpu_s"] == [100_000]
    assert derived["redis_full_publications_per_s"] == 20_000.0
    assert derived["redis_full_deliveries_per_s"] == 200_000.0
    assert derived["redis_full_server_cpus"] == 2.0


def _scale_results(server_cpus: int) -> dict[str, Any]:
    size = {
        "deliveries_per_s": 50_000.0,
        "speedup": 1.0,
        "server_cpu_us_per_delivery": 9.0,
        "deliveries_per_replica_cpu_s": 110_000.0,
        "replica_deliveries_per_cpu_s": [110_000],
        "server_cpu_share": 0.95,
        "redis_cpu_us_per_publication": 40.0,
        "redis_cpu_share": 0.1,
        "redis_full_publications_per_s": 25_000.0,
        "redis_full_deliveries_per_s": 2_500_000.0,
        "redis_full_server_cpus": 22.5,
        "publications_per_s": 500.0,
        "limited_by": "servers",
    }
    scale = {
        "channels": 10,
        "subscribers": 1000,
        "subscribers_per_channel": 100,
        "publishing_seconds": 8,
        "server_cpus": server_cpus,
        "can_grow_linearly": server_cpus >= 4,
        "sizes": {"1": size, "4": {**size, "speedup": 0.9}},
    }
    return {"servers": {"gateway": {"results": {"scale": scale}}}}


def test_scale_report_has_a_row_per_size_and_says_where_redis_binds() -> None:
    text = "\n".join(scale_lines(_scale_results(server_cpus=1)))
    assert "| gateway | 1 | 50,000 | 1.00× | 9.00 | 110,000 (110,000) | 95% | 40.0 |" in text
    assert "| gateway | 4 | 50,000 | 0.90× |" in text
    assert "cannot grow linearly" in text
    assert "full at about 25,000 publications/s" in text and "22.5 CPUs" in text


def test_scale_report_claims_no_limit_it_did_not_meet() -> None:
    text = "\n".join(scale_lines(_scale_results(server_cpus=4)))
    assert "cannot grow linearly" not in text


def test_profile_fields_parse_from_the_command_line() -> None:
    profile = cli_profile(
        cli_parser().parse_args(
            ["--smoke", "--set", "scale_sizes=1,2,8", "--set", "connections=500"]
        )
    )
    assert profile.scale_sizes == (1, 2, 8) and profile.connections == 500
    with pytest.raises(SystemExit, match="scale_sizes=0,2"):
        cli_profile(cli_parser().parse_args(["--set", "scale_sizes=0,2"]))


def test_the_connections_workload_refuses_more_than_one_process_may_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connections, "open_files_hard_limit", lambda: 4096)
    with pytest.raises(RuntimeError, match="hard limit is 4,096"):
        connections.check_limits(15_000)
    connections.check_limits(3_000)
    assert connections.loadgen_processes_needed(15_000) == 4


def test_quantiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert connections._quantile(values, 0.99) == 99.0
    assert connections._quantile(values[:10], 0.99) == 10.0
    assert connections._quantile([], 0.5) is None


def test_spill_auto_spills_only_on_a_quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    machine_busy = iter([10.0, 10.05, 20.0, 20.5])
    monkeypatch.setattr(measure.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(
        measure.CpuSample,
        "take",
        classmethod(lambda cls, rig: CpuSample((0.0,), (0.0,), 0.0, next(machine_busy), 0.0)),
    )
    monkeypatch.setattr(measure, "QUIET_PROBE", 1.0)
    assert measure._may_spill(_rig("auto"))
    assert not measure._may_spill(_rig("auto"))
    assert measure._may_spill(_rig("on")) and not measure._may_spill(_rig("off"))
