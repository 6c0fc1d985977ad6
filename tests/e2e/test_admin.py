"""The `/api/info` activity figures and the `/admin` dashboard, on two real replicas
relaying through a real redis-server, the dashboard in a real headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import ConsoleMessage, Page, Request, expect

from gateway.http.app import create_app
from gateway.settings import Settings
from tests.support.browser import ARTIFACTS, chromium, page_errors
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.inprocess import serve_app
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer

API_KEY = "admin-e2e-key-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TIMEOUT_MS = 15_000
TICKS_PER_SECOND = 20
TICK_SECONDS = 1 / TICKS_PER_SECOND
"""Pace of the background publisher (traffic for the dashboard, not synchronisation)."""
MAX_TICKS = 400
POSITIVE = re.compile(r"^(?!0$)\d")
_prefixes = itertools.count()


@pytest.fixture
def pair(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> list[GatewayProcess]:
    """Two replicas with an API key, and a registry of their own on the session's Redis."""
    prefix = f"admin{next(_prefixes)}"
    return gateways(2, redis_url=redis_server.url, redis_prefix=prefix, api_key=API_KEY)


async def nodes(replica: GatewayProcess) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=replica.http_url, headers=AUTH) as http:
        response = await http.get("/api/info")
    assert response.status_code == 200, response.text
    return {node["node"]: node for node in response.json()["nodes"]}


async def subscribers(replica: GatewayProcess, channel: str, count: int) -> list[ProtocolClient]:
    clients = [await ProtocolClient.connect(replica.ws_url) for _ in range(count)]
    for client in clients:
        await client.subscribe(channel)
    return clients


@asynccontextmanager
async def ticker(publisher: ProtocolClient, channel: str) -> AsyncIterator[None]:
    """Publishes to ``channel`` at a steady rate (bounded in count) while the block runs."""

    async def run() -> None:
        for tick in range(MAX_TICKS):
            await publisher.publish(channel, {"tick": tick})
            await asyncio.sleep(TICK_SECONDS)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_info_totals_and_top_channels_follow_publications_across_replicas(
    pair: list[GatewayProcess],
) -> None:
    first, second = pair
    far = await subscribers(second, "e2e:totals", 2)
    near = await subscribers(first, "e2e:totals", 1)
    before = await nodes(first)
    async with await ProtocolClient.connect(first.ws_url) as publisher:
        for n in range(5):
            await publisher.publish("e2e:totals", n)
    for client in far + near:
        await client.messages(5)

    async def both_replicas_counted() -> bool:
        now = await nodes(first)
        return (
            now[second.node_id]["totals"]["delivered"]
            - before[second.node_id]["totals"]["delivered"]
            == 10
        )

    await wait_until(both_replicas_counted, 10, "the second replica's deliveries in /api/info")
    after = await nodes(first)
    here, there = after[first.node_id], after[second.node_id]
    assert here["totals"]["published"] - before[first.node_id]["totals"]["published"] == 5
    assert there["totals"]["published"] == before[second.node_id]["totals"]["published"]
    assert here["totals"]["delivered"] - before[first.node_id]["totals"]["delivered"] == 5
    assert there["totals"]["sent_bytes"] > before[second.node_id]["totals"]["sent_bytes"]
    assert {"channel": "e2e:totals", "subscribers": 2, "messages": 5} in there["top_channels"]
    assert {"channel": "e2e:totals", "subscribers": 1, "messages": 5} in here["top_channels"]
    assert here["ready"] is there["ready"] is True
    for client in far + near:
        await client.close()


def page_problems(page: Page) -> list[str]:
    """Uncaught errors and Content-Security-Policy violations, for asserting there were none."""
    problems = page_errors(page)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    return problems


async def enter_key(page: Page, key: str) -> None:
    await page.fill("#key", key)
    await page.press("#key", "Enter")


async def test_dashboard_asks_for_the_key_then_shows_replicas_rates_and_channels(
    pair: list[GatewayProcess],
) -> None:
    first, second = pair
    clients = [
        *await subscribers(first, "prices:btc", 3),
        *await subscribers(second, "prices:btc", 2),
        *await subscribers(first, "chat:lobby", 2),
        *await subscribers(second, "chat:lobby", 2),
        *await subscribers(second, "alerts", 1),
    ]
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1180, "height": 900})
        errors = page_problems(page)
        requests: list[Request] = []
        page.on("request", lambda request: requests.append(request))
        await page.goto(f"{first.http_url}/admin?every=1")
        await expect(page.locator("#state")).to_have_attribute("data-state", "warn")

        await enter_key(page, "not-the-key")
        await expect(page.locator("#key-error")).to_contain_text("refused this API key")
        await expect(page.locator("#dashboard")).to_be_hidden()

        await enter_key(page, API_KEY)
        await expect(page.locator("#state")).to_have_attribute("data-state", "ok")
        await expect(page.locator("#key-error")).to_be_hidden()
        rows = page.locator("#replicas tr")
        await expect(rows).to_have_count(2, timeout=TIMEOUT_MS)
        await expect(rows.locator("td.name")).to_have_text([first.node_id, second.node_id])
        await expect(page.locator("#connections")).to_have_text("10", timeout=TIMEOUT_MS)

        async with await ProtocolClient.connect(second.ws_url) as publisher:
            refused = await publisher.request("publish", channel="bad name", data=1)
            assert refused["op"] == "error"
            async with ticker(publisher, "prices:btc"):
                await expect(page.locator("#delivered-rate")).to_have_attribute(
                    "data-value", POSITIVE, timeout=TIMEOUT_MS
                )
                top = page.locator("#channels tr").first
                await expect(top).to_have_attribute("data-channel", "prices:btc")
                await expect(top.locator("td").nth(1)).to_have_text("5")
                await expect(page.locator("#errors-total")).to_have_text("1", timeout=TIMEOUT_MS)
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

        await page.reload()
        await expect(rows).to_have_count(2, timeout=TIMEOUT_MS)
        second.kill()
        await expect(rows).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(rows.locator("td.name")).to_have_text([first.node_id])
        first.kill()
        await expect(page.locator("#banner")).to_contain_text("Cannot reach the gateway")
        await expect(page.locator("#state")).to_have_attribute("data-state", "bad")

        assert await page.evaluate("sessionStorage.length") == 1
        assert await page.evaluate("localStorage.length") == 0
        api_calls = [r for r in requests if "/api/" in r.url]
        assert api_calls and not [r.url for r in requests if API_KEY in r.url]
        assert {r.headers.get("authorization") for r in api_calls} == {
            "Bearer not-the-key",
            f"Bearer {API_KEY}",
        }
        assert errors == []
    for client in clients:
        await client.close()


async def test_dashboard_works_when_mounted_under_a_prefix(
    settings_factory: Callable[..., Settings],
) -> None:
    realtime = create_app(settings_factory(api_key=API_KEY))
    host = FastAPI(lifespan=realtime.router.lifespan_context)
    host.mount("/realtime", realtime)
    async with serve_app(host) as port, chromium() as browser:
        page = await browser.new_page()
        errors = page_problems(page)
        await page.goto(f"http://127.0.0.1:{port}/realtime/admin")
        await enter_key(page, API_KEY)
        await expect(page.locator("#replicas tr td.name")).to_have_text(["test-node"])
        await expect(page.locator("#replicas tr .pill")).to_have_text("ready")
        assert errors == []


async def test_dashboard_says_when_the_server_api_is_disabled(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serve_app(create_app(settings_factory())) as port, chromium() as browser:
        page = await browser.new_page()
        errors = page_problems(page)
        await page.goto(f"http://127.0.0.1:{port}/admin")
        await enter_key(page, API_KEY)
        await expect(page.locator("#key-error")).to_contain_text("no API key is configured")
        await expect(page.locator("#key")).to_be_focused()
        assert await page.evaluate("sessionStorage.length") == 0
        assert errors == []
