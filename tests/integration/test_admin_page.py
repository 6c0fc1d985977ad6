"""The ``/admin`` dashboard page as the gateway serves it."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from gateway.http.app import create_app
from gateway.settings import Settings


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_admin_page_is_served_without_the_key_and_locked_down(
    settings_factory: Callable[..., Settings],
) -> None:
    async with _client(create_app(settings_factory(api_key="k" * 32))) as http:
        response = await http.get("/admin")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "k" * 32 not in response.text
    assert '<base href="/">' in response.text
    headers = response.headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in headers["content-security-policy"].split(";")
    )
    [script] = re.findall(r"<script[^>]*>(.*?)</script>", response.text, re.DOTALL)
    [style] = re.findall(r"<style[^>]*>(.*?)</style>", response.text, re.DOTALL)
    assert policy["script-src"] == _hash(script)
    assert policy["style-src"] == f"'self' {_hash(style)}"
    assert policy["connect-src"] == "'self'"
    assert policy["form-action"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"


async def test_admin_page_never_sends_the_key_in_a_url(
    settings_factory: Callable[..., Settings],
) -> None:
    async with _client(create_app(settings_factory())) as http:
        page = (await http.get("/admin")).text
    assert "sessionStorage" in page and "localStorage" not in page
    assert "Authorization: `Bearer ${key}`" in page
    [key_input] = re.findall(r'<input id="key"[^>]*>', page)
    assert "name=" not in key_input, "a named input would be submitted without the script"


async def test_admin_page_reads_the_api_relative_to_its_mount(
    settings_factory: Callable[..., Settings],
) -> None:
    host = FastAPI()
    host.mount("/realtime", create_app(settings_factory()))
    async with _client(host) as http:
        page = await http.get("/realtime/admin")
    assert page.status_code == 200
    assert '<base href="/realtime/">' in page.text
    assert 'new URL("api/info", document.baseURI)' in page.text


async def test_both_pages_share_the_theme_stylesheet_under_a_mount(
    settings_factory: Callable[..., Settings],
) -> None:
    host = FastAPI()
    host.mount("/realtime", create_app(settings_factory()))
    async with _client(host) as http:
        pages = [(await http.get(path)).text for path in ("/realtime/", "/realtime/admin")]
        theme = await http.get("/realtime/theme.css")
    assert all('<link rel="stylesheet" href="theme.css">' in page for page in pages)
    assert theme.status_code == 200
    assert theme.headers["content-type"].startswith("text/css")
    assert "--accent:" in theme.text
