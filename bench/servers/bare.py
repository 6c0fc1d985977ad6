"""The bare reference relay: the least a Python WebSocket + Redis relay can do.

The ``websockets`` library's asyncio server and redis-py's asyncio client, one Redis
subscription per channel per process, fan-out with ``websockets.broadcast``. It speaks the
subset of protocol v1 the bench uses, one command per text frame:

- ``{"op":"subscribe","id":N,"channel":C}`` → ``{"op":"subscribed","id":N,"channel":C}``
  once the Redis subscription is confirmed;
- ``{"op":"publish","id":N,"channel":C,"data":D}`` → one PUBLISH of
  ``{"op":"message","channel":C,"data":D}``, then ``{"op":"published","id":N,"channel":C}``;
- every publication of a subscribed channel arrives as that ``message`` frame.

``GET /readyz`` answers 200 once Redis is connected. Run: ``python -m bench.servers.bare
--port 8001 --redis-url redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from http import HTTPStatus
from typing import Any

import orjson
from redis.asyncio import Redis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.http11 import Request, Response

CONTROL_CHANNEL = "bare:control"
"""Subscribed at start so redis-py's reader always has a subscription to listen on."""


class Relay:
    """Local rooms of one process and their Redis subscriptions."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pubsub = redis.pubsub()
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.confirmed: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> None:
        await self.pubsub.subscribe(CONTROL_CHANNEL)

    async def read(self) -> None:
        """Relay every publication to the channel's local room."""
        async for message in self.pubsub.listen():
            kind = message["type"]
            if kind == "message":
                room = self.rooms.get(message["channel"].decode())
                if room:
                    broadcast(room, message["data"], text=True)
            elif kind == "subscribe":
                waiter = self.confirmed.get(message["channel"].decode())
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def join(self, channel: str, connection: ServerConnection) -> None:
        room = self.rooms.get(channel)
        if room is None:
            room = self.rooms[channel] = set()
            self.confirmed[channel] = asyncio.get_running_loop().create_future()
            await self.pubsub.subscribe(channel)
        await asyncio.shield(self.confirmed[channel])
        room.add(connection)

    async def leave(self, channel: str, connection: ServerConnection) -> None:
        room = self.rooms.get(channel)
        if room is None:
            return
        room.discard(connection)
        if not room:
            del self.rooms[channel]
            del self.confirmed[channel]
            await self.pubsub.unsubscribe(channel)

    async def serve(self, connection: ServerConnection) -> None:
        joined: set[str] = set()
        try:
            async for text in connection:
                command: dict[str, Any] = orjson.loads(text)
                op, channel = command.get("op"), command.get("channel")
                if op == "publish":
                    frame = {"op": "message", "channel": channel, "data": command.get("data")}
                    await self.redis.publish(channel, orjson.dumps(frame))
                    await connection.send(_reply("published", command, channel))
                elif op == "subscribe" and isinstance(channel, str):
                    await self.join(channel, connection)
                    joined.add(channel)
                    await connection.send(_reply("subscribed", command, channel))
                else:
                    await connection.send(_reply("error", command, channel))
        finally:
            for channel in joined:
                await self.leave(channel, connection)


def _reply(op: str, command: dict[str, Any], channel: Any) -> str:
    return orjson.dumps({"op": op, "id": command.get("id"), "channel": channel}).decode()


def _readyz(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/readyz":
        return connection.respond(HTTPStatus.OK, "ready\n")
    return None


async def run(port: int, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    relay = Relay(redis)
    await relay.start()
    reader = asyncio.create_task(relay.read())
    async with serve(
        relay.serve,
        "127.0.0.1",
        port,
        process_request=_readyz,
        compression=None,
        ping_interval=25,
        ping_timeout=50,
        max_size=65536,
        server_header=None,
    ) as server:
        await server.serve_forever()
    reader.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="bare websockets + redis-py relay")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(run(args.port, args.redis_url))
        else:
            uvloop.run(run(args.port, args.redis_url))


if __name__ == "__main__":
    main()
