"""python-socketio with its Redis manager, served by uvicorn: the Python peer most users pick.

Events: ``subscribe`` (a room name; acknowledged once joined) and ``publish``
(``{"channel","data"}``; emitted to that room on every process through
``AsyncRedisManager``, acknowledged once Redis took it). Subscribers receive
``message`` events carrying ``{"channel","data"}``. ``GET /readyz`` answers 200.
Run: ``python -m bench.servers.sio --port 8001 --redis-url redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn


async def _readyz(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The plain ASGI app behind Socket.IO: only ``/readyz``."""
    if scope["type"] != "http":
        return
    found = scope["path"] == "/readyz"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ready\n" if found else b""})


def create_app(redis_url: str) -> socketio.ASGIApp:
    server = socketio.AsyncServer(
        async_mode="asgi", client_manager=socketio.AsyncRedisManager(redis_url)
    )

    @server.on("subscribe")  # type: ignore[misc]
    async def subscribe(sid: str, channel: str) -> bool:
        await server.enter_room(sid, channel)
        return True

    @server.on("publish")  # type: ignore[misc]
    async def publish(sid: str, message: dict[str, Any]) -> bool:
        await server.emit("message", message, room=message["channel"])
        return True

    return socketio.ASGIApp(server, other_asgi_app=_readyz)


def main() -> None:
    parser = argparse.ArgumentParser(description="python-socketio + AsyncRedisManager server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.redis_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
