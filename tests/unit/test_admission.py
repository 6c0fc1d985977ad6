"""The admission tally and its checks, without sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.services.admission import Admission, TrustedProxies
from gateway.settings import Settings


def scope(host: str | None) -> dict[str, Any]:
    return {"type": "websocket", "path": "/ws", "client": (host, 50000) if host else None}


@pytest.fixture
def admission(settings_factory: Callable[..., Settings]) -> Callable[..., Admission]:
    def make(**overrides: Any) -> Admission:
        return Admission(settings_factory(**overrides))

    return make


def test_trusted_proxies_by_address_network_or_everyone() -> None:
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
    assert proxies.trust("127.0.0.1") and proxies.trust("10.1.2.3") and proxies.trust("fd00::1")
    assert not proxies.trust("127.0.0.2") and not proxies.trust("192.0.2.1")
    assert not proxies.trust("not-an-address")
    assert TrustedProxies(["*"]).trust("192.0.2.1")
    assert not TrustedProxies([]).trust("127.0.0.1")


def test_forwarded_allow_ips_are_checked_at_start(settings_factory: Callable[..., Settings]):
    assert settings_factory().forwarded_allow_ips == ["127.0.0.1"]
    assert settings_factory(forwarded_allow_ips="10.0.0.0/8, ::1").forwarded_allow_ips == [
        "10.0.0.0/8",
        "::1",
    ]
    assert settings_factory(forwarded_allow_ips="").forwarded_allow_ips == []
    for wrong in ("10.0.0.1/8", "proxy.internal", "*,10.0.0.1"):
        with pytest.raises(ValueError, match="forwarded_allow_ips"):
            settings_factory(forwarded_allow_ips=wrong)


def test_half_open_connections_count_until_released(admission: Callable[..., Admission]):
    tally = admission(max_connections=3, forwarded_allow_ips="")
    pending = [tally.accept("192.0.2.1") for _ in range(3)]
    assert tally.half_open == 3 and tally.held_by("192.0.2.1") == 3
    assert tally.check(scope("192.0.2.9"), open_connections=0) is not None
    for connection in pending:
        connection.release()
        connection.release()
    assert tally.half_open == 0 and tally.held_by("192.0.2.1") == 0
    assert tally.check(scope("192.0.2.9"), open_connections=0) is None


def test_a_kept_alive_connection_counts_again_for_its_next_request(
    admission: Callable[..., Admission],
) -> None:
    tally = admission()
    connection = tally.accept("192.0.2.1")
    connection.release()
    connection.hold()
    assert tally.half_open == 1


def test_max_connections_counts_open_and_half_open(admission: Callable[..., Admission]):
    tally = admission(max_connections=2)
    tally.accept("127.0.0.1")
    refusal = tally.check(scope("192.0.2.1"), open_connections=1)
    assert refusal is not None and refusal.status == 503
    assert refusal.message == "replica full: 2 connections"
    assert tally.check(scope("192.0.2.1"), open_connections=0) is None


def test_per_address_counts_open_and_half_open_of_that_address(
    admission: Callable[..., Admission],
) -> None:
    tally = admission(max_connections_per_ip=2, forwarded_allow_ips="")
    tally.opened("192.0.2.1")
    tally.accept("192.0.2.1")
    refusal = tally.check(scope("192.0.2.1"), open_connections=1)
    assert refusal is not None and refusal.status == 429
    assert refusal.message == "too many connections from 192.0.2.1: at most 2"
    assert tally.check(scope("192.0.2.2"), open_connections=1) is None
    tally.closed("192.0.2.1")
    assert tally.check(scope("192.0.2.1"), open_connections=0) is None
    assert dict(tally.open_at) == {}


def test_a_trusted_proxys_half_open_connections_count_for_no_address(
    admission: Callable[..., Admission],
) -> None:
    tally = admission(max_connections_per_ip=1)
    for _ in range(5):
        tally.accept("127.0.0.1")
    assert tally.half_open == 5 and tally.held_by("127.0.0.1") == 0
    assert tally.check(scope("203.0.113.7"), open_connections=0) is None


def test_half_open_connections_past_an_address_limit_take_no_place(
    admission: Callable[..., Admission],
) -> None:
    tally = admission(max_connections=10, max_connections_per_ip=2, forwarded_allow_ips="")
    flood = [tally.accept("192.0.2.1") for _ in range(100)]
    assert tally.half_open == 2 and tally.held_by("192.0.2.1") == 2
    assert tally.check(scope("192.0.2.2"), open_connections=0) is None
    for connection in flood:
        connection.release()
    assert tally.half_open == 0


def test_without_limits_nothing_is_refused(admission: Callable[..., Admission]) -> None:
    tally = admission()
    for _ in range(1000):
        tally.accept("192.0.2.1")
        tally.opened("192.0.2.1")
    assert tally.check(scope("192.0.2.1"), open_connections=1000) is None
    assert tally.check(scope(None), open_connections=1000) is None


def test_trust_verdicts_are_remembered_in_bounded_memory() -> None:
    from gateway.services import admission

    proxies = TrustedProxies(["10.0.0.0/8"])
    for number in range(admission.TRUST_CACHE_SIZE + 10):
        host = f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"
        assert proxies.trust(host)
        assert not proxies.trust(f"192.0.{number // 256 % 256}.{number % 256}")
    assert len(proxies._verdicts) <= admission.TRUST_CACHE_SIZE
    assert proxies.trust("10.9.9.9") and not proxies.trust("11.0.0.1")
