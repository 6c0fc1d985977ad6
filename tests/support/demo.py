"""The demo page at ``/`` driven in Chromium: open it as someone, chat, read the room."""

from __future__ import annotations

from playwright.async_api import Browser, Locator, Page, expect

TIMEOUT_MS = 15_000
PEERS = ("alice", "bob", "carol")
CONVERSATION = (
    ("alice", "hi all, alice here on the first replica"),
    ("bob", "hello from bob, on another replica"),
    ("carol", "carol too: three replicas, one room"),
    ("alice", "and nothing gets lost if one goes down"),
)


async def open_demo(
    page: Page, base_url: str, room: str, name: str, also: tuple[str, ...] = ()
) -> None:
    """Open the demo in ``room`` (and the rooms ``also``) as ``name``; returns once
    connected and joined."""
    rooms = "".join(f"&room={other}" for other in also)
    await page.goto(f"{base_url}/?room={room}{rooms}&name={name}")
    await expect(page.locator("#state")).to_have_attribute("data-state", "ok", timeout=TIMEOUT_MS)
    await expect(page.locator("#room-status")).to_have_text("joined", timeout=TIMEOUT_MS)


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


def texts(page: Page) -> Locator:
    """The text of every message shown in the current room."""
    return page.locator("#log li.msg .text")


def senders(page: Page) -> Locator:
    """The sender name of every message shown in the current room."""
    return page.locator("#log li.msg .who")


def here_now(page: Page) -> Locator:
    """The names in the "Here now" list."""
    return page.locator("#presence li")


async def chat_of_three(
    browser: Browser, base_urls: list[str], room: str, also: tuple[str, ...] = ()
) -> list[Page]:
    """alice, bob and carol each open the demo on their own replica (``base_urls`` in
    turn), see each other in "Here now", and hold `CONVERSATION`; returns their pages."""
    pages = []
    for name, base_url in zip(PEERS, base_urls, strict=True):
        page = await browser.new_page(viewport={"width": 1180, "height": 720})
        await open_demo(page, base_url, room, name, also)
        pages.append(page)
    for page in pages:
        await expect(here_now(page)).to_have_count(len(PEERS), timeout=TIMEOUT_MS)
    by_name = dict(zip(PEERS, pages, strict=True))
    for count, (name, text) in enumerate(CONVERSATION, start=1):
        await say(by_name[name], text)
        for page in pages:
            await expect(texts(page)).to_have_count(count, timeout=TIMEOUT_MS)
    return pages
