"""The demo at ``/`` as a newcomer meets it, and the plain page of ``client/examples``, in a
real headless Chromium against real replicas (``gateway serve`` subprocesses) on a real
redis-server, with the default settings unless a test says otherwise.

Names chosen on the page show in "Here now", in join notes and on messages (also those
read back from history by a tab opened later); the plain channel ``chat`` is shared with
``plain.html``, opened from ``file://`` or from another loopback origin; and a clean chat
leaves no console error, no failed request and no `error` count in ``/api/info``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from playwright.async_api import Page, expect

from tests.support.browser import chromium, page_problems, serve_page
from tests.support.demo import (
    CONVERSATION,
    TIMEOUT_MS,
    chat_of_three,
    here_now,
    open_demo,
    say,
    senders,
    texts,
)
from tests.support.gateways import REPO_ROOT, GatewayProcess
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer

API_KEY = "demo-e2e-key-0123456789abcdef0123456789ab"
PLAIN_PAGE = REPO_ROOT / "client" / "examples" / "plain.html"
_rooms = itertools.count()


def fresh_room(prefix: str = "demo:room") -> str:
    return f"{prefix}-{next(_rooms)}"


@pytest.fixture
def trio(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> list[GatewayProcess]:
    """Three replicas on one Redis, default settings plus an API key (to read /api/info)."""
    return gateways(3, redis_url=redis_server.url, api_key=API_KEY)


async def error_counts(replicas: list[GatewayProcess], connections: int) -> dict[str, Any]:
    """What the /admin dashboard adds up as errors: the `error` frames of every replica
    and its commands by result, once /api/info counts ``connections`` clients."""
    async with httpx.AsyncClient(
        base_url=replicas[0].http_url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as http:

        async def nodes() -> list[dict[str, Any]]:
            response = await http.get("/api/info")
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()["nodes"]
            return found

        async def settled() -> bool:
            found = await nodes()
            return len(found) == len(replicas) and (
                sum(node["connections"] for node in found) == connections
            )

        await wait_until(settled, 10, f"/api/info to count {connections} connections")
        return {
            node["node"]: (node["totals"]["errors"], sorted(node["totals"]["commands"]))
            for node in await nodes()
        }


def plain_page(gateway: GatewayProcess, **query: str) -> str:
    """``plain.html`` opened from the disk, pointed at ``gateway``."""
    parameters = "&".join(f"{key}={value}" for key, value in query.items())
    return f"{PLAIN_PAGE.as_uri()}?gateway=127.0.0.1:{gateway.port}&{parameters}"


async def plain_open(page: Page) -> None:
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)


async def plain_say(page: Page, line: str) -> None:
    await page.fill("#text", line)
    await page.press("#text", "Enter")


async def test_three_peers_on_three_replicas_see_names_and_a_late_tab_sees_the_history(
    trio: list[GatewayProcess],
) -> None:
    room = fresh_room()
    async with chromium() as browser:
        alice, bob, carol = await chat_of_three(browser, [r.http_url for r in trio], room)
        problems = page_problems(alice) + page_problems(bob) + page_problems(carol)
        spoken = [text for _, text in CONVERSATION]
        who = [name for name, _ in CONVERSATION]
        for page in (alice, bob, carol):
            await expect(texts(page)).to_have_text(spoken)
            await expect(senders(page)).to_have_text(who)
            await expect(page.locator("#presence-count")).to_have_text("· 3")
        await expect(here_now(bob)).to_contain_text(["bob (you)", "alice", "carol"])
        await expect(alice.locator("#log li.sys")).to_contain_text(["bob joined", "carol joined"])
        await expect(alice.locator("#replica b")).to_have_text(trio[0].node_id)
        await expect(carol.locator("#replica b")).to_have_text(trio[2].node_id)

        dave = await browser.new_page()
        problems += page_problems(dave)
        await open_demo(dave, trio[1].http_url, room, "dave")
        await expect(texts(dave)).to_have_text(spoken, timeout=TIMEOUT_MS)
        await expect(senders(dave)).to_have_text(who)
        await expect(here_now(dave)).to_have_count(4, timeout=TIMEOUT_MS)
        await expect(here_now(dave)).to_contain_text(["dave (you)", "alice", "bob", "carol"])
        await expect(alice.locator("#log li.sys").last).to_have_text("dave joined")
        await say(dave, "dave arrived late and read the backlog")
        for page in (alice, bob, carol, dave):
            await expect(texts(page)).to_have_text(
                [*spoken, "dave arrived late and read the backlog"], timeout=TIMEOUT_MS
            )
        await expect(senders(alice).last).to_have_text("dave")
        await expect(dave.locator("#log li.msg.mine")).to_have_count(1)
        await expect(dave.locator("#log li.sys.recovered")).to_have_count(0)
        assert await dave.locator("#log li.sys").all_inner_texts() == []

        clean = {r.node_id: ({}, ["ok"]) for r in trio}
        assert await error_counts(trio, connections=4) == clean
        assert problems == []


async def test_a_name_change_shows_at_once_in_presence_and_on_later_messages(
    trio: list[GatewayProcess],
) -> None:
    room = fresh_room()
    async with chromium() as browser:
        alice, bob = await browser.new_page(), await browser.new_page()
        problems = page_problems(alice) + page_problems(bob)
        await open_demo(alice, trio[0].http_url, room, "alice")
        await open_demo(bob, trio[1].http_url, room, "bob")
        await expect(here_now(alice)).to_have_count(2, timeout=TIMEOUT_MS)
        await bob.fill("#name", "Robert")
        await bob.press("#name", "Enter")
        await expect(here_now(alice)).to_contain_text(["alice (you)", "Robert"], timeout=TIMEOUT_MS)
        await expect(here_now(alice)).to_have_count(2, timeout=TIMEOUT_MS)
        await say(bob, "call me Robert")
        await expect(senders(alice)).to_have_text(["Robert"], timeout=TIMEOUT_MS)
        await expect(bob.locator("#log li.msg.mine")).to_have_count(1)
        await expect(bob.locator("#banner")).to_be_hidden()
        assert problems == []


async def test_the_plain_channel_chat_is_shared_with_a_page_opened_from_a_file(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    [gateway] = gateways(1, redis_url=redis_server.url, allowed_origins="null")
    async with chromium() as browser:
        seed = await browser.new_page()
        problems = page_problems(seed)
        await seed.goto(plain_page(gateway, name="seed"))
        await plain_open(seed)
        await plain_say(seed, "hello from a page opened from disk")

        demo = await browser.new_page()
        problems += page_problems(demo)
        await demo.goto(f"{gateway.http_url}/?name=dana")
        await expect(demo.locator("#rooms li")).to_have_count(2)
        await expect(demo.locator("#rooms li .name")).to_have_text(["demo:lobby", "chat"])
        await demo.click("#rooms li[data-room='chat']")
        await expect(demo.locator("#room-title")).to_have_text("chat")
        await expect(demo.locator("#room-kind")).to_have_text("plain channel")
        note = demo.locator("#presence-note")
        await expect(note).to_contain_text("No presence on plain channels")
        await expect(texts(demo)).to_have_text(
            ["hello from a page opened from disk"], timeout=TIMEOUT_MS
        )
        await expect(senders(demo)).to_have_text(["seed"])

        await say(demo, "hi seed, the demo hears you")
        await expect(seed.locator("#log li")).to_have_text(
            ["hello from a page opened from disk", "hi seed, the demo hears you"],
            timeout=TIMEOUT_MS,
        )
        await plain_say(seed, "and the seed hears the demo")
        await expect(texts(demo)).to_have_text(
            [
                "hello from a page opened from disk",
                "hi seed, the demo hears you",
                "and the seed hears the demo",
            ],
            timeout=TIMEOUT_MS,
        )
        await demo.fill("#room-input", "chat")
        await expect(demo.locator("#room-hint")).to_contain_text("plain channel chat")
        await demo.press("#room-input", "Enter")
        await expect(demo.locator("#rooms li")).to_have_count(2)
        await expect(demo.locator("#room-title")).to_have_text("chat")
        assert problems == []


async def test_a_page_opened_from_a_file_is_refused_by_default_and_both_sides_say_why(
    gateways: Callable[..., list[GatewayProcess]],
) -> None:
    [gateway] = gateways(1)
    async with chromium() as browser:
        seed = await browser.new_page()
        await seed.goto(plain_page(gateway))
        await expect(seed.locator("#status")).to_have_attribute(
            "data-state", "closed", timeout=TIMEOUT_MS
        )
        await expect(seed.locator("#hint")).to_contain_text("GATEWAY_ALLOWED_ORIGINS=null")

    def refusals() -> list[dict[str, Any]]:
        records = [orjson.loads(line) for line in gateway.log.read_text().splitlines()]
        return [record for record in records if record.get("event") == "handshake.refused"]

    await wait_until(lambda: bool(refusals()), 5, "the refusal in the gateway's log")
    [record] = refusals()
    assert record["level"] == "warning"
    assert record["message"].startswith(
        "handshake.refused status=403 path='/websocket' origin='null' client=127.0.0.1:"
    )
    assert record["message"].endswith(
        "reason=origin 'null' not allowed: pages opened from file:// send Origin: null; to let "
        "them connect, add null to GATEWAY_ALLOWED_ORIGINS (allowed_origins in the config file)"
    )


async def test_a_localhost_page_reaches_a_gateway_on_127_0_0_1_without_configuration(
    gateways: Callable[..., list[GatewayProcess]],
) -> None:
    [gateway] = gateways(1)
    with serve_page(PLAIN_PAGE.read_text()) as site:
        port = site.rsplit(":", 1)[1]
        assert port != str(gateway.port)
        async with chromium() as browser:
            page = await browser.new_page()
            problems = page_problems(page)
            await page.goto(f"http://localhost:{port}/plain.html?gateway=127.0.0.1:{gateway.port}")
            await plain_open(page)
            await plain_say(page, "from localhost to 127.0.0.1")
            await expect(page.locator("#log li")).to_have_text(
                ["from localhost to 127.0.0.1"], timeout=TIMEOUT_MS
            )
            assert problems == []


async def test_every_page_the_gateway_serves_has_an_icon(
    gateways: Callable[..., list[GatewayProcess]],
) -> None:
    [gateway] = gateways(1, api_key=API_KEY)
    async with chromium() as browser:
        page = await browser.new_page()
        problems = page_problems(page)
        for path in ("/", "/admin"):
            await page.goto(f"{gateway.http_url}{path}")
            icon = page.locator("link[rel=icon]")
            href = await icon.evaluate("(link) => link.href")
            response = await page.request.get(href)
            assert response.status == 200, href
            assert response.headers["content-type"] == "image/svg+xml"
            assert (await response.text()).startswith("<svg")
        fallback = await page.request.get(f"{gateway.http_url}/favicon.ico")
        assert fallback.status == 200
        assert problems == []
