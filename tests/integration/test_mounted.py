"""The gateway mounted into an existing FastAPI application."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.client import ProtocolClient
from tests.support.inprocess import serve_app


async def test_mounted_gateway_runs_with_the_host_apps_lifespan(
    settings_factory: Callable[..., Settings],
) -> None:
    realtime = create_app(settings_factory())
    host = FastAPI(lifespan=realtime.router.lifespan_context)
    host.mount("/realtime", realtime)

    @host.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    async with serve_app(host) as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/hello")).json() == {"hello": "world"}
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
    assert not realtime.state.replica.broker.ready, "lifespan shutdown stopped the broker"
