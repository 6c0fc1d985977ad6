"""Secrets never reach the logs (gateway.redaction)."""

from __future__ import annotations

import logging

import pytest

from gateway.redaction import RedactSecrets, redact, redact_url
from gateway.settings import Settings
from tests.support.tokens import connection_token


def test_token_in_a_query_string_is_redacted() -> None:
    token = connection_token()
    line = f'127.0.0.1:5 - "WebSocket /ws?channel=a&token={token}&x=1" 403'
    assert redact(line) == '127.0.0.1:5 - "WebSocket /ws?channel=a&token=***&x=1" 403'
    assert redact("/websocket?TOKEN=abc") == "/websocket?TOKEN=***"
    assert redact("/api?api_key=k1&b=2") == "/api?api_key=***&b=2"


def test_a_jwt_anywhere_is_redacted() -> None:
    token = connection_token()
    assert redact(f"refused {token}, retrying") == "refused ***, retrying"


def test_token_fields_of_logged_frames_are_redacted() -> None:
    line = """< TEXT '{"op":"refresh","id":1,"token":"eyJhbGciOi...ZmtvP54a"}' [9 bytes]"""
    assert redact(line) == """< TEXT '{"op":"refresh","id":1,"token":"***"}' [9 bytes]"""
    assert redact('{"op":"connect", "token" : "abc') == '{"op":"connect", "token" : "***'


def test_authorization_header_values_are_redacted() -> None:
    assert redact("< authorization: Bearer k3y") == "< authorization: Bearer ***"


def test_other_text_is_left_alone() -> None:
    for text in ("subscribe channel=chat:1", "tokens=3", "a=b&c=d", ""):
        assert redact(text) == text


def test_filter_rewrites_message_and_arguments(caplog: pytest.LogCaptureFixture) -> None:
    token = connection_token()
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactSecrets())
    try:
        with caplog.at_level(logging.INFO, logger="test.redaction"):
            logger.info('"WebSocket %s" [accepted]', f"/ws?token={token}")
            logger.info(f"inline {token}")
    finally:
        logger.filters.clear()
    assert token not in caplog.text
    assert '"WebSocket /ws?token=***" [accepted]' in caplog.text


def test_settings_repr_hides_every_secret() -> None:
    settings = Settings(
        redis_url="redis://app:redis-pass@db:6379/0",
        jwt_secret="jwt-secret-value",
        api_key="api-key-value",
        node_id="n1",
    )
    for text in (repr(settings), str(settings)):
        for secret in ("redis-pass", "jwt-secret-value", "api-key-value"):
            assert secret not in text
        assert "redis://app:***@db:6379/0" in text
    assert settings.redis_url == "redis://app:redis-pass@db:6379/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://h:1/0", "redis://h:1/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("rediss://user:p%40ss@h/0", "rediss://user:***@h/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
