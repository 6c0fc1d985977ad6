"""The import-layering check of `make lint` (lint-imports, contracts in pyproject.toml): the
tree keeps it, and a copy with an upward import or an import loop breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gateways import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "client/python")])}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the sources the check reads."""
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "gateway", tmp_path / "gateway", ignore=ignore)
    shutil.copytree(
        REPO_ROOT / "client/python/gateway_client",
        tmp_path / "client/python/gateway_client",
        ignore=ignore,
    )
    return tmp_path


def add_line(path: Path, line: str) -> None:
    text = path.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest)


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tree: Path) -> None:
    add_line(tree / "gateway/core/hub.py", "from gateway.services import publisher  # noqa")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "layers below it BROKEN" in result.stdout
    assert "gateway.core.hub -> gateway.services.publisher" in result.stdout


def test_an_import_loop_under_type_checking_breaks_the_check(tree: Path) -> None:
    add_line(
        tree / "gateway/core/passes.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.core import outbox",
    )
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "no import loops between the modules of any package of gateway BROKEN" in result.stdout


def test_the_client_importing_the_server_breaks_the_check(tree: Path) -> None:
    add_line(tree / "client/python/gateway_client/policy.py", "import gateway.core.hub  # noqa")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "only gateway.wire and gateway.aio of the gateway BROKEN" in result.stdout
