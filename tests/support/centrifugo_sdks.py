"""Centrifugo's own SDKs, run unchanged against servers of ours.

- centrifuge-js (npm, pinned in ``tests/centrifugo_sdks/package-lock.json``) under node:
  ``JSClient`` drives one client through ``tests/centrifugo_sdks/client.mjs``;
  ``JSDeltaApplier`` applies fossil deltas with the SDK's own codecs.
- centrifuge-python (PyPI, in the ``test`` extra) runs in-process in the tests.
- centrifuge-python's integration suite, from its sdist on PyPI: ``download_sdist`` and
  ``run_sdist_suite`` run its ``tests/test_client.py`` unchanged with pytest against
  whatever listens on 127.0.0.1:8000 (the suite's fixed address).

The npm packages are installed with ``npm ci`` on first use; without npm the tests that
need them are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import npm
from tests.support.gateways import REPO_ROOT
from tests.support.locks import exclusive

JS_SDK_DIR = REPO_ROOT / "tests" / "centrifugo_sdks"
SDIST_VERSION = "0.7.0"
SDIST_SUITE = "tests/test_client.py"
SDIST_SERVER_PORT = 8000
"""centrifuge-python's suite connects to ws://localhost:8000/connection/websocket."""

Event = dict[str, Any]


# centrifuge-js under node.


def _npm_ci() -> Path:
    """``tests/centrifugo_sdks/node_modules``, installed from the lock file when stale."""
    return npm.installed(JS_SDK_DIR, "centrifuge-js")


def js_sdk_version() -> str:
    """The installed centrifuge-js version."""
    package = _npm_ci() / "centrifuge" / "package.json"
    return str(json.loads(package.read_text())["version"])


class JSClient:
    """One centrifuge-js ``Centrifuge`` client in a node process, driven by commands.

    Every SDK event is collected in ``events`` (dicts with ``event``, ``scope`` and the
    SDK's context fields); ``call`` sends a command and returns its result.
    """

    def __init__(self, url: str, protocol: str = "json", **options: Any) -> None:
        self.config = {"url": url, "protocol": protocol, **options}
        self.events: list[Event] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._next_id = 0
        self.stderr = b""

    async def start(self, timeout: float = 20.0) -> JSClient:
        _npm_ci()
        self.process = await asyncio.create_subprocess_exec(
            "node",
            str(JS_SDK_DIR / "client.mjs"),
            json.dumps(self.config),
            cwd=JS_SDK_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda event: event["event"] == "ready", timeout, "node to start")
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            if line.strip():
                self.events.append(json.loads(line))
                self._changed.set()
        self._changed.set()

    async def send(self, op: str, **arguments: Any) -> int:
        """Send a command without waiting; its id."""
        assert self.process is not None and self.process.stdin is not None
        self._next_id += 1
        line = json.dumps({"id": self._next_id, "op": op, **arguments}) + "\n"
        self.process.stdin.write(line.encode())
        await self.process.stdin.drain()
        return self._next_id

    async def call(self, op: str, timeout: float = 10.0, **arguments: Any) -> Any:
        """Run a command; its result, or ``SDKError`` with the SDK's error code."""
        command_id = await self.send(op, **arguments)
        event = await self.wait_for(
            lambda event: event["event"] == "result" and event["id"] == command_id,
            timeout,
            f"the result of {op}",
        )
        if "error" in event:
            raise SDKError(event["error"]["code"], event["error"]["message"])
        return event["result"]

    async def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = 10.0, what: str = "an event"
    ) -> Event:
        """The first collected event that matches (waiting for it up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            if self._reader is not None and self._reader.done():
                raise RuntimeError(f"node exited while waiting for {what}: {await self._err()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout}s; events: {self.events}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def of(self, name: str) -> list[Event]:
        """The collected events called ``name``."""
        return [event for event in self.events if event["event"] == name]

    async def _err(self) -> str:
        if self.process is not None and self.process.stderr is not None and not self.stderr:
            with contextlib.suppress(TimeoutError):
                self.stderr = await asyncio.wait_for(self.process.stderr.read(), 2)
        return self.stderr.decode(errors="replace")

    async def close(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            assert self.process.stdin is not None
            with contextlib.suppress(ConnectionError):
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await self._reader

    async def __aenter__(self) -> JSClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SDKError(Exception):
    """A command an SDK ran failed; ``code`` is the SDK's (the server's error code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class JSDeltaApplier:
    """centrifuge-js's fossil applier (through its JSON and Protobuf codecs), in one node
    process for many deltas."""

    def __init__(self) -> None:
        _npm_ci()
        self.process = subprocess.Popen(
            ["node", str(JS_SDK_DIR / "fossil_apply.mjs")],
            cwd=JS_SDK_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def apply(self, source: bytes, delta: bytes, protocol: str) -> bytes:
        """The target; ``ValueError`` with the SDK's message if it refuses the delta."""
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {
            "protocol": protocol,
            "source": base64.b64encode(source).decode(),
            "delta": base64.b64encode(delta).decode(),
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the node delta applier exited")
        answer = json.loads(line)
        if "error" in answer:
            raise ValueError(answer["error"])
        return base64.b64decode(answer["target"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# centrifuge-python's own integration suite, from its sdist.


def download_sdist(directory: Path, version: str = SDIST_VERSION) -> Path:
    """Download centrifuge-python's sdist with pip, unpack it; the unpacked root."""
    with exclusive(directory):
        return _download_sdist(directory, version)


def _download_sdist(directory: Path, version: str) -> Path:
    root = directory / f"centrifuge_python-{version}"
    if (root / SDIST_SUITE).exists():
        return root
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--disable-pip-version-check",
            "--dest",
            str(directory),
            f"centrifuge-python=={version}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    archives = sorted(directory.glob(f"centrifuge_python-{version}.tar.gz"))
    if result.returncode != 0 or not archives:
        pytest.skip(f"could not download the centrifuge-python {version} sdist: {result.stderr}")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(directory, filter="data")
    if not (root / SDIST_SUITE).exists():
        raise RuntimeError(f"the sdist has no {SDIST_SUITE}: {sorted(root.iterdir())}")
    return root


@dataclass
class SuiteRun:
    """What one pytest run of the sdist suite did."""

    returncode: int
    output: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        return self.counts.get("passed", 0)


NOT_TESTS = ("test_get_client_token", "test_get_subscription_token")
"""Token helpers of the suite whose names pytest would take for tests (its authors run it
with unittest, which collects only the TestCase classes)."""

_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


def run_sdist_suite(root: Path, *pytest_args: str, timeout: float = 900) -> SuiteRun:
    """Run the sdist's ``tests/test_client.py`` with pytest, unchanged, from its root (so
    that it imports its own ``tests`` package); counts from pytest's closing line."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            SDIST_SUITE,
            # The sdist has no pytest configuration: stop pytest from taking ours from a
            # directory above it (our rootdir, pythonpath and `tests` package).
            "-c",
            os.devnull,
            "--rootdir",
            str(root.resolve()),
            "-p",
            "no:cacheprovider",
            "-q",
            *(f"--deselect={SDIST_SUITE}::{name}" for name in NOT_TESTS),
            *pytest_args,
        ],
        cwd=root.resolve(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    counts: dict[str, int] = {}
    closing = [line for line in output.splitlines() if _COUNT.search(line)]
    if closing:
        for number, word in _COUNT.findall(closing[-1]):
            counts["errors" if word.startswith("error") else word] = int(number)
    return SuiteRun(result.returncode, output, counts)


def collect_sdist_suite(root: Path) -> list[str]:
    """The test ids pytest collects from the sdist suite (nothing is run)."""
    run = run_sdist_suite(root, "--collect-only", timeout=120)
    if run.returncode != 0:
        raise RuntimeError(f"collecting the sdist suite failed:\n{run.output}")
    return [line for line in run.output.splitlines() if "::" in line]
