"""The `Gateway` object in an application's process: mounted into a FastAPI app with its own
lifespan, or as the app's lifespan, and its server API in process (on a real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI

from gateway import ChannelHistory, Gateway, GatewayError, Principal, StreamPosition, create_app
from gateway.settings import Settings
from tests.support.client import ProtocolClient
from tests.support.inprocess import serve_app
from tests.support.redis_server import RedisServer


async def test_mounted_the_gateway_runs_around_the_apps_own_lifespan(
    settings_factory: Callable[..., Settings], redis_server: RedisServer
) -> None:
    gw = Gateway(settings_factory(redis_url=redis_server.url))
    steps: list[Any] = []

    @gw.on_connect
    async def named(request: Any) -> Principal:
        return Principal(user=request.query.get("as", "nobody"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        steps.append(await gw.publish("obj:life", "from the start-up"))
        yield
        steps.append(await gw.publish("obj:life", "from the shutdown"))

    app = FastAPI(lifespan=lifespan)
    gw.mount(app, "/realtime")
    assert not gw.built
    async with serve_app(app) as port:
        async with await ProtocolClient.connect(f"ws://127.0.0.1:{port}/realtime/ws?as=ada") as ada:
            assert ada.welcome["user"] == "ada"
            joined = await ada.subscribe("obj:life")
            position = await gw.publish("obj:life", {"from": "the server"})
            [message] = await ada.messages(1, "obj:life")
            assert message["data"] == {"from": "the server"} and "from" not in message
            assert position == StreamPosition(joined["offset"] + 1, joined["epoch"])
            presence = await gw.presence("demo:obj")
            assert presence == {}
            history = await gw.history(
                "obj:life", since=StreamPosition(joined["offset"] - 1, joined["epoch"])
            )
            assert isinstance(history, ChannelHistory) and history.position == position
            assert [m["data"] for m in history.messages] == [
                "from the start-up",
                {"from": "the server"},
            ]
            assert await gw.broadcast(["obj:a", "obj:a", "obj:b"], 1) == {"obj:a": 1, "obj:b": 1}
            await gw.disconnect("ada")
            code, _ = await ada.closed()
            assert code == 4003
    assert isinstance(steps[0], StreamPosition) and isinstance(steps[1], StreamPosition)
    assert steps[1].offset == steps[0].offset + 2


async def test_the_gateway_as_the_apps_lifespan_starts_once(
    settings_factory: Callable[..., Settings],
) -> None:
    gw = Gateway(settings_factory())
    app = FastAPI(lifespan=gw.lifespan)
    app.mount("/rt", gw.app)
    async with serve_app(app) as port, gw.lifespan(app):
        async with await ProtocolClient.connect(f"ws://127.0.0.1:{port}/rt/ws") as client:
            assert (await client.request("ping"))["op"] == "pong"
    assert not gw.replica.readiness()[0]


async def test_in_process_calls_answer_with_the_apis_errors(
    settings_factory: Callable[..., Settings],
) -> None:
    gw = Gateway(settings_factory(strict_namespaces=True))
    async with gw.lifespan():
        with pytest.raises(GatewayError) as bad:
            await gw.publish("no spaces", 1)
        assert bad.value.code.value == "bad_request"
        with pytest.raises(GatewayError) as unknown:
            await gw.history("nowhere:x")
        assert unknown.value.code.value == "unknown_namespace"
        with pytest.raises(GatewayError) as off:
            await gw.presence("lobby")
        assert off.value.code.value == "bad_request"


def test_settings_change_only_before_the_app_is_built(
    settings_factory: Callable[..., Settings],
) -> None:
    gw = Gateway(settings_factory())
    gw.configure(settings_factory(node_id="other", hook_timeout=3))
    assert gw.settings.node_id == "other" and gw.hooks.timeout == 3
    assert gw.app.state.gateway is gw and gw.replica.settings.node_id == "other"
    with pytest.raises(RuntimeError, match="built already"):
        gw.configure(settings_factory())


def test_create_app_is_a_gateways_app(settings_factory: Callable[..., Settings]) -> None:
    app = create_app(settings_factory())
    assert isinstance(app.state.gateway, Gateway) and app.state.replica is app.state.gateway.replica
