"""The Node peer's dependencies: ``npm ci`` from the committed lock file, once per lock file.

``bench/servers/node/`` holds ``package.json``, ``package-lock.json`` and ``server.mjs``;
``npm ci`` installs exactly what the lock file names into ``bench/servers/node/node_modules``
(git-ignored). A stamp there records the lock file's hash, so the next run installs again
only when the lock file changed. A file lock keeps two runs from installing at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent / "servers" / "node"
SERVER = NODE_DIR / "server.mjs"
LOCK_FILE = NODE_DIR / "package-lock.json"
MODULES = NODE_DIR / "node_modules"
STAMP = MODULES / ".bench-lock-sha256"
INSTALL_TIMEOUT = 300.0
PACKAGES = ("socket.io", "@socket.io/redis-adapter", "redis")
"""The packages whose versions the results record."""


class NodeUnavailable(RuntimeError):
    """node or npm is missing, or the dependencies could not be installed."""


def node_binary() -> str:
    """The ``node`` executable; raises NodeUnavailable when it is not installed."""
    node = shutil.which("node")
    if node is None:
        raise NodeUnavailable("node is not installed (node 18 or later runs the Node peer)")
    return node


def installed() -> bool:
    """Whether ``node_modules`` holds what the current lock file names."""
    return STAMP.is_file() and STAMP.read_text().strip() == _lock_hash()


def ensure_installed(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install the dependencies with ``npm ci`` unless they are current.

    Raises NodeUnavailable (with npm's last words) when node or npm is missing or the
    install fails, e.g. without network access and an empty npm cache.
    """
    node_binary()
    if installed():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailable("npm is not installed (it installs the Node peer's packages)")
    with _install_lock():
        if installed():
            return
        command = [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]
        try:
            run = subprocess.run(
                command, cwd=NODE_DIR, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise NodeUnavailable(f"npm ci did not finish within {timeout:.0f} s") from None
        if run.returncode != 0:
            tail = " ".join((run.stderr or run.stdout).strip().splitlines()[-3:])
            raise NodeUnavailable(f"npm ci failed (status {run.returncode}): {tail}")
        STAMP.write_text(_lock_hash() + "\n")


def versions() -> dict[str, str | None]:
    """node's version and the installed versions of the peer's main packages."""
    found: dict[str, str | None] = {"node": None}
    node = shutil.which("node")
    if node is not None:
        run = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
        found["node"] = run.stdout.strip().removeprefix("v") or None
    for package in PACKAGES:
        manifest = MODULES / package / "package.json"
        try:
            found[package] = str(json.loads(manifest.read_text())["version"])
        except (OSError, ValueError, KeyError):
            found[package] = None
    return found


def _lock_hash() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    MODULES.parent.mkdir(parents=True, exist_ok=True)
    with (NODE_DIR / ".install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
