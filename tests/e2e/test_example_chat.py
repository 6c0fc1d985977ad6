"""examples/fastapi_chat as a user runs it (``python -m examples.fastapi_chat``, on a real
Redis), in Chromium: log in with a session cookie, chat, type, be refused a room, see what
the backend route and the worker process publish."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.browser import ARTIFACTS, chromium, page_errors
from tests.support.client import ProtocolClient
from tests.support.gateways import REPO_ROOT, gateway_env
from tests.support.net import free_port
from tests.support.redis_server import RedisServer

TIMEOUT_MS = 10_000


class ChatApp:
    def __init__(self, redis: RedisServer, database: Path) -> None:
        self.port = free_port()
        self.database = database
        self.env = {**gateway_env(redis_url=redis.url), "CHAT_DB": str(database)}
        self.log = database.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.fastapi_chat", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/realtime/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(self.log.read_text())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)


@pytest.fixture
def chat_app(redis_server: RedisServer, tmp_path: Path) -> Iterator[ChatApp]:
    app = ChatApp(redis_server, tmp_path / "chat.sqlite3")
    app.start()
    yield app
    app.stop()


async def log_in(browser: Browser, app: ChatApp, name: str) -> Page:
    page = await (await browser.new_context()).new_page()
    await page.goto(app.url)
    await page.fill("#name", name)
    await page.click("#login button")
    await expect(page.locator("body")).to_have_attribute(
        "data-connected", "yes", timeout=TIMEOUT_MS
    )
    await expect(page.locator("#who")).to_have_text(f"as {name}")
    return page


async def test_the_chat_example_end_to_end(chat_app: ChatApp) -> None:
    async with chromium() as browser:
        alice = await log_in(browser, chat_app, "alice")
        bob = await log_in(browser, chat_app, "bob")
        errors = page_errors(alice) + page_errors(bob)
        try:
            # typing: an rpc whose method publishes in process
            await alice.type("#text", "hel")
            await expect(bob.locator("#typing")).to_have_text(
                "alice is typing…", timeout=TIMEOUT_MS
            )

            # a message: validated, stored in SQLite by on_publish, published with its author
            await alice.fill("#text", "hello bob")
            await alice.press("#text", "Enter")
            said = bob.locator("#log p", has_text="hello bob")
            await expect(said).to_have_text("alice: hello bob", timeout=TIMEOUT_MS)
            with sqlite3.connect(chat_app.database) as db:
                rows = db.execute("select room, user, text from messages").fetchall()
            assert rows == [("lobby", "alice", "hello bob")]

            # invalid data is refused with pydantic's errors, and not stored
            code, details = await alice.evaluate(
                """() => chat.client.publish("chat:lobby", { text: "" })
                    .catch((error) => [error.code, error.details])"""
            )
            assert code == "invalid_data"
            assert details == [
                {
                    "loc": ["text"],
                    "msg": "String should have at least 1 character",
                    "type": "string_too_short",
                }
            ]

            # a room bob has not joined is refused by on_subscribe; joining lets him in
            await bob.fill("#other", "staff")
            await bob.click("#peek")
            refused = bob.locator("#errors li[data-code=forbidden]").first
            await expect(refused).to_contain_text("join 'staff' first", timeout=TIMEOUT_MS)
            await bob.click("#join")
            await alice.fill("#other", "staff")
            await alice.click("#join")
            await expect(alice.locator("#room")).to_have_text("staff")
            await alice.evaluate("() => chat.client.publish('chat:staff', { text: 'in staff' })")
            await expect(bob.locator("#log p", has_text="in staff")).to_be_visible(
                timeout=TIMEOUT_MS
            )
            await bob.evaluate("() => chat.open('lobby')")
            await alice.evaluate("() => chat.open('lobby')")
            await expect(bob.locator("#log p", has_text="hello bob")).to_be_visible()

            # the backend route publishes with gw.publish
            status = await alice.evaluate(
                """() => fetch("/notify", {
                    method: "POST",
                    headers: { "Content-Type": "application/json" },
                    body: JSON.stringify({ text: "deploy at noon" }),
                }).then((response) => response.status)"""
            )
            assert status == 200
            for page in (alice, bob):
                notice = page.locator("#log p.server", has_text="deploy at noon")
                await expect(notice).to_have_text("server: deploy at noon", timeout=TIMEOUT_MS)

            # a worker process publishes with gateway.Publisher
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "examples.fastapi_chat.worker",
                "the build passed",
                cwd=REPO_ROOT,
                env=chat_app.env,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(worker.communicate(), 60)
            assert worker.returncode == 0 and b"published at offset" in out
            for page in (alice, bob):
                notice = page.locator("#log p.server", has_text="the build passed")
                await expect(notice).to_have_text("worker: the build passed", timeout=TIMEOUT_MS)
            assert errors == []
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            await alice.screenshot(path=ARTIFACTS / "fastapi_chat-alice.png")
            await bob.screenshot(path=ARTIFACTS / "fastapi_chat-bob.png")
            raise


async def test_a_websocket_without_a_session_is_closed_with_4001(chat_app: ChatApp) -> None:
    probe = await ProtocolClient.connect(
        f"ws://127.0.0.1:{chat_app.port}/realtime/ws", welcome=False
    )
    code, frames = await probe.closed()
    assert code == 4001 and frames[0]["reason"] == "log in first"
