"""``tsc`` and json-schema-to-typescript from ``client/js/typecheck`` (npm, pinned in its
lock file, installed with ``npm ci`` on first use)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.gateways import REPO_ROOT

TYPECHECK_DIR = REPO_ROOT / "client" / "js" / "typecheck"


@functools.cache
def node_modules() -> Path:
    """``client/js/typecheck/node_modules``, installed from the lock file when stale."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("node and npm are needed to run tsc (node 20 or later)")
    modules = TYPECHECK_DIR / "node_modules"
    stamp = modules / ".package-lock.json"
    lock = TYPECHECK_DIR / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=TYPECHECK_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed in {TYPECHECK_DIR}:\n{result.stdout}{result.stderr}")
    return modules


def run_bin(name: str, *args: str) -> tuple[int, str]:
    """Run an installed package's program in ``client/js/typecheck``; status and output."""
    program = node_modules() / ".bin" / name
    result = subprocess.run(
        [str(program), *args],
        cwd=TYPECHECK_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def tsc(project: str) -> tuple[int, str]:
    """``tsc -p PROJECT``: its status and diagnostics."""
    return run_bin("tsc", "-p", project, "--pretty", "false")
