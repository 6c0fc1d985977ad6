"""``tsc`` and json-schema-to-typescript from ``client/js/typecheck`` (npm, pinned in its
lock file, installed with ``npm ci`` on first use)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import npm
from tests.support.gateways import REPO_ROOT

TYPECHECK_DIR = REPO_ROOT / "client" / "js" / "typecheck"


def node_modules() -> Path:
    """``client/js/typecheck/node_modules``, installed from the lock file when stale."""
    return npm.installed(TYPECHECK_DIR, "tsc")


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
