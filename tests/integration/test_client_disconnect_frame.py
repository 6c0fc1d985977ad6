"""The Python client obeys the server's `disconnect` frame: its ``reconnect`` decides, whatever
the close code that follows (a stand-in server sends both)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from gateway.wire.protocol import SUBPROTOCOL
from gateway_client import GatewayClient
from tests.support.net import free_port, wait_until


@asynccontextmanager
async def closing_server(code: int, reconnect: bool) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that welcomes each client, then sends `disconnect` and closes with ``code``;
    yields its URL and a list that counts the connections."""
    connections: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        connections.append(len(connections) + 1)
        welcome = {"op": "welcome", "client": "c", "node": "n", "user": None, "ping": 25}
        await ws.send(orjson.dumps({**welcome, "version": 1}).decode())
        disconnect = {"op": "disconnect", "code": code, "reason": "told", "reconnect": reconnect}
        await ws.send(orjson.dumps(disconnect).decode())
        await ws.close(code, "told")

    port = free_port()
    async with serve(handler, "127.0.0.1", port, subprotocols=[SUBPROTOCOL]):  # type: ignore[list-item]
        yield f"ws://127.0.0.1:{port}/ws", connections


def recorder(client: GatewayClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    client.on("disconnected", events.append)
    return events


@pytest.mark.parametrize("code", [4008, 1011, 1012, 4029])
async def test_reconnect_false_stops_the_client_whatever_the_code(code: int) -> None:
    async with closing_server(code, reconnect=False) as (url, connections):
        client = GatewayClient(url, min_delay=0.01, max_delay=0.02)
        events = recorder(client)
        async with client:
            await wait_until(lambda: bool(events), 5, "the disconnection")
            assert events[0]["code"] == code and events[0]["reconnect"] is False
            assert client.state == "disconnected"
            with pytest.raises(Exception, match="closed"):
                await client.request("ping")
        assert connections == [1]


async def test_reconnect_true_lets_the_code_decide() -> None:
    async with closing_server(4008, reconnect=True) as (url, connections):
        async with GatewayClient(url, min_delay=0.01, max_delay=0.02) as client:
            events = recorder(client)
            await wait_until(lambda: len(connections) >= 2, 5, "a reconnection")
            await wait_until(lambda: bool(events), 5, "the disconnected event")
            assert events[0]["reconnect"] is True
