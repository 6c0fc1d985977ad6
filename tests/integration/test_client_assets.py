"""The browser client and the demo page as the gateway serves them."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from gateway.http.app import create_app
from gateway.http.assets import BROWSER_CLIENT_SOURCE
from gateway.settings import Settings


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_browser_client_is_served_as_a_javascript_module(
    settings_factory: Callable[..., Settings],
) -> None:
    async with _client(create_app(settings_factory())) as http:
        response = await http.get("/client/gateway.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.text == BROWSER_CLIENT_SOURCE.read_text("utf-8")
    assert "export class GatewayClient" in response.text


async def test_demo_imports_the_client_relative_to_its_base_under_a_mount(
    settings_factory: Callable[..., Settings],
) -> None:
    host = FastAPI()
    host.mount("/realtime", create_app(settings_factory()))
    async with _client(host) as http:
        page = await http.get("/realtime/")
        script = await http.get("/realtime/client/gateway.js")
    assert '<base href="/realtime/">' in page.text
    assert 'from "./client/gateway.js"' in page.text
    assert script.status_code == 200
