"""The bench in its smoke profile: it runs end to end and loses nothing below saturation.

Speed is the bench's business, never a test's: nothing here looks at a rate or a latency.
The Node peer is installed from its lock file first (``npm ci``, a few seconds); where that
is impossible (no node, no npm, no registry and an empty cache) the run goes on without it
and the Node test says why it was skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

for module in ("picows", "socketio", "matplotlib"):
    pytest.importorskip(module, reason=f"{module} is in the bench extra: pip install -e '.[bench]'")

from bench import nodejs  # noqa: E402 (after the skips: it needs the bench extra)

pytestmark = pytest.mark.timeout(300)
"""The first test also runs the bench (about 40 s on a quiet machine, minutes on a busy one)."""

ROOT = Path(__file__).resolve().parents[2]
BELOW_SATURATION = ("fanout", "rooms", "connections")
PER_SERVER = ("connect", "memory", "rooms", "fanout", "saturation", "connections")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One smoke run of ``python -m bench``, shared by the tests of this module."""
    servers = ["bare", "gateway", "socketio", "node"]
    node_missing = None
    try:
        nodejs.ensure_installed(timeout=120)
    except nodejs.NodeUnavailable as exc:
        node_missing = str(exc)
        servers.remove("node")
    output = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--servers",
            ",".join(servers),
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"bench failed:\n{run.stdout}\n{run.stderr}"
    results: dict[str, Any] = json.loads((output / "latest.json").read_text())
    results["_output"] = output
    results["_node_missing"] = node_missing
    return results


def measured(results: dict[str, Any]) -> dict[str, Any]:
    return {name: server for name, server in results["servers"].items() if "skipped" not in server}


def test_every_server_is_measured_in_every_workload(smoke_results: dict[str, Any]) -> None:
    profile = smoke_results["profile"]
    assert {"bare", "gateway", "socketio"} <= set(measured(smoke_results))
    for name, server in measured(smoke_results).items():
        assert "results" in server and "errors" not in server, f"{name}: {server}"
        results = server["results"]
        assert set(PER_SERVER) <= set(results), f"{name}: {sorted(results)}"
        assert results["connect"]["connections"] == profile["rooms"] * profile["room_subscribers"]
        assert results["saturation"]["received"] > 0
        assert results["connections"]["connections"] == profile["connections"]


def test_node_socketio_is_measured(smoke_results: dict[str, Any]) -> None:
    if smoke_results["_node_missing"]:
        pytest.skip(f"the Node peer could not be installed: {smoke_results['_node_missing']}")
    node = smoke_results["servers"]["node"]
    assert "results" in node and "errors" not in node, node
    assert smoke_results["machine"]["node"]["socket.io"]


@pytest.mark.parametrize("workload", BELOW_SATURATION)
def test_nothing_is_lost_below_saturation(smoke_results: dict[str, Any], workload: str) -> None:
    for name, server in measured(smoke_results).items():
        result = server["results"][workload]
        assert result["expected"] > 0
        assert result["publications"] == result["sent"], f"{name} {workload} refused some"
        assert result["received"] == result["expected"], f"{name} {workload}: {result}"
        assert result["lost"] == 0


def test_the_load_generators_cpu_is_measured_process_by_process(
    smoke_results: dict[str, Any],
) -> None:
    processes = smoke_results["loadgen_processes"]
    assert processes >= 2
    for server in measured(smoke_results).values():
        saturation = server["results"]["saturation"]
        assert len(saturation["loadgen_process_shares"]) == processes
        assert saturation["limited_by"] in ("servers", "load generator", "Redis", "neither")


def test_connections_on_one_replica_are_weighed_and_probed(smoke_results: dict[str, Any]) -> None:
    for name, server in measured(smoke_results).items():
        result = server["results"]["connections"]
        assert result["replicas"] == 1 and len(result["replica_cpu_s"]) == 1
        assert result["kib_per_connection"] > 0, name
        assert result["connect_seconds"] > 0
        assert result["readyz_ms"]["probes"] > 0 and result["readyz_idle_ms"]["probes"] > 0


def test_the_gateway_is_scaled_over_every_size(smoke_results: dict[str, Any]) -> None:
    sizes = smoke_results["profile"]["scale_sizes"]
    scale = smoke_results["servers"]["gateway"]["results"]["scale"]
    assert list(scale["sizes"]) == [str(size) for size in sizes]
    for size, result in scale["sizes"].items():
        assert len(result["replica_cpu_s"]) == int(size)
        assert result["received"] == result["expected"] > 0
        assert result["redis_cpu_s"] >= 0 and result["publications"] > 0
    assert smoke_results["scale_servers"] == ["gateway"]
    assert all(
        "scale" not in server.get("results", {})
        for name, server in measured(smoke_results).items()
        if name != "gateway"
    )


def test_report_has_table_ratios_and_chart(smoke_results: dict[str, Any]) -> None:
    output: Path = smoke_results["_output"]
    report = (output / "latest.md").read_text()
    assert "gateway ÷ bare" in report
    assert "connections on one replica" in report and "Scale: replicas on one Redis" in report
    if not smoke_results["_node_missing"]:
        assert "gateway ÷ node" in report
    assert smoke_results["machine"]["cpu_model"] in report
    assert (output / "latest.png").read_bytes().startswith(b"\x89PNG")
    assert smoke_results["targets"] and smoke_results["comparisons"]
