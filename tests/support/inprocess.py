"""A gateway served by uvicorn inside the test's own event loop (memory broker unless told)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.cli.serve import uvicorn_config
from gateway.http.app import create_app
from gateway.replica import Replica
from gateway.settings import Settings
from tests.support.net import free_port, wait_until


@dataclass
class LocalGateway:
    app: FastAPI
    port: int

    @property
    def replica(self) -> Replica:
        replica: Replica = self.app.state.replica
        return replica

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def plain_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket"


@asynccontextmanager
async def serve_in_process(settings: Settings, ws: Any = None) -> AsyncIterator[LocalGateway]:
    """Serve ``create_app(settings)``; ``ws`` replaces the gateway's WebSocket protocol."""
    port = free_port()
    app = create_app(settings)
    config = uvicorn_config(app, settings, "127.0.0.1", port, "warning")
    if ws is not None:
        config.ws = ws
    async with _serving(config):
        yield LocalGateway(app, port)


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[int]:
    """Serve any ASGI app (with its lifespan) on a free loopback port; yields the port."""
    port = free_port()
    async with _serving(uvicorn.Config(app, port=port, log_level="warning")):
        yield port


@asynccontextmanager
async def _serving(config: uvicorn.Config) -> AsyncIterator[None]:
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), 10, "uvicorn to start")
        if task.done():
            task.result()
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
