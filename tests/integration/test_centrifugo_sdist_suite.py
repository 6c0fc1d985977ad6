"""centrifuge-python's own integration suite (``tests/test_client.py`` of its sdist on
PyPI), run unchanged against a gateway on port 8000 configured by
deploy/centrifugo-sdk-tests.toml, the equivalent of the sdist's docker-compose.yml.

The run reports its pass count; every test must pass (docs/centrifugo.md lists what each
needs from the server).
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import load_settings
from tests.support.centrifugo_sdks import (
    SDIST_SERVER_PORT,
    collect_sdist_suite,
    download_sdist,
    run_sdist_suite,
)
from tests.support.gateways import REPO_ROOT, GatewayProcess
from tests.support.redis_server import RedisServer

CONFIG = REPO_ROOT / "deploy" / "centrifugo-sdk-tests.toml"
SDIST_CACHE = REPO_ROOT / "test-artifacts" / "centrifuge-python-sdist"

# Centrifugo's option (as its environment variable names it, after the namespace part)
# -> our key in a [namespaces.NAME] table, and how the value is written there.
NAMESPACE_OPTIONS: dict[str, tuple[str, Any]] = {
    "HISTORY_SIZE": ("history_size", int),
    "HISTORY_TTL": ("history_ttl", lambda value: int(value.removesuffix("s"))),
    "PRESENCE": ("presence", lambda value: value == "true"),
    "JOIN_LEAVE": ("join_leave", lambda value: value == "true"),
    "FORCE_PUSH_JOIN_LEAVE": ("force_push_join_leave", lambda value: value == "true"),
    "FORCE_RECOVERY": ("force_recovery", lambda value: value == "true"),
    "ALLOW_PUBLISH_FOR_SUBSCRIBER": ("publish", lambda value: value == "true"),
    "ALLOW_PRESENCE_FOR_SUBSCRIBER": ("allow_presence_for_subscriber", lambda v: v == "true"),
    "ALLOW_HISTORY_FOR_SUBSCRIBER": ("allow_history_for_subscriber", lambda v: v == "true"),
    "ALLOWED_DELTA_TYPES": ("allowed_delta_types", lambda value: value.split(",")),
    "DELTA_PUBLISH": ("delta_publish", lambda value: value == "true"),
}


@pytest.fixture(scope="module")
def sdist() -> Path:
    return download_sdist(SDIST_CACHE)


def compose_environment(sdist: Path) -> dict[str, str]:
    compose = yaml.safe_load((sdist / "docker-compose.yml").read_text())
    entries = compose["services"]["centrifugo"]["environment"]
    return dict(entry.split("=", 1) for entry in entries)


def test_the_suite_is_found_and_collected(sdist: Path) -> None:
    tests = collect_sdist_suite(sdist)
    print(f"\ncentrifuge-python's tests/test_client.py: {len(tests)} tests collected")
    assert len(tests) >= 60
    for expected in (
        "TestClient::test_client_connects_disconnects",
        "TestPubSub::test_pub_sub",
        "TestAutoRecovery::test_auto_recovery",
        "TestServerSideSubscriptions::test_server_side_subs",
        "TestGetState::test_get_state_called_again_on_unrecoverable_position",
    ):
        assert any(test.endswith(expected) for test in tests), expected


def test_the_config_is_equivalent_to_the_sdists_docker_compose(sdist: Path) -> None:
    environment = compose_environment(sdist)
    ours = tomllib.loads(CONFIG.read_text())
    assert ours["jwt_secret"] == environment.pop("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY")
    assert environment.pop("CENTRIFUGO_CLIENT_SUBSCRIBE_TO_USER_PERSONAL_CHANNEL_ENABLED") == "true"
    assert ours["personal_channel"] is True
    environment.pop("CENTRIFUGO_LOG_LEVEL")
    names = environment.pop("CENTRIFUGO_CHANNEL_NAMESPACES").split()
    assert set(ours["namespaces"]) == {"default", *names}
    for variable, value in environment.items():
        prefix, option = _split(variable, names)
        key, convert = NAMESPACE_OPTIONS[option]
        assert ours["namespaces"][prefix][key] == convert(value), variable


def _split(variable: str, namespaces: list[str]) -> tuple[str, str]:
    default = "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_"
    if variable.startswith(default):
        return "default", variable.removeprefix(default)
    for name in namespaces:
        prefix = f"CENTRIFUGO_CHANNEL_NAMESPACES_{name.upper()}_"
        if variable.startswith(prefix):
            return name, variable.removeprefix(prefix)
    raise AssertionError(f"{variable} is not mapped")


def test_the_gateway_loads_the_config() -> None:
    load_settings(CONFIG)


def test_the_suite_passes_against_the_gateway(sdist: Path, redis_server: RedisServer) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", SDIST_SERVER_PORT)) == 0:
            pytest.skip(f"port {SDIST_SERVER_PORT} is taken; the suite can use no other")
    gateway = GatewayProcess(
        "sdk-suite", port=SDIST_SERVER_PORT, config=str(CONFIG), redis_url=redis_server.url
    )
    try:
        gateway.start()
        run = run_sdist_suite(sdist, "--timeout=60")
    finally:
        gateway.kill()
    print(f"\n{run.output[-3000:]}\ncentrifuge-python's suite: {run.passed} passed")
    assert run.counts.get("failed", 0) == 0 and run.counts.get("errors", 0) == 0, run.counts
    assert run.passed > 0
