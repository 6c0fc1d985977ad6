"""The demo chat and the classic plain-text chat page in a real headless Chromium, against
real replicas on a real redis-server.

A page reaches its replica through a loopback TCP proxy (tests/support/proxy.py) that
plays the load balancer: the page's origin stays the proxy's address, so after its
replica is killed the page's own reconnects land on the surviving replica once the test
points the proxy there, the way a load balancer drops a dead backend.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from playwright.async_api import expect

from gateway.http.app import create_app
from gateway.settings import Settings
from tests.support.browser import ARTIFACTS, chromium, page_errors, serve_page
from tests.support.demo import TIMEOUT_MS, open_demo, say, texts
from tests.support.gateways import GatewayProcess
from tests.support.inprocess import serve_app
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer

CLASSIC_CHAT = """<!doctype html>
<html><body>
<form id="f"><input id="t" autocomplete="off"><button>Send</button></form>
<ul id="log"></ul>
<script>
  const ws = new WebSocket(new URLSearchParams(location.search).get("ws"));
  ws.onmessage = (e) => { const li = document.createElement("li"); li.textContent = e.data;
                          document.getElementById("log").append(li); };
  ws.onopen = () => document.body.dataset.open = "yes";
  document.getElementById("f").onsubmit = (e) => { e.preventDefault();
    ws.send(document.getElementById("t").value); document.getElementById("t").value = ""; };
</script>
</body></html>"""


@pytest.fixture
def replicas(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> list[GatewayProcess]:
    """Two replicas with the default settings: the demo namespace has presence."""
    return gateways(2, redis_url=redis_server.url)


async def test_demo_pages_on_two_replicas_chat_and_recover_after_a_replica_dies(
    replicas: list[GatewayProcess],
) -> None:
    doomed, survivor = replicas
    room = "demo:e2e-recovery"
    async with TcpProxy(doomed.port) as balancer, chromium() as browser:
        alice, bob = await browser.new_page(), await browser.new_page()
        errors = page_errors(alice) + page_errors(bob)
        await open_demo(alice, balancer.http_url, room, "alice")
        await open_demo(bob, survivor.http_url, room, "bob")
        await expect(alice.locator("#replica b")).to_have_text(doomed.node_id)
        await expect(bob.locator("#replica b")).to_have_text(survivor.node_id)
        await expect(alice.locator("#presence li")).to_have_count(2, timeout=TIMEOUT_MS)

        await say(alice, "hello from alice")
        for page in (alice, bob):
            await expect(texts(page)).to_have_text(["hello from alice"], timeout=TIMEOUT_MS)
        await say(bob, "hi alice, bob here")
        for page in (alice, bob):
            await expect(texts(page)).to_have_text(
                ["hello from alice", "hi alice, bob here"], timeout=TIMEOUT_MS
            )

        balancer.target = None
        doomed.kill()
        await expect(alice.locator("#state")).to_have_attribute("data-state", "warn")
        missed = [f"while you were away {n}" for n in (1, 2, 3)]
        for text in missed:
            await say(bob, text)
        await expect(texts(bob)).to_have_count(5, timeout=TIMEOUT_MS)
        balancer.target = survivor.port

        await expect(alice.locator("#replica b")).to_have_text(survivor.node_id, timeout=TIMEOUT_MS)
        await expect(alice.locator("#log li.sys.recovered")).to_have_text(
            "reconnected · recovered 3 missed messages", timeout=TIMEOUT_MS
        )
        await say(alice, "back again")
        expected = ["hello from alice", "hi alice, bob here", *missed, "back again"]
        for page in (alice, bob):
            await expect(texts(page)).to_have_text(expected, timeout=TIMEOUT_MS)
        await expect(alice.locator("#room-status")).to_contain_text("recovered 3")
        await expect(bob.locator("#log li.sys.recovered")).to_have_count(0)

        ARTIFACTS.mkdir(exist_ok=True)
        await alice.set_viewport_size({"width": 1180, "height": 720})
        await alice.screenshot(path=str(ARTIFACTS / "demo.png"))
        assert errors == []


async def test_demo_joins_several_rooms_and_says_when_presence_is_off(
    replicas: list[GatewayProcess],
) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        errors = page_errors(page)
        await open_demo(page, replicas[0].http_url, "demo:first", "carol")
        await page.fill("#room-input", "plain:second")
        await expect(page.locator("#room-hint")).to_have_text(
            "room plain:second of namespace plain"
        )
        await page.press("#room-input", "Enter")
        await expect(page.locator("#room-title")).to_have_text("plain:second")
        await expect(page.locator("#room-status")).to_have_text("joined", timeout=TIMEOUT_MS)
        await expect(page.locator("#presence-note")).to_contain_text(
            "No presence in namespace plain"
        )
        await say(page, "in the second room")
        await expect(texts(page)).to_have_text(["in the second room"], timeout=TIMEOUT_MS)
        await page.click("#rooms li[data-room='demo:first']")
        await expect(page.locator("#room-title")).to_have_text("demo:first")
        await expect(texts(page)).to_have_count(0)
        await expect(page.locator("#presence li")).to_have_count(1, timeout=TIMEOUT_MS)
        assert errors == []


async def test_classic_chat_pages_on_two_replicas_see_every_line(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    first, second = gateways(2, redis_url=redis_server.url, allowed_origins="*")
    endpoints = [replica.plain_url for replica in (first, second, first)]
    with serve_page(CLASSIC_CHAT) as site:
        async with chromium() as browser:
            pages = []
            for endpoint in endpoints:
                page = await browser.new_page()
                await page.goto(f"{site}/chat.html?ws={endpoint}?channel=classic:room")
                await expect(page.locator("body")).to_have_attribute("data-open", "yes")
                pages.append(page)
            lines = [f"line {n} from page {n}" for n in range(len(pages))]
            for page, line in zip(pages, lines, strict=True):
                await page.fill("#t", line)
                await page.press("#t", "Enter")
                await expect(page.locator("#log li").last).to_have_text(line, timeout=TIMEOUT_MS)
            for page in pages:
                await expect(page.locator("#log li")).to_have_text(lines, timeout=TIMEOUT_MS)


async def test_demo_works_when_mounted_under_a_prefix(
    settings_factory: Callable[..., Settings],
) -> None:
    realtime = create_app(settings_factory())
    host = FastAPI(lifespan=realtime.router.lifespan_context)
    host.mount("/realtime", realtime)
    async with serve_app(host) as port, chromium() as browser:
        page = await browser.new_page()
        errors = page_errors(page)
        await open_demo(page, f"http://127.0.0.1:{port}/realtime", "demo:mounted", "dana")
        await say(page, "through the mount")
        await expect(texts(page)).to_have_text(["through the mount"], timeout=TIMEOUT_MS)
        assert errors == []
