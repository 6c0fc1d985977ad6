"""The bench in its smoke profile: it runs end to end and loses nothing below saturation.

Speed is the bench's business, never a test's: nothing here looks at a rate or a latency.
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

ROOT = Path(__file__).resolve().parents[2]
BELOW_SATURATION = ("fanout", "rooms")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One smoke run of ``python -m bench``, shared by the tests of this module."""
    output = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, f"bench failed:\n{run.stdout}\n{run.stderr}"
    results: dict[str, Any] = json.loads((output / "latest.json").read_text())
    results["_output"] = output
    return results


def test_every_server_is_measured_in_every_workload(smoke_results: dict[str, Any]) -> None:
    profile = smoke_results["profile"]
    assert set(smoke_results["servers"]) == {"bare", "gateway", "socketio"}
    for name, server in smoke_results["servers"].items():
        assert "results" in server and "errors" not in server, f"{name}: {server}"
        results = server["results"]
        assert set(results) == {"connect", "memory", "rooms", "fanout", "saturation"}
        assert results["connect"]["connections"] == profile["rooms"] * profile["room_subscribers"]
        assert results["saturation"]["received"] > 0


@pytest.mark.parametrize("workload", BELOW_SATURATION)
def test_nothing_is_lost_below_saturation(smoke_results: dict[str, Any], workload: str) -> None:
    for name, server in smoke_results["servers"].items():
        result = server["results"][workload]
        assert result["expected"] > 0
        assert result["publications"] == result["sent"], f"{name} {workload} refused some"
        assert result["received"] == result["expected"], f"{name} {workload}: {result}"
        assert result["lost"] == 0


def test_report_has_table_ratios_and_chart(smoke_results: dict[str, Any]) -> None:
    output: Path = smoke_results["_output"]
    report = (output / "latest.md").read_text()
    assert "gateway ÷ bare" in report
    assert smoke_results["machine"]["cpu_model"] in report
    assert (output / "latest.png").read_bytes().startswith(b"\x89PNG")
    assert smoke_results["targets"] and smoke_results["comparisons"]
