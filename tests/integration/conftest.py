from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.settings import Settings
from gateway.transport.websocket import GatewayWebSocketProtocol
from tests.support.inprocess import LocalGateway, serve_in_process

WS_IMPLEMENTATIONS = {
    "direct": GatewayWebSocketProtocol,
    "asgi": "websockets-sansio",
}


@pytest.fixture(params=list(WS_IMPLEMENTATIONS))
def ws_impl(request: pytest.FixtureRequest) -> Any:
    """Both ways frames reach the socket: direct writes, and plain ASGI sends."""
    return WS_IMPLEMENTATIONS[request.param]


@pytest.fixture
def serve(settings_factory: Callable[..., Settings], ws_impl: Any) -> Callable[..., Any]:
    """``async with serve(**settings) as gateway``: an in-process gateway on the memory broker."""

    def start(**overrides: Any) -> Any:
        return serve_in_process(settings_factory(**overrides), ws=ws_impl)

    return start


@pytest.fixture
async def gateway(serve: Callable[..., Any]) -> AsyncIterator[LocalGateway]:
    async with serve() as running:
        yield running
