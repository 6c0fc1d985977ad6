"""A tiny server of Centrifugo's client protocol, built on ``gateway.wire.centrifugo.codec``.

Enough of the protocol for Centrifugo's SDKs to connect, subscribe (with fossil deltas),
publish, read history and presence, and answer pings, so that tests can capture the
frames real SDKs send and check that the replies our codec writes are accepted. It keeps
every frame it received (``frames``) and every command decoded from them (``commands``).
Not the gateway: one process, no auth, no limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from gateway.wire.centrifugo import fossil
from gateway.wire.centrifugo.codec import (
    PROTOBUF_SUBPROTOCOL,
    Encoding,
    decode_commands,
    encode_frame,
    encoding_for,
    is_ping,
)
from gateway.wire.centrifugo.protocol_pb2 import ClientInfo, Command, Publication, Reply

EPOCH = "fake-epoch"


@dataclass
class _Subscriber:
    connection: _Connection
    delta: bool
    previous: bytes | None = None
    deltas_sent: int = 0


@dataclass
class _Connection:
    socket: ServerConnection
    encoding: Encoding
    client: str
    user: str = ""
    subscriptions: dict[str, _Subscriber] = field(default_factory=dict)

    async def send(self, *replies: Reply) -> None:
        frame = encode_frame(replies, self.encoding)
        await self.socket.send(frame if self.encoding.binary else frame.decode())


@dataclass
class Received:
    """One frame a client sent, as it arrived, and what the codec made of it."""

    encoding: Encoding
    frame: bytes | str
    commands: list[Command]


class FakeCentrifugo:
    """``async with FakeCentrifugo() as server``: serves ``server.url`` on loopback."""

    def __init__(self, ping_seconds: int = 25) -> None:
        self.ping_seconds = ping_seconds
        self.frames: list[Received] = []
        self.connections: list[_Connection] = []
        self.history: dict[str, list[Publication]] = {}
        self.pongs = 0
        self._offsets: dict[str, itertools.count[int]] = {}
        self._server: Server | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/connection/websocket"

    @property
    def commands(self) -> list[Command]:
        return [command for received in self.frames for command in received.commands]

    async def __aenter__(self) -> FakeCentrifugo:
        self._server = await serve(
            self._serve, "127.0.0.1", 0, select_subprotocol=_select_subprotocol, max_size=2**20
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait_for(self, condition: object, timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds, re-checked after every received frame."""
        assert callable(condition)
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def deltas_sent(self, channel: str) -> int:
        """How many publications of ``channel`` went out as deltas, to all subscribers."""
        return sum(
            connection.subscriptions[channel].deltas_sent
            for connection in self.connections
            if channel in connection.subscriptions
        )

    async def ping_all(self) -> None:
        """Send the protocol's ping (an empty reply) to every connection."""
        for connection in self.connections:
            await connection.send(Reply())

    async def publish(self, channel: str, data: bytes, info: ClientInfo | None = None) -> int:
        """Store and deliver a publication, as a delta to subscribers that asked for one."""
        offset = next(self._offsets.setdefault(channel, itertools.count(1)))
        publication = Publication(data=data, offset=offset)
        if info is not None:
            publication.info.CopyFrom(info)
        self.history.setdefault(channel, []).append(publication)
        for connection in list(self.connections):
            subscriber = connection.subscriptions.get(channel)
            if subscriber is None:
                continue
            reply = Reply()
            reply.push.channel = channel
            reply.push.pub.CopyFrom(_for_subscriber(publication, subscriber))
            with contextlib.suppress(ConnectionClosed):
                await connection.send(reply)
        return offset

    async def _serve(self, socket: ServerConnection) -> None:
        encoding = encoding_for([socket.subprotocol] if socket.subprotocol else [])
        connection = _Connection(socket, encoding, client=str(uuid.uuid4()))
        self.connections.append(connection)
        try:
            async for frame in socket:
                commands = decode_commands(frame, encoding, limit=100)
                self.frames.append(Received(encoding, frame, commands))
                self._changed.set()
                for command in commands:
                    reply = await self._handle(connection, command)
                    if reply is not None:
                        await connection.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self.connections.remove(connection)
            self._changed.set()

    async def _handle(self, connection: _Connection, command: Command) -> Reply | None:
        if is_ping(command):
            self.pongs += 1
            self._changed.set()
            return None
        reply = Reply(id=command.id)
        if command.HasField("connect"):
            reply.connect.client = connection.client
            reply.connect.version = "0.0.0-fake"
            reply.connect.ping = self.ping_seconds
            reply.connect.pong = True
            reply.connect.node = "fake"
        elif command.HasField("subscribe"):
            request = command.subscribe
            subscriber = _Subscriber(connection, delta=request.delta == "fossil")
            connection.subscriptions[request.channel] = subscriber
            result = reply.subscribe
            result.SetInParent()
            history = self.history.get(request.channel, [])
            result.recoverable = request.recoverable
            result.positioned = request.positioned
            result.delta = subscriber.delta
            if request.recoverable or request.positioned:
                result.epoch = EPOCH
                result.offset = history[-1].offset if history else 0
            if request.recover:
                result.was_recovering = True
                result.recovered = request.epoch == EPOCH
                for publication in history:
                    if publication.offset > request.offset:
                        result.publications.append(_for_subscriber(publication, subscriber))
        elif command.HasField("unsubscribe"):
            connection.subscriptions.pop(command.unsubscribe.channel, None)
            reply.unsubscribe.SetInParent()
        elif command.HasField("publish"):
            reply.publish.SetInParent()
            info = ClientInfo(client=connection.client, user=connection.user)
            await connection.send(reply)
            await self.publish(command.publish.channel, command.publish.data, info)
            return None
        elif command.HasField("history"):
            publications = self.history.get(command.history.channel, [])
            limit = command.history.limit
            chosen = publications if limit < 0 else publications[: max(limit, 0)]
            if command.history.reverse:
                chosen = list(reversed(publications))[: len(chosen)]
            reply.history.SetInParent()
            reply.history.publications.extend(chosen)
            reply.history.epoch = EPOCH
            reply.history.offset = publications[-1].offset if publications else 0
        elif command.HasField("presence"):
            reply.presence.SetInParent()
            for other in self.connections:
                if command.presence.channel in other.subscriptions:
                    reply.presence.presence[other.client].client = other.client
        elif command.HasField("presence_stats"):
            subscribed = [
                other
                for other in self.connections
                if command.presence_stats.channel in other.subscriptions
            ]
            reply.presence_stats.num_clients = len(subscribed)
            reply.presence_stats.num_users = len({other.user for other in subscribed})
        elif command.HasField("rpc"):
            reply.rpc.data = command.rpc.data
        elif command.HasField("send"):
            return None
        else:
            reply.error.code = 104
            reply.error.message = "method not found"
        return reply


def _select_subprotocol(_: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """Protobuf when the client asks for it; JSON (no subprotocol) otherwise."""
    return Subprotocol(PROTOBUF_SUBPROTOCOL) if PROTOBUF_SUBPROTOCOL in offered else None


def _for_subscriber(publication: Publication, subscriber: _Subscriber) -> Publication:
    """The publication as this subscriber receives it: as is, or (delta subscriptions) a
    fossil delta of the previous one when smaller; in JSON a delta subscription's data is
    a JSON string holding the payload or the delta."""
    if not subscriber.delta:
        return publication
    text = not subscriber.connection.encoding.binary
    out = Publication()
    out.CopyFrom(publication)
    data = publication.data
    if subscriber.previous is not None:
        delta = fossil.create(subscriber.previous, data, text=text)
        if len(delta) < len(data):
            out.delta = True
            data = delta
            subscriber.deltas_sent += 1
    subscriber.previous = publication.data
    out.data = orjson.dumps(data.decode()) if text else data
    return out
