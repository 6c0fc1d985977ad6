"""A raw protocol-v1 test client over the ``websockets`` library.

It keeps every frame it has not yet handed out, so a test can wait for one kind of frame
without losing the others.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]


class ProtocolClient:
    """One WebSocket connection speaking protocol v1."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.inbox: list[Frame] = []
        self.welcome: Frame = {}
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, url: str, *, welcome: bool = True, **options: Any) -> ProtocolClient:
        options.setdefault("max_size", None)
        options.setdefault("max_queue", None)
        client = cls(await connect(url, **options))
        if welcome:
            client.welcome = await client.expect(lambda f: f.get("op") == "welcome")
        return client

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> ProtocolClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def client_id(self) -> str:
        return str(self.welcome["client"])

    async def send(self, frame: Frame | str | bytes) -> None:
        if isinstance(frame, dict):
            frame = orjson.dumps(frame).decode()
        await self.connection.send(frame)

    async def request(self, op: str, timeout: float = 5.0, **fields: Any) -> Frame:
        """Send a command with a fresh id and return the reply (or error) carrying that id."""
        command_id = next(self._ids)
        await self.send({"op": op, "id": command_id, **fields})
        return await self.expect(lambda f: f.get("id") == command_id, timeout)

    async def subscribe(self, channel: str, **fields: Any) -> Frame:
        reply = await self.request("subscribe", channel=channel, **fields)
        assert reply["op"] == "subscribed", reply
        return reply

    async def publish(self, channel: str, data: Any, **fields: Any) -> Frame:
        reply = await self.request("publish", channel=channel, data=data, **fields)
        assert reply["op"] == "published", reply
        return reply

    async def expect(self, match: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
        """The first frame (kept or new) that ``match`` accepts; others are kept."""
        for index, frame in enumerate(self.inbox):
            if match(frame):
                return self.inbox.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            for frame in await self._receive(deadline):
                self.inbox.append(frame)
            for index, frame in enumerate(self.inbox):
                if match(frame):
                    return self.inbox.pop(index)

    async def messages(
        self, count: int, channel: str | None = None, timeout: float = 10.0
    ) -> list[Frame]:
        """The next ``count`` `message` frames (of ``channel`` if given), in arrival order."""

        def is_message(frame: Frame) -> bool:
            return frame.get("op") == "message" and (channel is None or frame["channel"] == channel)

        deadline = time.monotonic() + timeout
        return [
            await self.expect(is_message, max(0.0, deadline - time.monotonic()))
            for _ in range(count)
        ]

    async def closed(self, timeout: float = 10.0) -> tuple[int | None, list[Frame]]:
        """Read until the server closes; the close code and every frame that came first."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.inbox.extend(await self._receive(deadline))
        except ConnectionClosed:
            pass
        received = self.connection.protocol.close_rcvd
        return (received.code if received else None), self.inbox

    async def _receive(self, deadline: float) -> list[Frame]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no matching frame; kept: {self.inbox[-5:]}")
        try:
            raw = await asyncio.wait_for(self.connection.recv(), remaining)
        except TimeoutError:
            raise TimeoutError(f"no matching frame; kept: {self.inbox[-5:]}") from None
        return [orjson.loads(line) for line in str(raw).split("\n") if line]
