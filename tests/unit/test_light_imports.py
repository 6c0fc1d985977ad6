"""What a light import pulls in: the Python client and gateway.wire load neither the web
framework nor the broker's Redis client (gateway/__init__ loads its public names lazily)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.gateways import REPO_ROOT

HEAVY = ("fastapi", "starlette", "uvicorn", "redis", "prometheus_client", "pydantic_settings")


@pytest.mark.parametrize("module", ["gateway_client", "gateway.wire.protocol", "gateway"])
def test_a_light_import_loads_no_framework(module: str) -> None:
    probe = (
        f"import sys, {module}; print(','.join(name for name in {HEAVY!r} if name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "", f"importing {module} loaded {result.stdout.strip()}"


def test_the_public_names_load_on_first_use() -> None:
    import gateway

    assert callable(gateway.create_app) and callable(gateway.mount)
    assert gateway.load_settings().node_id
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        gateway.nothing  # noqa: B018
