"""The gateway mounted into an existing FastAPI application, whose lifespan keeps running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request

import gateway
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.support.client import ProtocolClient
from tests.support.inprocess import serve_app


async def test_mounted_gateway_runs_inside_the_host_apps_own_lifespan(
    settings_factory: Callable[..., Settings],
) -> None:
    events: list[tuple[str, bool]] = []

    @asynccontextmanager
    async def host_lifespan(_: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append(("host started", realtime.state.replica.broker.ready))
        yield {"greeting": "hello"}
        events.append(("host stopping", realtime.state.replica.broker.ready))

    host = FastAPI(lifespan=host_lifespan)
    realtime = gateway.mount(host, "/realtime", create_app(settings_factory()))

    @host.get("/hello")
    async def hello(request: Request) -> dict[str, str]:
        return {"hello": request.state.greeting}

    async with serve_app(host) as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/hello")).json() == {"hello": "hello"}
            assert (await http.get("/realtime/readyz")).status_code == 200
            page = await http.get("/realtime/")
            assert '<base href="/realtime/">' in page.text
        url = f"ws://127.0.0.1:{port}/realtime/ws"
        async with (
            await ProtocolClient.connect(url) as alice,
            await ProtocolClient.connect(url) as bob,
        ):
            await alice.subscribe("mounted:chat")
            await bob.publish("mounted:chat", "through the mount")
            [message] = await alice.messages(1)
            assert message["data"] == "through the mount"
    assert events == [("host started", True), ("host stopping", True)], "gateway wraps the host"
    assert not realtime.state.replica.broker.ready, "lifespan shutdown stopped the broker"


async def test_mount_without_a_gateway_builds_one_from_the_settings(
    settings_factory: Callable[..., Settings],
) -> None:
    settings_factory()
    host = FastAPI()
    realtime = gateway.mount(host, "/rt")
    async with serve_app(host) as port, httpx.AsyncClient() as http:
        ready = await http.get(f"http://127.0.0.1:{port}/rt/readyz", timeout=5)
        assert ready.status_code == 200
        assert realtime.state.replica.broker.ready
    assert not realtime.state.replica.broker.ready


async def test_two_gateways_mounted_in_one_app_both_start_and_stop(
    settings_factory: Callable[..., Settings],
) -> None:
    host = FastAPI()
    first = gateway.mount(host, "/a", create_app(settings_factory(node_id="a")))
    second = gateway.mount(host, "/b", create_app(settings_factory(node_id="b")))
    async with serve_app(host) as port, httpx.AsyncClient() as http:
        for prefix, node in (("/a", "a"), ("/b", "b")):
            health = await http.get(f"http://127.0.0.1:{port}{prefix}/healthz", timeout=5)
            assert health.json()["node"] == node
    assert not first.state.replica.broker.ready
    assert not second.state.replica.broker.ready


async def test_mounted_with_an_internal_port_serves_internal_paths_only_on_it(
    settings_factory: Callable[..., Settings],
) -> None:
    """Mounted, the gateway owns no socket: the host server's port the request came in on
    decides, and the docs' assets are found under the mount point."""
    realtime = create_app(settings_factory(internal_port=9100))
    host = FastAPI()
    host.mount("/realtime", realtime)
    transport = httpx.ASGITransport(app=host)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://app:8000") as public,
        httpx.AsyncClient(transport=transport, base_url="http://app:9100") as internal,
    ):
        for path in ("/realtime/metrics", "/realtime/docs", "/realtime/openapi.json"):
            assert (await public.get(path)).status_code == 404, path
            assert (await internal.get(path)).status_code == 200, path
        assert (await public.get("/realtime/healthz")).status_code == 200
        docs = (await internal.get("/realtime/docs")).text
        assert "/realtime/docs/assets/swagger-ui-bundle.js" in docs
        script = await internal.get("/realtime/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and "SwaggerUIBundle" in script.text
