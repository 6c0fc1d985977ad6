"""What ``gateway serve`` and ``gateway cluster`` say at start about misspelt variables."""

from __future__ import annotations

import socket
import subprocess
import sys

import orjson

from tests.support.gateways import REPO_ROOT, GatewayProcess, gateway_env

SENTENCE = "GATEWAY_APIKEY is not a setting; did you mean GATEWAY_API_KEY?"


def test_serve_logs_a_warning_naming_the_variable_and_the_setting() -> None:
    gateway = GatewayProcess("warned", apikey="s3cret", api_key="k").start()
    try:
        records = [orjson.loads(line) for line in gateway.log.read_text().splitlines()]
    finally:
        gateway.stop()
    warnings = [record for record in records if record["event"] == "settings.unknown_variable"]
    assert [(record["level"], record["message"]) for record in warnings] == [
        ("warning", f"settings.unknown_variable {SENTENCE}")
    ]
    assert "s3cret" not in gateway.log.read_text()


def test_cluster_warns_before_it_starts_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "cluster", "--port", str(port)],
            cwd=REPO_ROOT,
            env=gateway_env(apikey="s3cret"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    lines = result.stderr.splitlines()
    assert lines[0] == f"gateway cluster: warning: {SENTENCE}", result.stderr
    assert result.returncode == 1 and f"port {port} is not free" in result.stderr
