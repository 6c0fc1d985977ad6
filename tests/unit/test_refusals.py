"""The log of refused handshakes (gateway.ops.refusals): one warning each, bounded in rate."""

from __future__ import annotations

import logging

import pytest

from gateway.ops.refusals import LOG_BURST, LOG_RATE, RefusalLog

SCOPE = {
    "type": "websocket",
    "path": "/ws",
    "query_string": b"token=secret.token.value",
    "headers": [(b"host", b"gw.example.com"), (b"origin", b"https://evil.example")],
    "client": ("203.0.113.9", 51000),
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.ops.refusals"]


def test_a_refusal_is_one_warning_with_status_path_origin_client_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.ops.refusals")
    RefusalLog().refused(SCOPE, 403, "origin 'https://evil.example' not allowed")
    RefusalLog().refused({**SCOPE, "client": ("::1", 7), "headers": []}, 503, "draining")
    assert lines(caplog) == [
        "handshake.refused status=403 path='/ws' origin='https://evil.example' "
        "client=203.0.113.9:51000 reason=origin 'https://evil.example' not allowed",
        "handshake.refused status=503 path='/ws' origin=- client=[::1]:7 reason=draining",
    ]
    assert all(record.levelno == logging.WARNING for record in caplog.records)
    assert "secret" not in caplog.text


def test_a_flood_of_refusals_is_logged_at_a_bounded_rate_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.ops.refusals")
    clock = Clock()
    log = RefusalLog(clock)
    for _ in range(LOG_BURST + 1000):
        log.refused(SCOPE, 429, "too many connections from 203.0.113.9")
    assert len(lines(caplog)) == LOG_BURST
    clock.now += 1 / LOG_RATE
    log.refused(SCOPE, 429, "too many connections from 203.0.113.9")
    assert len(lines(caplog)) == LOG_BURST + 1
    assert lines(caplog)[-1].endswith("(and 1000 more refusals not logged)")
    clock.now += 1 / LOG_RATE
    log.refused(SCOPE, 429, "too many connections from 203.0.113.9")
    assert not lines(caplog)[-1].endswith("not logged)")
