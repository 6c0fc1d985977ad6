"""Centrifugo's server HTTP API: ``POST /api/<method>`` with ``X-API-Key``, so that `cent`
and Centrifugo's other API libraries work against the gateway.

A request under ``/api/`` that carries ``X-API-Key`` is this API's; any other goes on to
the gateway's own (Bearer) ``/api`` routes, unchanged. The key is the same ``api_key``.
It sits inside `InternalPaths`, so it lives on ``internal_port`` like the rest of
``/api/*``. As in Centrifugo, every answer to an authorized request is HTTP 200 with
``{"result": ...}`` or ``{"error": {"code", "message"}}`` (codes of
`gateway.wire.centrifugo.codes`); a wrong or missing key is HTTP 401.

Methods: publish, broadcast, subscribe, unsubscribe, disconnect, presence, presence_stats,
history, history_remove (the channel's messages; its epoch and offset stay), info,
channels, batch. ``idempotency_key`` acts as on ``/ws``: a key already accepted on the
channel within ``idempotency_window`` (300 s, as Centrifugo's own) answers with the first
publication's offset and delivers nothing again.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.control.channel import ControlChannel
from gateway.control.registry import NodeRegistry
from gateway.core.hub import Hub
from gateway.services.channels import Channels
from gateway.services.namespaces import history_policy
from gateway.services.publisher import Publisher
from gateway.session.centrifugo import ReplyError as ApiError
from gateway.session.centrifugo import is_valid_centrifugo_channel
from gateway.session.centrifugo_control import DISCONNECT, SUBSCRIBE, UNSUBSCRIBE
from gateway.session.centrifugo_history import PositionLost, read_history
from gateway.settings import NamespaceOptions
from gateway.version import __version__
from gateway.wire.centrifugo import pushes
from gateway.wire.centrifugo.codes import ERROR_CODES, CentrifugoError
from gateway.wire.errors import GatewayError
from gateway.wire.protocol import MAX_OFFSET, StreamPosition, check_tags

API_KEY_HEADER = b"x-api-key"
MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body read; a larger one is a bad request."""
MAX_BATCH_COMMANDS = 1000
MAX_BROADCAST_CHANNELS = 1000
MAX_IDEMPOTENCY_KEY = 64

Params = dict[str, Any]


def _error(code: CentrifugoError | int, message: str) -> dict[str, Any]:
    return {"error": {"code": int(code), "message": message}}


class CentrifugoApi:
    """The methods of the API, over the services of one replica."""

    def __init__(
        self,
        publisher: Publisher,
        channels: Channels,
        control: ControlChannel,
        registry: NodeRegistry,
        hub: Hub,
        history_reply_bytes: int,
    ) -> None:
        self._publisher = publisher
        self._channels = channels
        self._namespaces = channels.namespaces
        self._control = control
        self._registry = registry
        self._hub = hub
        self._reply_bytes = history_reply_bytes
        self.methods: dict[str, Callable[[Params], Awaitable[dict[str, Any]]]] = {
            "publish": self.publish,
            "broadcast": self.broadcast,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "disconnect": self.disconnect,
            "presence": self.presence,
            "presence_stats": self.presence_stats,
            "history": self.history,
            "history_remove": self.history_remove,
            "info": self.info,
            "channels": self.list_channels,
            "batch": self.batch,
        }

    async def call(self, method: str, params: object) -> dict[str, Any]:
        """``{"result": ...}`` or ``{"error": ...}`` for one method call."""
        handler = self.methods.get(method)
        if handler is None:
            return _error(CentrifugoError.METHOD_NOT_FOUND, f"unknown method {method[:64]!r}")
        if not isinstance(params, dict):
            return _error(CentrifugoError.BAD_REQUEST, "the body must be a JSON object")
        try:
            return {"result": await handler(params)}
        except ApiError as error:
            return _error(error.code, error.message)
        except GatewayError as error:
            return _error(ERROR_CODES[error.code], error.message)

    # Publishing

    async def publish(self, params: Params) -> dict[str, Any]:
        channel = _channel(params)
        return await self._publish(channel, params)

    async def broadcast(self, params: Params) -> dict[str, Any]:
        names = params.get("channels")
        if (
            not isinstance(names, list)
            or not 0 < len(names) <= MAX_BROADCAST_CHANNELS
            or not all(isinstance(name, str) for name in names)
        ):
            raise ApiError(
                CentrifugoError.BAD_REQUEST,
                f"channels must be a list of 1 to {MAX_BROADCAST_CHANNELS} channel names",
            )
        for name in names:
            _channel({"channel": name})
        _publication_fields(params)
        replies = await asyncio.gather(
            *(self.call("publish", {**params, "channel": name}) for name in names)
        )
        return {"responses": list(replies)}

    async def _publish(self, channel: str, params: Params) -> dict[str, Any]:
        data, tags, skip_history = _publication_fields(params)
        options = self._namespaces.of(channel)
        if skip_history:
            options = options.model_copy(update={"history_size": 0})
        position = await self._publisher.publish(
            channel,
            data,
            options=options,
            tags=tags,
            idempotency_key=params.get("idempotency_key") or None,
        )
        if position is None:
            return {}
        return {"offset": position.offset, "epoch": position.epoch}

    # Connections of a user, on every replica

    async def subscribe(self, params: Params) -> dict[str, Any]:
        await self._control.send(SUBSCRIBE, **_user_channel(params))
        return {}

    async def unsubscribe(self, params: Params) -> dict[str, Any]:
        await self._control.send(UNSUBSCRIBE, **_user_channel(params))
        return {}

    async def disconnect(self, params: Params) -> dict[str, Any]:
        user, client = _user(params), _optional_string(params, "client")
        fields: dict[str, Any] = {"user": user, "client": client}
        advice = params.get("disconnect")
        if advice is not None:
            if not isinstance(advice, dict):
                raise ApiError(CentrifugoError.BAD_REQUEST, "disconnect must be {code, reason}")
            code, reason = advice.get("code", 0), advice.get("reason", "")
            if not isinstance(code, int) or not (code == 0 or 3000 <= code <= 4999):
                raise ApiError(CentrifugoError.BAD_REQUEST, "disconnect.code must be 3000-4999")
            if not isinstance(reason, str) or len(reason.encode()) > 123:
                raise ApiError(CentrifugoError.BAD_REQUEST, "disconnect.reason: at most 123 bytes")
            fields.update(code=code or None, reason=reason)
        await self._control.send(DISCONNECT, **fields)
        return {}

    # Reads

    async def presence(self, params: Params) -> dict[str, Any]:
        members = await self._members(_channel(params))
        presence = {
            client: {"client": client, "user": fields.get("user") or "", **_conn_info(fields)}
            for client, fields in members.items()
        }
        return {"presence": presence}

    async def presence_stats(self, params: Params) -> dict[str, Any]:
        members = await self._members(_channel(params))
        users = {fields.get("user") or "" for fields in members.values()}
        return {"num_clients": len(members), "num_users": len(users)}

    async def _members(self, channel: str) -> dict[str, Any]:
        options = self._namespaces.of(channel)
        if not options.presence:
            raise ApiError(CentrifugoError.NOT_AVAILABLE, "presence is off for this channel")
        return await self._channels.presence(channel, options)

    async def history(self, params: Params) -> dict[str, Any]:
        channel = _channel(params)
        policy = _history(self._namespaces.of(channel))
        limit, reverse = params.get("limit", 0), params.get("reverse", False)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < -1:
            raise ApiError(CentrifugoError.BAD_REQUEST, "limit must be an integer, -1 or more")
        if not isinstance(reverse, bool):
            raise ApiError(CentrifugoError.BAD_REQUEST, "reverse must be true or false")
        try:
            top, messages = await read_history(
                self._channels.history_reader,
                channel,
                policy,
                since=_since(params.get("since")),
                limit=limit,
                reverse=reverse,
                max_bytes=self._reply_bytes,
            )
        except PositionLost:
            raise ApiError(CentrifugoError.UNRECOVERABLE_POSITION) from None
        publications = [_publication(offset, frame) for offset, frame in messages]
        return {"publications": publications, "offset": top.offset, "epoch": top.epoch}

    async def history_remove(self, params: Params) -> dict[str, Any]:
        channel = _channel(params)
        options = self._namespaces.of(channel)
        _history(options)
        await self._channels.remove_history(channel, options)
        return {}

    async def info(self, params: Params) -> dict[str, Any]:
        nodes = await self._registry.nodes()
        now = time.time()
        return {
            "nodes": [
                {
                    "uid": node.get("node", ""),
                    "name": node.get("node", ""),
                    "version": __version__,
                    "num_clients": node.get("connections", 0),
                    "num_subs": node.get("subscriptions", 0),
                    "num_channels": node.get("channels", 0),
                    "num_users": 0,
                    "uptime": int(now - node.get("started_at", now)),
                }
                for node in nodes
            ]
        }

    async def list_channels(self, params: Params) -> dict[str, Any]:
        """This replica's channels with their subscribers here, and the busiest channels
        other replicas announce (the registry carries no more of them)."""
        pattern = _optional_string(params, "pattern") or "*"
        counts: dict[str, int] = {}
        for node in await self._registry.nodes():
            for entry in node.get("top_channels") or ():
                name, subscribers = entry.get("channel"), entry.get("subscribers", 0)
                if isinstance(name, str) and isinstance(subscribers, int):
                    counts[name] = counts.get(name, 0) + subscribers
        for name, subscribers, _ in self._hub.activity():
            counts[name] = max(counts.get(name, 0), subscribers)
        return {
            "channels": {
                name: {"num_clients": number}
                for name, number in sorted(counts.items())
                if fnmatch.fnmatchcase(name, pattern)
            }
        }

    async def batch(self, params: Params) -> dict[str, Any]:
        commands, parallel = params.get("commands"), params.get("parallel", False)
        if not isinstance(commands, list) or len(commands) > MAX_BATCH_COMMANDS:
            raise ApiError(
                CentrifugoError.BAD_REQUEST,
                f"commands must be a list of at most {MAX_BATCH_COMMANDS}",
            )
        calls = [self._batched(command) for command in commands]
        if parallel:
            return {"replies": list(await asyncio.gather(*calls))}
        return {"replies": [await call for call in calls]}

    async def _batched(self, command: object) -> dict[str, Any]:
        if not isinstance(command, dict) or len(command) != 1:
            return _error(CentrifugoError.BAD_REQUEST, "a command is {method: params}")
        ((method, params),) = command.items()
        if method == "batch":
            return _error(CentrifugoError.BAD_REQUEST, "batch does not nest")
        reply = await self.call(method, params)
        return reply if "error" in reply else {method: reply["result"]}


class CentrifugoApiRoute:
    """ASGI middleware: ``POST /api/<method>`` with ``X-API-Key`` to `CentrifugoApi`;
    everything else to the app."""

    def __init__(self, app: ASGIApp, api: CentrifugoApi, api_key: SecretStr | None) -> None:
        self.app = app
        self._api = api
        self._expected = (
            hashlib.sha256(api_key.get_secret_value().encode()).digest()
            if api_key is not None
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = self._method_of(scope)
        if method is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self._answer(request, method)
        await response(scope, receive, send)

    @staticmethod
    def _method_of(scope: Scope) -> str | None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        if not any(name == API_KEY_HEADER for name, _ in scope["headers"]):
            return None
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if not path.startswith("/api/"):
            return None
        return path.removeprefix("/api/")

    async def _answer(self, request: Request, method: str) -> Response:
        given = request.headers.get("x-api-key", "")
        digest = hashlib.sha256(given.encode()).digest()
        if self._expected is None or not hmac.compare_digest(digest, self._expected):
            message = (
                "the server API is disabled: no API key is configured"
                if self._expected is None
                else "missing or invalid API key"
            )
            return Response(message + "\n", status_code=401, media_type="text/plain")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _json(_error(CentrifugoError.BAD_REQUEST, "request body too large"))
        try:
            params = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as error:
            return _json(_error(CentrifugoError.BAD_REQUEST, f"invalid JSON: {error}"))
        return _json(await self._api.call(method, params))


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _channel(params: Params) -> str:
    channel = params.get("channel")
    if not isinstance(channel, str) or not is_valid_centrifugo_channel(channel):
        raise ApiError(CentrifugoError.BAD_REQUEST, "channel must be a valid channel name")
    return channel


def _user(params: Params) -> str:
    user = params.get("user")
    if not isinstance(user, str) or not 0 < len(user) <= 1024:
        raise ApiError(CentrifugoError.BAD_REQUEST, "user must be a non-empty string")
    return user


def _user_channel(params: Params) -> dict[str, Any]:
    return {
        "user": _user(params),
        "channel": _channel(params),
        "client": _optional_string(params, "client"),
    }


def _optional_string(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(CentrifugoError.BAD_REQUEST, f"{name} must be a string")
    return value or None


def _publication_fields(params: Params) -> tuple[Any, dict[str, str] | None, bool]:
    if "data" not in params:
        raise ApiError(CentrifugoError.BAD_REQUEST, "data is required")
    try:
        tags = check_tags(params.get("tags"))
    except GatewayError as error:
        raise ApiError(CentrifugoError.BAD_REQUEST, error.message) from None
    skip_history = params.get("skip_history", False)
    if not isinstance(skip_history, bool):
        raise ApiError(CentrifugoError.BAD_REQUEST, "skip_history must be true or false")
    key = params.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or len(key) > MAX_IDEMPOTENCY_KEY):
        raise ApiError(
            CentrifugoError.BAD_REQUEST,
            f"idempotency_key must be a string of at most {MAX_IDEMPOTENCY_KEY} characters",
        )
    return params["data"], tags, skip_history


def _history(options: NamespaceOptions) -> Any:
    policy = history_policy(options)
    if policy is None:
        raise ApiError(CentrifugoError.NOT_AVAILABLE, "history is off for this channel")
    return policy


def _since(value: object) -> StreamPosition | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(CentrifugoError.BAD_REQUEST, "since must be {offset, epoch}")
    offset, epoch = value.get("offset", 0), value.get("epoch", "")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise ApiError(CentrifugoError.BAD_REQUEST, "since.offset must be a non-negative integer")
    if not isinstance(epoch, str):
        raise ApiError(CentrifugoError.BAD_REQUEST, "since.epoch must be a string")
    return StreamPosition(offset, epoch)


def _conn_info(fields: dict[str, Any]) -> dict[str, Any]:
    info = fields.get("info")
    return {} if info is None else {"conn_info": info}


def _publication(offset: int, frame: bytes) -> dict[str, Any]:
    event = pushes.read_frame(frame)
    if event is None:
        return {"offset": offset}
    publication: dict[str, Any] = {"data": orjson.Fragment(event.data), "offset": offset}
    if event.info is not None:
        info = event.info
        publication["info"] = {"client": info.client, "user": info.user}
        if info.conn_info:
            publication["info"]["conn_info"] = orjson.Fragment(info.conn_info)
    if event.tags:
        publication["tags"] = event.tags
    return publication
