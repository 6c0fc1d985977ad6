"""Running the browser client's node test suites (``client/js/test``)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from tests.support.gateways import REPO_ROOT

JS_TESTS = REPO_ROOT / "client" / "js" / "test"


@functools.cache
def node_command() -> list[str]:
    """``node`` plus the flag that gives it a global WebSocket (node 20 and 21 need one)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed (node 20 or later runs the browser client tests)")
    probe = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    if subprocess.run([node, "-e", probe], check=False).returncode == 0:
        return [node]
    return [node, "--experimental-websocket"]


def run_node_suite(name: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run ``client/js/test/<name>.test.mjs``; its exit status and TAP output."""
    result = subprocess.run(
        [*node_command(), "--test", "--test-reporter=tap", str(JS_TESTS / f"{name}.test.mjs")],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr
