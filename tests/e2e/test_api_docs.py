"""The API docs (Swagger UI and ReDoc) render in Chromium with no network but the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from playwright.async_api import Page, Route

from tests.support.browser import chromium, page_errors
from tests.support.gateways import GatewayProcess
from tests.support.net import free_port


@pytest.fixture(scope="module")
def docs_url() -> Iterator[str]:
    """The internal port of a replica, where the docs live."""
    internal = free_port()
    gateway = GatewayProcess("docs", internal_port=internal)
    try:
        gateway.start()
        yield f"http://127.0.0.1:{internal}"
    finally:
        gateway.stop()


@dataclass
class OfflinePage:
    page: Page
    errors: list[str]
    elsewhere: list[str] = field(default_factory=list)
    """URLs the page tried to reach other than the gateway's."""


@asynccontextmanager
async def offline_page(origin: str, path: str) -> AsyncIterator[OfflinePage]:
    """Chromium on ``origin + path`` with every request to another host refused."""
    async with chromium() as browser:
        page = await browser.new_page()
        opened = OfflinePage(page, page_errors(page))

        async def only_the_gateway(route: Route) -> None:
            if route.request.url.startswith(origin + "/"):
                await route.continue_()
            else:
                opened.elsewhere.append(route.request.url)
                await route.abort("internetdisconnected")

        await page.route("**/*", only_the_gateway)
        await page.goto(origin + path)
        yield opened
    assert opened.elsewhere == [] and opened.errors == []


async def test_swagger_ui_renders_offline(docs_url: str) -> None:
    async with offline_page(docs_url, "/docs") as opened:
        title = opened.page.locator(".swagger-ui .info .title")
        await title.wait_for(timeout=15_000)
        assert "pubsub gateway" in (await title.text_content() or "")
        operations = opened.page.locator(".swagger-ui .opblock-summary-path")
        await operations.first.wait_for(timeout=15_000)
        paths = {path.replace("\u200b", "") for path in await operations.all_text_contents()}
        assert {"/api/publish", "/api/info", "/healthz"} <= paths


async def test_redoc_renders_offline(docs_url: str) -> None:
    async with offline_page(docs_url, "/redoc") as opened:
        heading = opened.page.get_by_role("heading", name="pubsub gateway", exact=False)
        await heading.first.wait_for(timeout=15_000)
        await opened.page.get_by_text("/api/publish").first.wait_for(timeout=15_000)
