"""``gateway sub`` and ``gateway pub`` as subprocesses against real replicas."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

import orjson
import pytest

from tests.support.client import ProtocolClient
from tests.support.gateways import REPO_ROOT, GatewayProcess, gateway_env
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer


def cli_env(**extra: str) -> dict[str, str]:
    env = gateway_env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "client" / "python")])
    env.update(extra)
    return env


async def gateway_cli(*args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        cwd=REPO_ROOT,
        env=cli_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(*args: str, **env: str) -> tuple[int, str, str]:
    process = await gateway_cli(*args, **env)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"gateway {' '.join(args)} did not exit within 30 s") from None
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def clean(stderr: str) -> bool:
    """No traceback, no asyncio complaint: only the CLI's own lines."""
    return "Traceback" not in stderr and "Task exception" not in stderr


async def read_line(process: asyncio.subprocess.Process) -> dict[str, object]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 15)
    assert line, "gateway sub ended"
    frame: dict[str, object] = orjson.loads(line)
    return frame


async def test_pub_publishes_json_and_exits_0(cluster: list[GatewayProcess]) -> None:
    async with await ProtocolClient.connect(cluster[1].ws_url) as watcher:
        await watcher.subscribe("cli:pub")
        status, out, err = await run("pub", "cli:pub", '{"n": [1, 2]}', "--url", cluster[0].ws_url)
        assert status == 0, err
        assert orjson.loads(out)["op"] == "published"
        [message] = await watcher.messages(1)
        assert message["data"] == {"n": [1, 2]}


async def test_pub_sends_what_is_not_json_as_a_string(cluster: list[GatewayProcess]) -> None:
    async with await ProtocolClient.connect(cluster[0].ws_url) as watcher:
        await watcher.subscribe("cli:text")
        status, _, err = await run("pub", "cli:text", "hello world", GATEWAY_URL=cluster[0].ws_url)
        assert status == 0, err
        [message] = await watcher.messages(1)
        assert message["data"] == "hello world"


async def test_pub_refused_exits_non_zero_with_the_code_on_stderr(
    cluster: list[GatewayProcess],
) -> None:
    status, out, err = await run("pub", "bad channel", "1", "--url", cluster[0].ws_url)
    assert status != 0 and out == ""
    assert "bad_request" in err


async def test_pub_without_a_gateway_exits_non_zero_saying_so() -> None:
    status, _, err = await run("pub", "cli:x", "1", "--url", "ws://127.0.0.1:9/ws")
    assert status != 0
    assert "unreachable" in err and "ws://127.0.0.1:9/ws" in err


async def test_sub_prints_messages_as_json_lines_and_recovers_across_a_replica_kill(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    doomed, survivor = gateways(2, redis_url=redis_server.url)
    async with (
        TcpProxy(doomed.port) as balancer,
        await ProtocolClient.connect(survivor.ws_url) as publisher,
    ):
        sub = await gateway_cli("sub", "cli:a", "cli:b", "--url", balancer.ws_url)
        try:
            await stderr_lines(sub, "subscribed to cli:a", "subscribed to cli:b")
            await publisher.publish("cli:b", "first")
            frame = await read_line(sub)
            assert frame["op"] == "message" and frame["channel"] == "cli:b"
            assert frame["data"] == "first"
            assert frame["from"] == {"client": publisher.client_id, "user": None}
            balancer.target = None
            doomed.kill()
            await publisher.publish("cli:a", {"n": 2})
            balancer.target = survivor.port
            await stderr_lines(sub, "resubscribed to cli:a, 1 missed", "resubscribed to cli:b, 0")
            frame = await read_line(sub)
            assert (frame["channel"], frame["data"]) == ("cli:a", {"n": 2})
            await publisher.publish("cli:b", "live")
            assert (await read_line(sub))["data"] == "live"
        finally:
            sub.terminate()
            await sub.wait()


async def stderr_lines(process: asyncio.subprocess.Process, *wanted: str) -> None:
    """Read the process's stderr until a line containing each of ``wanted`` went by."""
    assert process.stderr is not None
    missing = set(wanted)
    async with asyncio.timeout(15):
        while missing:
            line = (await process.stderr.readline()).decode()
            assert line, f"stderr ended before {missing}"
            missing = {text for text in missing if text not in line}


async def test_sub_of_a_refused_channel_exits_non_zero(cluster: list[GatewayProcess]) -> None:
    status, out, err = await run("sub", "bad channel", "--url", cluster[0].ws_url)
    assert status != 0 and out == ""
    assert "bad_request" in err


COMMANDS = [("pub", "cli:x", "1"), ("sub", "cli:x")]


@pytest.mark.parametrize("command", COMMANDS, ids=["pub", "sub"])
async def test_an_http_url_exits_2_at_once_naming_the_expected_form(
    cluster: list[GatewayProcess], command: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{cluster[0].port}/ws"
    status, out, err = await run(*command, "--url", url)
    assert status == 2 and out == "" and clean(err), err
    assert f"gateway {command[0]}: --url: {url!r} is not a WebSocket URL" in err
    assert "ws://HOST[:PORT]/ws or wss://HOST[:PORT]/ws" in err
    assert f"did you mean {cluster[0].ws_url}?" in err


async def test_a_bad_gateway_url_variable_is_named() -> None:
    status, _, err = await run("sub", "cli:x", GATEWAY_URL="127.0.0.1:8000/ws")
    assert status == 2 and clean(err), err
    assert "GATEWAY_URL: '127.0.0.1:8000/ws' is not a WebSocket URL" in err


@pytest.mark.parametrize("command", COMMANDS, ids=["pub", "sub"])
async def test_the_plain_text_endpoint_is_refused_with_a_hint_for_ws(
    cluster: list[GatewayProcess], command: tuple[str, ...]
) -> None:
    status, out, err = await run(*command, "--url", cluster[0].plain_url)
    assert status == 1 and out == "" and clean(err), err
    assert f"refused: {cluster[0].plain_url} accepted the WebSocket without" in err
    assert "/websocket is the plain-text endpoint" in err and cluster[0].ws_url in err


@pytest.mark.parametrize("path", ["/", "/nope"])
@pytest.mark.parametrize("command", COMMANDS, ids=["pub", "sub"])
async def test_a_path_without_websockets_is_refused_with_a_hint_for_ws(
    cluster: list[GatewayProcess], command: tuple[str, ...], path: str
) -> None:
    url = f"ws://127.0.0.1:{cluster[0].port}{path}"
    status, out, err = await run(*command, "--url", url)
    assert status == 1 and out == "" and clean(err), err
    assert f"refused: {url} refused the WebSocket handshake with HTTP 403" in err
    assert f"protocol endpoint is /ws (under its mount prefix, if any): {cluster[0].ws_url}" in err
