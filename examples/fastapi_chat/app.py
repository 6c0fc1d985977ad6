"""A chat in FastAPI with the gateway inside: the app's own login, its own database, and the
gateway's hooks deciding who connects, who joins which room, and what is said.

- ``on_connect`` reads the app's session cookie: no login, no WebSocket (4001).
- ``on_subscribe("chat")`` lets members into their rooms, refuses the others.
- ``on_publish("chat", model=ChatMessage)`` validates each message, stores it, and
  publishes it with its author.
- ``rpc("typing")`` tells a room who is typing.
- ``POST /notify`` publishes from a backend route (``gw.publish``); ``worker.py`` publishes
  from another process (``gateway.Publisher``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Cookie, FastAPI, HTTPException, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from examples.fastapi_chat.store import Store
from gateway import (
    ConnectRequest,
    Gateway,
    Principal,
    PublishRequest,
    Reject,
    RpcRequest,
    SubscribeRequest,
    load_settings,
)

HERE = Path(__file__).parent
store = Store(os.environ.get("CHAT_DB", "chat.sqlite3"))
gw = Gateway(load_settings(HERE / "gateway.toml"))


class ChatMessage(BaseModel):
    text: str = Field(min_length=1, max_length=500)


def room_of(channel: str) -> str:
    return channel.partition(":")[2]


@gw.on_connect
async def authenticate(request: ConnectRequest) -> Principal:
    user = await store.user_of(request.cookies.get("sid"))
    if user is None:
        raise Reject("unauthorized", "log in first")
    return Principal(user=user, info={"name": user})


@gw.on_subscribe("chat")
async def may_join(request: SubscribeRequest) -> None:
    if not await store.is_member(room_of(request.channel), request.user):
        raise Reject("forbidden", f"join {room_of(request.channel)!r} first")


@gw.on_publish("chat", model=ChatMessage)
async def save(request: PublishRequest) -> dict[str, Any]:
    assert request.user is not None
    await store.save(room_of(request.channel), request.user, request.data.text)
    return {"text": request.data.text, "by": request.user}


@gw.rpc("typing")
async def typing(request: RpcRequest) -> dict[str, bool]:
    room = str((request.data or {}).get("room", ""))
    if not await store.is_member(room, request.user):
        raise Reject("forbidden", f"not a member of {room!r}")
    await gw.publish(f"typing:{room}", {"user": request.user})
    return {"ok": True}


app = FastAPI(title="fastapi_chat")
gw.mount(app, "/realtime")
SessionId = Annotated[str | None, Cookie()]


async def logged_in(sid: str | None) -> str:
    user = await store.user_of(sid)
    if user is None:
        raise HTTPException(401, "log in first")
    return user


@app.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(HERE / "static" / "index.html")


class Login(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")


@app.post("/login")
async def login(body: Login, response: Response) -> dict[str, str]:
    """Start a session (no password: it is a demo); the cookie is what on_connect reads."""
    sid = await store.log_in(body.name)
    response.set_cookie("sid", sid, httponly=True, samesite="strict")
    return {"user": body.name}


@app.get("/me")
async def me(sid: SessionId = None) -> dict[str, str]:
    return {"user": await logged_in(sid)}


@app.post("/rooms/{room}/join")
async def join(room: str, sid: SessionId = None) -> dict[str, str]:
    user = await logged_in(sid)
    await store.join(room, user)
    return {"room": room, "user": user}


@app.get("/rooms/{room}/messages")
async def messages(room: str, sid: SessionId = None) -> list[dict[str, Any]]:
    user = await logged_in(sid)
    if not await store.is_member(room, user):
        raise HTTPException(403, f"join {room!r} first")
    return await store.messages(room)


class Notice(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@app.post("/notify")
async def notify(notice: Notice, sid: SessionId = None) -> dict[str, int | None]:
    """Publish to the lobby from the backend: trusted, so no hook runs and nothing is stored."""
    await logged_in(sid)
    position = await gw.publish("chat:lobby", {"text": notice.text, "by": "server"})
    return {"offset": position.offset if position else None}
