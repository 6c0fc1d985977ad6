"""Where WebSockets are blocked, in a real headless Chromium: a proxy in front of real
replicas refuses every upgrade. A plain ``EventSource`` on ``/sse`` resumes from its
``Last-Event-ID`` on another replica after its own is killed, and the demo page falls back
to SSE and ``POST /publish`` by itself and still chats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from playwright.async_api import Page, expect

from tests.support.browser import chromium, page_errors
from tests.support.demo import TIMEOUT_MS, open_demo, say, texts
from tests.support.gateways import GatewayProcess
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer

LISTEN = """(url) => {
  window.frames_ = [];
  const source = new EventSource(url);
  source.onmessage = (event) =>
    window.frames_.push({ ...JSON.parse(event.data), eventId: event.lastEventId });
  window.source_ = source;
}"""


async def frames(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate("window.frames_")
    return found


async def wait_for_frames(page: Page, script: str) -> None:
    await page.wait_for_function(f"(window.frames_ || []).filter({script}).length", timeout=15000)


async def test_event_source_resumes_from_its_last_event_id_after_a_replica_kill(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    doomed, survivor = gateways(2, redis_url=redis_server.url)
    channel = "sse:browser-kill"
    async with (
        TcpProxy(doomed.port, refuse_upgrades=True) as proxy,
        chromium() as browser,
        httpx.AsyncClient() as http,
    ):
        page = await browser.new_page()
        errors = page_errors(page)
        await page.goto(f"{proxy.http_url}/healthz")
        blocked = await page.evaluate(
            """(url) => new Promise((resolve) => {
                const ws = new WebSocket(url);
                ws.onopen = () => resolve(false);
                ws.onerror = () => resolve(true);
            })""",
            proxy.ws_url,
        )
        assert blocked and proxy.refused_upgrades == 1
        await page.evaluate(LISTEN, f"/sse?channel={channel}")
        await wait_for_frames(page, "f => f.op === 'subscribed'")

        async def publish(data: int) -> None:
            answer = await http.post(
                f"{survivor.http_url}/publish", json={"channel": channel, "data": data}
            )
            assert answer.status_code == 200, answer.text

        for data in (1, 2):
            await publish(data)
        await wait_for_frames(page, "f => f.op === 'message'")
        await page.wait_for_function("window.frames_.filter(f => f.op === 'message').length === 2")
        proxy.target = survivor.port
        doomed.kill()
        for data in (3, 4):  # while the EventSource reconnects
            await publish(data)
        await page.wait_for_function(
            "window.frames_.filter(f => f.op === 'message').length >= 4", timeout=15000
        )
        seen = await frames(page)
        messages = [f for f in seen if f["op"] == "message"]
        assert [m["data"] for m in messages] == [1, 2, 3, 4]
        assert [m["offset"] for m in messages] == [1, 2, 3, 4]
        subscribed = [f for f in seen if f["op"] == "subscribed"]
        assert [s["recovered"] for s in subscribed] == [False, True]
        welcomes = [f["node"] for f in seen if f["op"] == "welcome"]
        assert welcomes == [doomed.node_id, survivor.node_id]
        assert messages[-1]["eventId"].startswith("1.4:")
        assert errors == []


async def test_the_demo_falls_back_to_sse_and_still_chats(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    first, second = gateways(2, redis_url=redis_server.url)
    async with (
        TcpProxy(first.port, refuse_upgrades=True) as to_first,
        TcpProxy(second.port, refuse_upgrades=True) as to_second,
        chromium() as browser,
    ):
        pages = []
        for name, proxy in (("alice", to_first), ("bob", to_second)):
            page = await browser.new_page(viewport={"width": 1180, "height": 720})
            await open_demo(page, proxy.http_url, "demo:blocked", name)
            assert await page.evaluate("window.gatewayClient.transport") == "sse"
            await expect(page.locator("#replica")).to_contain_text("SSE", timeout=TIMEOUT_MS)
            pages.append(page)
        alice, bob = pages
        await say(alice, "hello through a proxy that blocks websockets")
        for page in pages:
            await expect(texts(page)).to_have_text(
                ["hello through a proxy that blocks websockets"], timeout=TIMEOUT_MS
            )
        await say(bob, "and back, over server-sent events")
        for page in pages:
            await expect(texts(page)).to_have_text(
                [
                    "hello through a proxy that blocks websockets",
                    "and back, over server-sent events",
                ],
                timeout=TIMEOUT_MS,
            )
        assert to_first.refused_upgrades >= 2 and to_second.refused_upgrades >= 2
