"""Handshakes from web pages: which origins pass, and what a refused one is told and logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.ops.refusals import RefusalLog
from gateway.security.origins import OriginPolicy
from gateway.session import handshake
from gateway.settings import load_settings
from tests.support.client import ProtocolClient
from tests.support.tokens import SECRET, connection_token

REFUSALS_LOGGER = "gateway.ops.refusals"


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Any:
    """A refusal log of this test's own (its rate budget untouched by other tests)."""
    monkeypatch.setattr(handshake, "REFUSALS", RefusalLog())
    caplog.set_level(logging.WARNING, logger=REFUSALS_LOGGER)
    return caplog


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == REFUSALS_LOGGER]


@dataclass(frozen=True)
class Refusal:
    status_code: int
    text: str


async def refused(url: str, **headers: str) -> Refusal:
    """The HTTP answer to a handshake the gateway refuses."""
    with pytest.raises(InvalidStatus) as denied:
        await connect(url, additional_headers=headers)
    response = denied.value.response
    return Refusal(response.status_code, (response.body or b"").decode())


async def test_a_page_opened_from_a_file_is_refused_with_a_reason_in_body_and_log(
    serve: Callable[..., Any], refusals: pytest.LogCaptureFixture
) -> None:
    async with serve() as gateway:
        response = await refused(gateway.ws_url, Origin="null")
    assert response.status_code == 403
    assert response.text == (
        "origin 'null' not allowed: pages opened from file:// send Origin: null; to let them "
        "connect, add null to GATEWAY_ALLOWED_ORIGINS (allowed_origins in the config file)\n"
    )
    [record] = refusal_lines(refusals)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith(
        "handshake.refused status=403 path='/ws' origin='null' client=127.0.0.1:"
    )
    assert message.endswith("reason=" + response.text.strip())


async def test_null_in_the_list_lets_file_pages_in(serve: Callable[..., Any]) -> None:
    async with serve(allowed_origins=["null"]) as gateway:
        headers = {"Origin": "null"}
        async with await ProtocolClient.connect(gateway.ws_url, additional_headers=headers) as c:
            assert c.welcome["op"] == "welcome"
        async with connect(f"{gateway.plain_url}?channel=chat", additional_headers=headers):
            pass
        own = {"Origin": gateway.http_url}
        async with await ProtocolClient.connect(gateway.ws_url, additional_headers=own) as c:
            assert c.welcome["op"] == "welcome"
        assert (await refused(gateway.ws_url, Origin="http://127.0.0.1:1")).status_code == 403


def test_null_in_the_environment_is_accepted_at_start(
    monkeypatch: pytest.MonkeyPatch, settings_factory: Callable[..., Any]
) -> None:
    settings_factory()
    monkeypatch.setenv("GATEWAY_ALLOWED_ORIGINS", "null, http://localhost:3000")
    settings = load_settings()
    assert settings.allowed_origins == ["null", "http://localhost:3000"]
    assert OriginPolicy(settings.allowed_origins).allows("null", "127.0.0.1:8000")


@pytest.mark.parametrize(
    "page", ["http://localhost:{port}", "http://localhost:3000", "http://[::1]:5173"]
)
async def test_a_loopback_page_may_reach_another_loopback_name_by_default(
    serve: Callable[..., Any], page: str
) -> None:
    async with serve() as gateway:
        origin = page.format(port=gateway.port)
        headers = {"Origin": origin}
        async with await ProtocolClient.connect(gateway.ws_url, additional_headers=headers) as c:
            assert c.welcome["op"] == "welcome"


async def test_every_refused_handshake_is_logged_with_reason_origin_and_address(
    serve: Callable[..., Any], refusals: pytest.LogCaptureFixture
) -> None:
    async with serve(strict_namespaces=True, max_connections=1) as gateway:
        base = gateway.plain_url
        assert (await refused(f"{base}?channel=bad%20name")).status_code == 400
        assert (await refused(f"{base}?channel=nowhere:x")).status_code == 404
        assert (await refused(f"{gateway.ws_url}?name=" + "n" * 65)).status_code == 400
        async with await ProtocolClient.connect(gateway.ws_url):
            full = await refused(gateway.ws_url, Origin=gateway.http_url)
        assert full.status_code == 503
    lines = [record.getMessage() for record in refusal_lines(refusals)]
    statuses = [line.split(" ", 2)[1] for line in lines]
    assert statuses == ["status=400", "status=404", "status=400", "status=503"]
    assert all(record.levelno == logging.WARNING for record in refusal_lines(refusals))
    assert "path='/websocket' origin=- client=127.0.0.1:" in lines[0]
    assert "reason=channel must be" in lines[0]
    assert "reason=channel 'nowhere:x' is in no configured namespace" in lines[1]
    assert "reason=name must be at most 64 characters" in lines[2]
    assert f"origin='{gateway.http_url}'" in lines[3] and "reason=replica full" in lines[3]


async def test_a_refusal_never_logs_the_token(
    serve: Callable[..., Any], refusals: pytest.LogCaptureFixture
) -> None:
    token = connection_token("alice")
    async with serve(jwt_secret=SECRET) as gateway:
        url = f"{gateway.ws_url}?token={token}"
        assert (await refused(url, Origin="https://evil.example")).status_code == 403
    [record] = refusal_lines(refusals)
    assert token not in record.getMessage()
    assert token.split(".")[2] not in refusals.text
    assert "path='/ws' origin='https://evil.example'" in record.getMessage()
