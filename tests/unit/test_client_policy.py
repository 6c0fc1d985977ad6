"""The Python client's reconnect and token policy (gateway_client.policy)."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from gateway_client.policy import (
    close_action,
    handshake_retryable,
    refresh_delay,
    token_expiry,
    with_name,
)


def _token(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.signature"


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (1000, "stop"),
        (1003, "stop"),
        (1009, "stop"),
        (4003, "stop"),
        (4001, "refresh"),
        (1001, "now"),
        (1012, "now"),
        (1006, "backoff"),
        (1011, "backoff"),
        (4008, "backoff"),
        (4029, "backoff"),
    ],
)
def test_close_codes_follow_the_protocol_table(code: int, action: str) -> None:
    assert close_action(code) == action


def test_only_overload_and_not_ready_handshake_refusals_are_retried() -> None:
    assert handshake_retryable(503) and handshake_retryable(429)
    assert not handshake_retryable(403) and not handshake_retryable(400)


def test_token_expiry_reads_the_exp_claim() -> None:
    assert token_expiry(_token({"sub": "a", "exp": 1_700_000_000})) == 1_700_000_000


@pytest.mark.parametrize(
    "token", ["", "opaque", "a.b.c", _token({"sub": "a"}), _token({"exp": True}), _token([1])]
)
def test_token_without_a_readable_expiry_has_none(token: str) -> None:
    assert token_expiry(token) is None


def test_refresh_comes_a_fifth_of_the_remaining_life_before_expiry_at_most_30s() -> None:
    now = time.time()
    assert refresh_delay(now + 10, now) == pytest.approx(8)
    assert refresh_delay(now + 3600, now) == pytest.approx(3570)
    assert refresh_delay(now - 5, now) == 0


def test_a_display_name_goes_into_the_query_with_the_other_parameters() -> None:
    assert with_name("ws://h:1/ws", "Zoë & co") == "ws://h:1/ws?name=Zo%C3%AB+%26+co"
    assert with_name("ws://h:1/ws?x=&name=old", " bob ") == "ws://h:1/ws?x=&name=bob"
    assert with_name("ws://h:1/ws?token=a.b.c", None) == "ws://h:1/ws?token=a.b.c"
    assert with_name("ws://h:1/ws", "  ") == "ws://h:1/ws"
