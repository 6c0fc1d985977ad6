"""The API docs (Swagger UI and ReDoc) render in Chromium with no network but the gateway."""

from __future__ import annotations

from collections.abc import Iterator

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


async def offline(page: Page, origin: str) -> list[str]:
    """Let the page reach ``origin`` only; returns the URLs it tried elsewhere."""
    elsewhere: list[str] = []

    async def only_the_gateway(route: Route) -> None:
        if route.request.url.startswith(origin + "/"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

    await page.route("**/*", only_the_gateway)
    return elsewhere


async def test_swagger_ui_renders_offline(docs_url: str) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        errors = page_errors(page)
        elsewhere = await offline(page, docs_url)
        await page.goto(f"{docs_url}/docs")
        title = page.locator(".swagger-ui .info .title")
        await title.wait_for(timeout=15_000)
        assert "pubsub gateway" in (await title.text_content() or "")
        operations = page.locator(".swagger-ui .opblock-summary-path")
        await operations.first.wait_for(timeout=15_000)
        paths = set(await operations.all_text_contents())
        assert {"/api/publish", "/api/info", "/healthz"} <= {p.replace("\u200b", "") for p in paths}
    assert elsewhere == [] and errors == []


async def test_redoc_renders_offline(docs_url: str) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        errors = page_errors(page)
        elsewhere = await offline(page, docs_url)
        await page.goto(f"{docs_url}/redoc")
        heading = page.get_by_role("heading", name="pubsub gateway", exact=False).first
        await heading.wait_for(timeout=15_000)
        await page.get_by_text("/api/publish").first.wait_for(timeout=15_000)
    assert elsewhere == [] and errors == []
