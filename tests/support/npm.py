"""npm packages the tests run under node, each directory pinned by its lock file."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.locks import exclusive


@functools.cache
def installed(directory: Path, needed_for: str) -> Path:
    """``directory/node_modules``, installed with ``npm ci`` from the lock file when stale.

    Skips the test when node or npm is missing (``.ci/run`` installs them).
    """
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip(f"node and npm are needed to run {needed_for} (node 20 or later)")
    modules = directory / "node_modules"
    stamp = modules / ".package-lock.json"
    lock = directory / "package-lock.json"
    with exclusive(directory):
        if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
            return modules
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed in {directory}:\n{result.stdout}{result.stderr}")
    return modules
