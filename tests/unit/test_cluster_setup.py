"""What `gateway cluster` checks before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import cluster
from gateway.cli import main as cli
from gateway.settings import ConfigError, child_environment


def test_missing_programs_are_each_named_with_a_way_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(cluster.ClusterError) as missing:
        cluster.required_programs(need_redis=True, path=str(tmp_path))
    message = str(missing.value)
    assert message.startswith("redis-server and nginx not found")
    assert "apt-get install redis-server" in message and "apt-get install nginx" in message
    assert "GATEWAY_REDIS_URL" in message


def test_redis_server_is_not_needed_with_a_redis_url(tmp_path: Path) -> None:
    (tmp_path / "nginx").write_text("#!/bin/sh\n")
    (tmp_path / "nginx").chmod(0o755)
    assert cluster.required_programs(need_redis=False, path=str(tmp_path)) == {
        "nginx": str(tmp_path / "nginx")
    }


def test_cli_says_which_program_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.setattr(cluster, "find_program", lambda name, path=None: None)
    assert cli.main(["cluster", "--replicas", "2"]) == 1
    assert "gateway cluster: redis-server and nginx not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--replicas", "0"], "--replicas: must be at least 1, not 0"),
        (["--port", "70000"], "--port: must be a TCP port (1-65535), not 70000"),
        (["--port", "eighty"], "--port: must be an integer, not 'eighty'"),
    ],
)
def test_bad_arguments_are_refused(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["cluster", *arguments])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_child_environment_adds_gateway_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEP_ME", "1")
    environment = child_environment(node_id="gateway-1", drain_seconds=0.5, redis_cluster=False)
    assert environment["KEEP_ME"] == "1"
    assert environment["GATEWAY_NODE_ID"] == "gateway-1"
    assert environment["GATEWAY_DRAIN_SECONDS"] == "0.5"
    assert environment["GATEWAY_REDIS_CLUSTER"] == "false"


def test_child_environment_refuses_unknown_settings() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        child_environment(node_idd="x")
