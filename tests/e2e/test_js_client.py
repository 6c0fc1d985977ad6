"""The browser client (client/js/gateway.js) under node's test runner, against real replicas
on a real redis-server. Each suite is one file of ``client/js/test``."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from tests.support.gateways import GatewayProcess
from tests.support.node import run_node_suite
from tests.support.redis_server import RedisServer

JWT_SECRET = "js-client-test-secret"

NAMESPACES = orjson.dumps(
    {
        "nopub": {"publish": False},
        "pres": {"presence": True, "join_leave": True},
        "short": {"history_size": 2},
    }
).decode()


def test_pure_parts_of_the_client() -> None:
    status, output = run_node_suite("unit", {})
    assert status == 0, output[-8000:]


@pytest.mark.parametrize(
    ("suite", "settings"),
    [
        pytest.param("client", {"rate": 0}, id="client"),  # bursts 300 publishes at once
        pytest.param("features", {"history_reply_bytes": 2048}, id="features"),
        pytest.param("auth", {"jwt_secret": JWT_SECRET, "connect_timeout": 2}, id="auth"),
        pytest.param("delivery", {}, id="delivery"),
        pytest.param("sse", {"rate": 0}, id="sse"),
    ],
)
def test_client_against_replicas(
    suite: str,
    settings: dict[str, str | int],
    gateways: Callable[..., list[GatewayProcess]],
    redis_server: RedisServer,
) -> None:
    first, second, victim = gateways(
        3, redis_url=redis_server.url, max_message_bytes=8192, namespaces=NAMESPACES, **settings
    )
    assert victim.process is not None
    env = {
        "GW_TEST_URLS": f"{first.ws_url},{second.ws_url}",
        "GW_TEST_VICTIM": f"{victim.ws_url}|{victim.process.pid}",
        "GW_TEST_JWT_SECRET": JWT_SECRET,
    }
    status, output = run_node_suite(suite, env)
    assert status == 0, output[-8000:]
