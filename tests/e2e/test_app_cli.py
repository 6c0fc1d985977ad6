"""``gateway serve --app`` and ``gateway cluster --app``: the application's Gateway served by
real processes with the settings it was built with, under the command's own options."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.client import ProtocolClient
from tests.support.cluster import ClusterProcess
from tests.support.gateways import REPO_ROOT, GatewayProcess, gateway_env
from tests.support.redis_server import RedisServer


async def test_serve_app_uses_the_settings_the_app_was_built_with() -> None:
    replica = GatewayProcess("ignored-by-the-app").start("--app", "tests.apps.configured:gw")
    try:
        async with await ProtocolClient.connect(replica.ws_url) as client:
            assert client.welcome["node"] == "from-the-app"
            await client.subscribe("app:x")
            refused = await client.request("subscribe", channel="other:x")
            assert refused["code"] == "unknown_namespace"
            reply = await client.request("rpc", method="settings")
            assert reply["data"] == {"node": "from-the-app", "rate": 100}
    finally:
        replica.stop()


async def test_serve_app_options_override_the_apps_settings(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("rate = 0\n")
    replica = GatewayProcess("r").start(
        "--app",
        "tests.apps.configured:gw",
        "--config",
        str(config),
        "--node-id",
        "from-the-command",
        "--redis-url",
        redis_server.url,
    )
    try:
        async with await ProtocolClient.connect(replica.ws_url) as client:
            assert client.welcome["node"] == "from-the-command"
            reply = await client.request("rpc", method="settings")
            assert reply["data"] == {"node": "from-the-command", "rate": 0}
            assert (await client.request("subscribe", channel="other:x"))["code"] == (
                "unknown_namespace"
            )
        with redis_server.client() as redis:
            assert any(b"from-the-command" in key for key in redis.keys("gw:{#nodes}*"))
    finally:
        replica.stop()


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "1", *args],
        cwd=REPO_ROOT,
        env=gateway_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (
            "tests.apps.hooked",
            "--app takes MODULE:ATTR (a Gateway object), not 'tests.apps.hooked'",
        ),
        ("tests.apps.nowhere:gw", "no module named 'tests.apps.nowhere'"),
        ("tests.apps.hooked:nothing", "module 'tests.apps.hooked' has no 'nothing'"),
        ("tests.apps.hooked:seen", "seen is a dict, not a gateway.Gateway"),
    ],
)
def test_a_wrong_app_is_named_with_exit_status_2(app: str, message: str) -> None:
    result = serve("--app", app)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_options_cannot_change_an_app_built_at_import() -> None:
    result = serve("--app", "tests.apps.built:gw", "--node-id", "other")
    assert result.returncode == 2
    assert "built already" in result.stderr


async def test_cluster_app_runs_every_replica_with_the_hooks() -> None:
    cluster = ClusterProcess(replicas=2, settings={"drain_seconds": 1})
    try:
        cluster.start("--app", "tests.apps.hooked:gw")
        clients = [await ProtocolClient.connect(f"{cluster.ws_url}?as=u{n}") for n in range(4)]
        try:
            assert {client.welcome["node"] for client in clients} == {"gateway-1", "gateway-2"}
            for client in clients:
                reply = await client.request("rpc", method="whoami")
                assert reply["data"]["user"] == client.welcome["user"]
            one, two = (
                clients[0],
                next(c for c in clients if c.welcome["node"] != clients[0].welcome["node"]),
            )
            await two.subscribe("typed:cluster")
            await one.publish("typed:cluster", {"text": "across"})
            [message] = await two.messages(1, "typed:cluster")
            assert message["data"] == {"text": "ACROSS", "by": one.welcome["user"]}
        finally:
            for client in clients:
                await client.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{cluster.url}/healthz")).status_code == 200
        cluster.signal(signal.SIGINT)
        assert cluster.wait() == 0
    finally:
        cluster.kill()
