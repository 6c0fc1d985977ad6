"""What ``gateway pub``/``sub`` suggest when a URL is no protocol endpoint."""

from __future__ import annotations

import pytest

from gateway.cli.client import refusal_hint
from gateway_client import ClientErrorCode, GatewayClientError


def refused(status: int | None) -> GatewayClientError:
    return GatewayClientError(ClientErrorCode.REFUSED, "refused", status=status)


@pytest.mark.parametrize(
    ("url", "status", "suggested"),
    [
        ("ws://h:8000/websocket", None, "ws://h:8000/ws"),
        ("wss://h/realtime/websocket?channel=chat", 404, "wss://h/realtime/ws"),
        ("ws://h:8000/", 403, "ws://h:8000/ws"),
        ("ws://h:8000", 403, "ws://h:8000/ws"),
        ("ws://h:8000/other", 404, "ws://h:8000/ws"),
        ("ws://h:8000/other", None, "ws://h:8000/ws"),
    ],
)
def test_a_wrong_path_gets_the_protocol_endpoint(
    url: str, status: int | None, suggested: str
) -> None:
    hint = refusal_hint(url, refused(status))
    assert hint is not None and hint.endswith(f": {suggested}")


def test_the_plain_text_endpoint_is_named_as_such() -> None:
    hint = refusal_hint("ws://h/websocket", refused(None))
    assert hint is not None and hint.startswith("/websocket is the plain-text endpoint")


@pytest.mark.parametrize(
    ("url", "status"), [("ws://h/ws", 403), ("ws://h/realtime/ws", 404), ("ws://h/x", 400)]
)
def test_no_hint_when_the_path_is_not_the_problem(url: str, status: int) -> None:
    assert refusal_hint(url, refused(status)) is None
