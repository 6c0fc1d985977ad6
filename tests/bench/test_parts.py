"""The bench's pure parts: what the load generator says to each server, and how figures
are combined and compared."""

from __future__ import annotations

from typing import Any

from bench.loadgen.dialects import STAMP, PubSubDialect, SocketIODialect
from bench.report import target_checks
from bench.rounds import combine


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
