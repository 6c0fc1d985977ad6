"""The shipped nginx and haproxy configurations in front of a real replica that runs
*without* an internal port: the balancers alone keep the operator's endpoints private."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cli import nginx
from gateway.cli.cluster import write_nginx_config
from gateway.transport.ports import INTERNAL_PATHS
from tests.deploy.test_static_checks import HAPROXY_CFG, program
from tests.support.gateways import GatewayProcess
from tests.support.net import free_port, wait_until_sync

PUBLIC_PATHS = ["/", "/healthz", "/readyz", "/client/gateway.js"]
INTERNAL_PAGES = ["/api/info", "/metrics", "/admin", "/docs", "/redoc", "/openapi.json"]
"""A page under each of `INTERNAL_PATHS`, which the replica itself serves."""


@pytest.fixture(scope="module")
def one_port_replica() -> Iterator[GatewayProcess]:
    gateway = GatewayProcess("behind-balancer")
    try:
        yield gateway.start()
    finally:
        gateway.stop()


@pytest.fixture
def process() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def check_balancer(url: str, replica: GatewayProcess) -> None:
    wait_until_sync(lambda: answers(f"{url}/healthz"), 15, f"the balancer at {url}")
    assert len(INTERNAL_PAGES) == len(INTERNAL_PATHS)
    for path in INTERNAL_PAGES:
        assert httpx.get(replica.http_url + path).status_code in (200, 401), path
        assert httpx.get(url + path).status_code == 404, path
    for path in PUBLIC_PATHS:
        assert httpx.get(url + path).status_code == 200, path
    assert first_event_of_a_stream(url).startswith('data: {"op":"welcome"')


def first_event_of_a_stream(url: str) -> str:
    """The first event of ``/sse`` through the balancer, read as soon as the replica wrote
    it: a buffering balancer would hold it back (the stream stays open)."""
    timeout = httpx.Timeout(5.0)
    with httpx.stream("GET", f"{url}/sse?channel=balanced", timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                return line
    raise AssertionError("the stream ended without an event")


def test_nginx_keeps_internal_paths_off_the_public_side(
    one_port_replica: GatewayProcess, process: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    config = write_nginx_config(
        tmp_path,
        nginx.TEMPLATE.read_text(),
        f"127.0.0.1:{port}",
        [f"127.0.0.1:{one_port_replica.port}"],
    )
    command = [program("nginx"), "-p", str(tmp_path), "-c", str(config), "-e", "stderr"]
    process.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))
    check_balancer(f"http://127.0.0.1:{port}", one_port_replica)


def test_haproxy_keeps_internal_paths_off_the_public_side(
    one_port_replica: GatewayProcess, process: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The shipped file, with its compose-network addresses swapped for this machine's."""
    port, replica = free_port(), one_port_replica.port
    text = HAPROXY_CFG.read_text()
    text = re.sub(r"(?ms)^resolvers docker\n.*?(?=^\S|\Z)", "", text)
    text = text.replace("maxconn 20000", "maxconn 1000")  # within a test's open-file limit
    text = text.replace("bind :8000", f"bind 127.0.0.1:{port}")
    text = text.replace("check port 9000", f"check port {replica}")
    text = text.replace("resolvers docker init-addr last,libc,none", "init-addr libc")
    text = re.sub(r"(?m)^    server gateway-\d gateway-\d:8000\n", "", text)
    text = text.rstrip() + f"\n    server replica 127.0.0.1:{replica}\n"
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    assert "port 9000" not in text and "server gateway-1" not in text
    process.append(subprocess.Popen([program("haproxy"), "-db", "-f", str(config)]))
    check_balancer(f"http://127.0.0.1:{port}", one_port_replica)
