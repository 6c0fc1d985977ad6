"""Centrifugo's client protocol spoken by hand, with the gateway's own codec, to see what
travels (and to send what no SDK sends, such as the gateway's ``idempotency_key``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from gateway.wire.centrifugo.codec import (
    PROTOBUF_SUBPROTOCOL,
    Encoding,
    decode_replies,
    encode_frame,
)
from gateway.wire.centrifugo.protocol_pb2 import Command, Reply


class RawClient:
    """One connection to ``/connection/websocket``: commands and the replies to them."""

    def __init__(self, socket: Any, wire: Encoding) -> None:
        self.socket = socket
        self.wire = wire
        self.next_id = 0
        self.received: list[Reply] = []

    async def command(self, **request: Any) -> Reply:
        self.next_id += 1
        command = Command(id=self.next_id, **request)
        frame = encode_frame([command], self.wire)
        await self.socket.send(frame if self.wire.binary else frame.decode())
        while True:
            for reply in self.received:
                if reply.id == self.next_id:
                    return reply
            await self._receive()

    async def pushes(self, count: int) -> list[Reply]:
        """The first ``count`` publication pushes."""

        def publications() -> list[Reply]:
            return [reply for reply in self.received if reply.push.HasField("pub")]

        while len(publications()) < count:
            await self._receive()
        return publications()[:count]

    async def _receive(self) -> None:
        frame = await asyncio.wait_for(self.socket.recv(), 10)
        data = frame if isinstance(frame, bytes) else frame.encode()
        self.received += decode_replies(data, self.wire)


@contextlib.asynccontextmanager
async def raw_connection(url: str, protocol: str, token: str = "") -> AsyncIterator[RawClient]:
    """A connected client of ``url`` (``ws://.../connection/websocket``) in ``protocol``
    (``"json"`` or ``"protobuf"``), after its ``connect`` with ``token``."""
    wire = Encoding.PROTOBUF if protocol == "protobuf" else Encoding.JSON
    subprotocols = [Subprotocol(PROTOBUF_SUBPROTOCOL)] if wire.binary else None
    async with connect(url, subprotocols=subprotocols) as socket:
        client = RawClient(socket, wire)
        reply = await client.command(connect={"token": token})
        assert reply.HasField("connect"), reply
        yield client
