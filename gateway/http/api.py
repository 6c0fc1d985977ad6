"""The server HTTP API, for the application's own backend: publish as the server, broadcast,
read presence and history, disconnect a user on every replica, and list the live replicas.

Every route needs ``Authorization: Bearer <GATEWAY_API_KEY>``; without a key configured the
API refuses every call. Routes only validate, call one service (the publisher, channels,
the control channel or the registry), and answer; a `GatewayError` becomes the HTTP status
of its code (`gateway.wire.errors.ERRORS`) with ``{"detail": {"code", "message"}}``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, SecretStr

from gateway.control.channel import ControlChannel
from gateway.control.registry import NodeRegistry
from gateway.services.channels import Channels
from gateway.services.publisher import Publisher
from gateway.wire.channels import is_valid_channel
from gateway.wire.errors import ERRORS, GatewayError
from gateway.wire.protocol import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_OFFSET,
    MAX_TAGS,
    StreamPosition,
)

T = TypeVar("T")

MAX_BROADCAST_CHANNELS = 1000


def _valid_channel(name: str) -> str:
    if not is_valid_channel(name):
        raise ValueError("a channel is 1-255 characters of A-Z a-z 0-9 _ - : . @ / = , $")
    return name


ChannelName = Annotated[str, AfterValidator(_valid_channel)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


IdempotencyKey = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        description="Publish at most once per channel: a key already accepted on the channel "
        "within `idempotency_window` seconds answers with the first publication's offset, "
        "and nothing is delivered again",
    ),
]
Tags = Annotated[
    dict[str, str] | None,
    Field(default=None, max_length=MAX_TAGS, description="Publication tags (string values)"),
]


class PublishRequest(_Request):
    channel: ChannelName
    data: JsonValue = Field(description="Any JSON value, null included")
    tags: Tags = None
    idempotency_key: IdempotencyKey = None


class PublishResult(BaseModel):
    offset: int | None = Field(default=None, description="Present on channels with history")


class BroadcastRequest(_Request):
    channels: list[ChannelName] = Field(min_length=1, max_length=MAX_BROADCAST_CHANNELS)
    data: JsonValue
    tags: Tags = None
    idempotency_key: IdempotencyKey = None


class BroadcastResult(BaseModel):
    offsets: dict[str, int] = Field(description="Offsets of the channels with history")


class PresenceResult(BaseModel):
    channel: str
    clients: dict[str, Any] = Field(description="`{client id: {user, info}}`")


class HistoryResult(BaseModel):
    channel: str
    offset: int = Field(description="The channel's latest offset")
    epoch: str
    messages: list[Any] = Field(description="`message` frames, in offset order")
    more: bool = Field(
        description="More messages matched than fit in `history_reply_bytes`: ask again "
        "with `since` set to the last one's offset"
    )


class DisconnectRequest(_Request):
    user: str = Field(min_length=1, max_length=1024, description="The `sub` of the user")


class DisconnectResult(BaseModel):
    user: str


class NodeTotals(BaseModel):
    """Counters since the replica started: they only grow, so two readings give rates."""

    published: int = Field(description="Messages published through this replica")
    delivered: int = Field(description="Messages handed to this replica's clients")
    received_bytes: int = Field(description="Bytes of frames received from clients")
    sent_bytes: int = Field(description="Bytes of frames sent to clients")
    commands: dict[str, int] = Field(description="Commands by result: `ok` or an error code")
    errors: dict[str, int] = Field(description="`error` frames sent, by code")
    slow_consumers: int = Field(description="Connections closed with 4008")
    repairs: int = Field(description="Times a channel's skipped offsets were read from history")


class ChannelActivity(BaseModel):
    channel: str
    subscribers: int = Field(description="Subscribers on this replica")
    messages: int = Field(
        description="Publications this replica received on the channel since it began holding it"
    )


class NodeInfo(BaseModel):
    node: str
    connections: int
    subscriptions: int = Field(description="Client subscriptions, summed over connections")
    channels: int = Field(description="Distinct channels held by the replica")
    uptime: float = Field(description="Seconds since the replica started")
    started_at: float = Field(description="Unix time the replica started")
    at: float | None = Field(
        default=None, description="Unix time these figures were taken (for rates)"
    )
    ready: bool | None = Field(default=None, description="The replica accepts clients")
    readiness: str | None = Field(default=None, description="`ready`, or why not")
    totals: NodeTotals | None = None
    top_channels: list[ChannelActivity] | None = Field(
        default=None,
        description="The replica's 10 channels with the most subscribers and its 10 with "
        "the most publications",
    )


class InfoResult(BaseModel):
    nodes: list[NodeInfo]


_bearer = HTTPBearer(auto_error=False, description="The gateway's API key (GATEWAY_API_KEY)")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


async def _answer(call: Awaitable[T]) -> T:
    try:
        return await call
    except GatewayError as error:
        status = ERRORS[error.code].status
        detail = {"code": error.code.value, "message": error.message}
        raise HTTPException(status, detail=detail) from None


def api_router(
    api_key: SecretStr | None,
    publisher: Publisher,
    channels: Channels,
    control: ControlChannel,
    registry: NodeRegistry,
) -> APIRouter:
    """The ``/api`` routes of one replica."""
    expected = _digest(api_key.get_secret_value()) if api_key is not None else None
    namespaces = channels.namespaces

    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        """Constant-time check of the bearer key; 401 when absent, wrong, or not configured."""
        given = _digest(credentials.credentials) if credentials is not None else b""
        if expected is None or not hmac.compare_digest(given, expected):
            message = (
                "the server API is disabled: no API key is configured"
                if expected is None
                else "missing or invalid API key"
            )
            raise HTTPException(401, detail=message, headers={"WWW-Authenticate": "Bearer"})

    router = APIRouter(
        prefix="/api",
        tags=["server API"],
        dependencies=[Depends(authorized)],
        responses={401: {"description": "Missing or invalid API key"}},
    )

    @router.post("/publish", response_model_exclude_none=True)
    async def publish(body: PublishRequest) -> PublishResult:
        """Publish `data` to a channel as the server: the message carries no `from`."""
        offsets = await _answer(
            publisher.broadcast(
                [body.channel],
                body.data,
                body.tags or None,
                idempotency_key=body.idempotency_key,
            )
        )
        return PublishResult(offset=offsets.get(body.channel))

    @router.post("/broadcast")
    async def broadcast(body: BroadcastRequest) -> BroadcastResult:
        """Publish the same `data` to several channels."""
        names = list(dict.fromkeys(body.channels))
        published = publisher.broadcast(
            names, body.data, body.tags or None, idempotency_key=body.idempotency_key
        )
        return BroadcastResult(offsets=await _answer(published))

    @router.get("/presence/{channel:path}")
    async def presence(channel: Annotated[ChannelName, Path()]) -> PresenceResult:
        """Everyone subscribed to a channel, on every replica (namespaces with presence)."""
        clients = await _answer(_presence(channel))
        return PresenceResult(channel=channel, clients=clients)

    async def _presence(channel: str) -> dict[str, Any]:
        return await channels.presence(channel, namespaces.of(channel))

    @router.get("/history/{channel:path}")
    async def history(
        channel: Annotated[ChannelName, Path()],
        since: Annotated[
            int | None, Query(ge=0, le=MAX_OFFSET, description="Offset of the last seen")
        ] = None,
        epoch: Annotated[str | None, Query(description="Epoch of `since`")] = None,
        limit: Annotated[int | None, Query(ge=0, description="At most this many")] = None,
    ) -> HistoryResult:
        """A channel's messages after `since` (with its `epoch`), else the latest ones,
        oldest first: at most `history_reply_bytes` of them, with `more` when some were
        left out (ask again with `since` set to the last one)."""
        if (since is None) != (epoch is None):
            raise HTTPException(422, detail="since and epoch go together")
        position = StreamPosition(since, epoch) if since is not None and epoch is not None else None
        found = await _answer(_history(channel, position, limit))
        messages = [orjson.loads(frame) for _, frame in found.messages]
        top = found.position
        return HistoryResult(
            channel=channel, offset=top.offset, epoch=top.epoch, messages=messages, more=found.more
        )

    async def _history(channel: str, since: StreamPosition | None, limit: int | None) -> Any:
        return await channels.history(channel, namespaces.of(channel), since, limit)

    @router.post("/disconnect")
    async def disconnect(body: DisconnectRequest) -> DisconnectResult:
        """Close every connection of a user, on every replica, with 4003."""
        await _answer(control.disconnect_user(body.user))
        return DisconnectResult(user=body.user)

    @router.get("/info", response_model_exclude_none=True)
    async def info() -> InfoResult:
        """Every live replica: connections, subscriptions, uptime, readiness, counters
        since it started, and its top channels. Fields after `started_at` are absent for
        replicas of versions that do not announce them."""
        nodes = await _answer(registry.nodes())
        return InfoResult(nodes=[NodeInfo.model_validate(node) for node in nodes])

    return router
