"""The public and internal ports of ``gateway serve``: what each serves, and a port that is
taken, against real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.support.client import ProtocolClient
from tests.support.gateways import REPO_ROOT, GatewayProcess, gateway_env
from tests.support.net import free_port

API_KEY = "internal-api-key-0123456789abcdef"
INTERNAL = ["/api/info", "/metrics", "/admin", "/docs", "/redoc", "/openapi.json"]
INTERNAL_ASSETS = ["/docs/assets/swagger-ui-bundle.js", "/docs/oauth2-redirect"]
EVERYWHERE = ["/", "/healthz", "/readyz", "/client/gateway.js", "/theme.css"]


@pytest.fixture(scope="module")
def split() -> Iterator[GatewayProcess]:
    """One replica with an internal port, shared by the tests that only read from it."""
    gateway = GatewayProcess("split", internal_port=free_port(), api_key=API_KEY)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


def internal_url(gateway: GatewayProcess) -> str:
    return f"http://127.0.0.1:{gateway.settings['internal_port']}"


def get(base: str, path: str) -> httpx.Response:
    return httpx.get(base + path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)


def serve(*args: str, **settings: str | int) -> subprocess.CompletedProcess[str]:
    """Run ``gateway serve`` expecting it to stop by itself."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", *args],
        env=gateway_env(**settings),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def without_date(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The response headers but ``date``, which moves on when a second passes between two."""
    return [(name, value) for name, value in headers.items() if name != "date"]


def test_internal_paths_answer_404_on_the_public_port(split: GatewayProcess) -> None:
    unknown = get(split.http_url, "/no-such-page")
    for path in INTERNAL + INTERNAL_ASSETS:
        response = get(split.http_url, path)
        assert response.status_code == 404, path
        assert response.content == unknown.content
        assert without_date(response.headers) == without_date(unknown.headers), path


def test_the_internal_port_serves_them(split: GatewayProcess) -> None:
    for path in INTERNAL + INTERNAL_ASSETS:
        assert get(internal_url(split), path).status_code == 200, path
    assert httpx.get(internal_url(split) + "/api/info").status_code == 401
    metrics = get(internal_url(split), "/metrics").text
    assert 'gateway_info{node="split"' in metrics and "gateway_half_open_connections" in metrics


def test_probes_pages_and_websockets_work_on_both_ports(split: GatewayProcess) -> None:
    for base in (split.http_url, internal_url(split)):
        for path in EVERYWHERE:
            assert get(base, path).status_code == 200, (base, path)


async def test_websockets_on_the_internal_port(split: GatewayProcess) -> None:
    ws = internal_url(split).replace("http://", "ws://") + "/ws"
    async with await ProtocolClient.connect(ws) as client:
        assert client.welcome["node"] == "split"


def test_the_start_up_log_names_both_ports(split: GatewayProcess) -> None:
    port, internal = split.port, split.settings["internal_port"]
    expected = f"public=http://127.0.0.1:{port} internal=http://127.0.0.1:{internal}"
    assert f"server.listening {expected}" in split.log.read_text()


def test_the_flag_wins_over_the_environment() -> None:
    flag_port, env_port = free_port(), free_port()
    gateway = GatewayProcess("flag", internal_port=env_port)
    try:
        gateway.start("--internal-port", str(flag_port))
        assert httpx.get(f"http://127.0.0.1:{flag_port}/metrics").status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{env_port}/metrics")
        assert httpx.get(f"{gateway.http_url}/metrics").status_code == 404
    finally:
        gateway.stop()


def test_without_an_internal_port_one_port_serves_everything() -> None:
    gateway = GatewayProcess("one-port", api_key=API_KEY)
    try:
        gateway.start()
        for path in INTERNAL + EVERYWHERE:
            assert get(gateway.http_url, path).status_code == 200, path
    finally:
        gateway.stop()


def test_a_public_port_in_use_is_the_one_thing_said() -> None:
    with listening_socket() as taken:
        port = taken.getsockname()[1]
        result = serve("--port", str(port))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"gateway serve: public port {port} on 127.0.0.1 is already in use; "
        "stop what listens there or choose another with --port"
    ]


def test_an_internal_port_in_use_is_the_one_thing_said_and_frees_the_public_one() -> None:
    public = free_port()
    with listening_socket() as taken:
        internal = taken.getsockname()[1]
        result = serve("--port", str(public), internal_port=internal)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"gateway serve: internal port {internal} on 127.0.0.1 is already")
    assert "--internal-port (or GATEWAY_INTERNAL_PORT)" in line
    with socket.socket() as again:
        again.bind(("127.0.0.1", public))


def test_the_same_port_for_both_is_a_configuration_error() -> None:
    port = free_port()
    result = serve("--port", str(port), "--internal-port", str(port))
    assert result.returncode == 2
    assert "internal port must differ from the public port" in result.stderr
