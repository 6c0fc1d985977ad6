"""A gateway with a hook of every kind, served by the end-to-end tests with
``gateway serve --app tests.apps.hooked:gw`` (settings from the environment).

What each hook does depends on what the client sends, so that one application exercises
every path: ``?as=`` (or the ``sid`` cookie) names the user, ``?refuse=`` makes on_connect
refuse or fail; rooms, channels and data ask for rejections, failures and waits; rpc
methods report what the hooks saw and release the hooks that wait.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pydantic import BaseModel, Field

from gateway import (
    ConnectRequest,
    DisconnectEvent,
    Gateway,
    Principal,
    PublishRequest,
    Reject,
    RpcRequest,
    SubscribeRequest,
)

gw = Gateway()

seen: dict[str, list[Any]] = {"connect": [], "stored": [], "disconnect": [], "threads": []}
_gates: dict[str, asyncio.Event] = {}
blocking_gate = threading.Event()
"""What the plain-def hook of ``blocking:`` channels waits for, in its thread."""


def gate(name: str) -> asyncio.Event:
    """An event the hooks wait on, set by ``rpc("release", name)``."""
    return _gates.setdefault(name, asyncio.Event())


class Line(BaseModel):
    text: str = Field(min_length=1, max_length=100)
    mood: str = "plain"


@gw.on_connect
async def authenticate(request: ConnectRequest) -> Principal | None:
    refuse = request.query.get("refuse")
    seen["connect"].append(
        {
            "path": request.path,
            "client_ip": request.client_ip,
            "agent": request.headers.get("X-TEST-AGENT"),
            "claims": dict(request.claims) if request.claims is not None else None,
            "transport": request.transport,
        }
    )
    if refuse == "unauthorized":
        raise Reject("unauthorized", "log in first")
    if refuse == "forbidden":
        raise Reject("forbidden", "banned from this gateway")
    if refuse == "boom":
        raise RuntimeError("a bug in on_connect")
    if refuse == "wait":
        await gate("connect").wait()
    user = request.query.get("as") or request.cookies.get("sid")
    if user is None:
        return None
    return Principal(user=user, info={"name": user.title()})


@gw.on_subscribe("rooms")
async def may_join(request: SubscribeRequest) -> None:
    room = request.channel.partition(":")[2]
    if room == "boom":
        raise ValueError("a bug in on_subscribe")
    if room == "slow":
        await gate("subscribe").wait()
    if room == "never":
        await asyncio.Event().wait()
    if room != "open" and not room.startswith(f"{request.user}-"):
        raise Reject("forbidden", f"{request.user} is not a member of {room}")


@gw.on_subscribe("blocking")
def blocks(request: SubscribeRequest) -> None:
    """A plain def: runs in a thread, so waiting here blocks no other client."""
    seen["threads"].append(threading.current_thread().name)
    if not blocking_gate.wait(30):
        raise Reject("unavailable", "never released")


@gw.on_publish("typed", model=Line)
async def store(request: PublishRequest) -> dict[str, Any]:
    assert isinstance(request.data, Line)
    entry = {"channel": request.channel, "user": request.user, "text": request.data.text}
    if request.idempotency_key is not None:
        entry["key"] = request.idempotency_key
    seen["stored"].append(entry)
    return {"text": request.data.text.upper(), "by": request.user}


@gw.on_publish("ordered")
async def ordered(request: PublishRequest) -> None:
    """Waits as long as the data asks (a hook doing I/O), then publishes the data as sent."""
    await asyncio.sleep(request.data.get("wait", 0) / 1000)
    return None


@gw.on_publish("synced")
def synced(request: PublishRequest) -> Any:
    """A plain def that rewrites the data."""
    seen["threads"].append(threading.current_thread().name)
    return {
        "n": request.data["n"],
        "thread": threading.current_thread() is not threading.main_thread(),
    }


@gw.on_publish("refusing")
async def refusing(request: PublishRequest) -> Any:
    if request.data == "forbidden":
        raise Reject("forbidden", "not here")
    if request.data == "rate":
        raise Reject("rate_limited", "slow down")
    if request.data == "boom":
        raise RuntimeError("a bug in on_publish")
    if request.data == "unencodable":
        return object()
    if request.data == "slow":
        await gate("publish").wait()
    return None


@gw.rpc("whoami")
async def whoami(request: RpcRequest) -> dict[str, Any]:
    return {"user": request.user, "client": request.client, "info": request.info}


@gw.rpc("echo")
def echo(request: RpcRequest) -> Any:
    return {
        "data": request.data,
        "thread": threading.current_thread() is not threading.main_thread(),
    }


@gw.rpc("fail")
async def fail(request: RpcRequest) -> None:
    raise KeyError("a bug in an rpc method")


@gw.rpc("refuse")
async def refuse(request: RpcRequest) -> None:
    raise Reject("forbidden", "only admins")


@gw.rpc("release")
async def release(request: RpcRequest) -> str:
    if request.data == "blocking":
        blocking_gate.set()
    else:
        gate(str(request.data)).set()
    return "released"


@gw.rpc("seen")
async def report(request: RpcRequest) -> Any:
    return seen[str(request.data)]


@gw.rpc("announce")
async def announce(request: RpcRequest) -> Any:
    """Publish in process, as the server: no hook, no validation (once per
    ``idempotency_key``, when the request names one)."""
    fields = request.data
    position = await gw.publish(
        fields["channel"], fields["data"], idempotency_key=fields.get("idempotency_key")
    )
    return None if position is None else {"offset": position.offset, "epoch": position.epoch}


@gw.on_disconnect
async def gone(event: DisconnectEvent) -> None:
    seen["disconnect"].append({"client": event.client, "user": event.user, "code": event.code})
