from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from gateway.ops import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_json_lines_carry_event_node_and_connection_context(captured: io.StringIO) -> None:
    logs.configure("info", "node-7", "json", captured)
    client_token = logs.client_id.set("abc")
    user_token = logs.user_id.set("ann")
    try:
        logging.getLogger("gateway.test").info("broker.connected url=%s", "redis://x")
    finally:
        logs.client_id.reset(client_token)
        logs.user_id.reset(user_token)
    entry = orjson.loads(captured.getvalue().splitlines()[-1])
    assert entry["event"] == "broker.connected"
    assert entry["message"] == "broker.connected url=redis://x"
    assert entry["node"] == "node-7" and entry["client"] == "abc" and entry["user"] == "ann"
    assert entry["level"] == "info" and entry["logger"] == "gateway.test"


def test_text_format_for_terminals(captured: io.StringIO) -> None:
    logs.configure("info", "node-7", "text", captured)
    logging.getLogger("gateway.test").warning("hub.history_gap channel=%s", "c")
    line = captured.getvalue().splitlines()[-1]
    assert "WARNING" in line and "hub.history_gap channel=c" in line


def test_connection_chatter_is_dropped_below_debug(captured: io.StringIO) -> None:
    logs.configure("info", "n", "json", captured)
    logging.getLogger("uvicorn.error").info("connection open")
    logging.getLogger("uvicorn.error").info('127.0.0.1:1 - "WebSocket /ws" [accepted]')
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1 and orjson.loads(lines[0])["event"] == "uvicorn.error"
