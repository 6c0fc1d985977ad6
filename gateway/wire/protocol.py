"""Protocol v1 frames: parse client commands, build server frames. Pure: text in, values out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

from gateway.wire.channels import is_valid_channel
from gateway.wire.errors import Disconnect, ErrorCode, GatewayError

PROTOCOL_VERSION = 1
SUBPROTOCOL = "pubsub.v1"
MAX_ID_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 64
MAX_OFFSET = 2**63 - 1
"""Offsets are non-negative integers below 2^63 (Redis stream ids and counters are 64-bit)."""
MAX_TAGS = 64
"""Most tags one publication may carry (each key and value a string)."""

CommandId: TypeAlias = int | str | None


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's history: the offset of a message and the epoch it belongs to."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Connect:
    id: CommandId
    token: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: CommandId
    channel: str
    since: StreamPosition | None = None
    token: str | None = None
    latest: bool = False
    """Send the channel's latest message after `subscribed` (when ``since`` cannot be
    recovered, or without ``since``)."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: CommandId
    channel: str


@dataclass(frozen=True, slots=True)
class Publish:
    id: CommandId
    channel: str
    data: Any
    tags: dict[str, str] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    id: CommandId
    channel: str


@dataclass(frozen=True, slots=True)
class History:
    id: CommandId
    channel: str
    since: StreamPosition | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    id: CommandId
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: CommandId


@dataclass(frozen=True, slots=True)
class Rpc:
    """A call of a method the application serves (``@gw.rpc``)."""

    id: CommandId
    method: str
    data: Any = None


Command: TypeAlias = (
    Connect | Subscribe | Unsubscribe | Publish | Presence | History | Refresh | Ping | Rpc
)

MAX_METHOD_LENGTH = 128


def parse(text: str) -> list[Command | GatewayError]:
    """Parse one text frame: a JSON object, or several separated by newlines (NDJSON).

    Each line yields a command, or the error to answer it with; blank lines are skipped.
    """
    if "\n" not in text:
        return [parse_line(text)] if text.strip() else []
    return [parse_line(line) for line in text.split("\n") if line.strip()]


def parse_line(line: str | bytes) -> Command | GatewayError:
    """Parse one JSON command; a malformed one becomes the error that answers it."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return GatewayError(ErrorCode.BAD_REQUEST, f"invalid JSON: {exc}")
    if not isinstance(obj, dict):
        return GatewayError(ErrorCode.BAD_REQUEST, "a command must be a JSON object")
    raw_id = obj.get("id")
    try:
        command_id = _command_id(raw_id)
        return _build(obj, command_id)
    except GatewayError as error:
        return error.with_id(_echoable(raw_id))


def _command_id(value: Any) -> CommandId:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GatewayError(ErrorCode.BAD_REQUEST, "id must be an integer or a string")
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        raise GatewayError(ErrorCode.BAD_REQUEST, f"id longer than {MAX_ID_LENGTH} characters")
    return value


def _echoable(value: Any) -> CommandId:
    """The id to echo in an error: echoed as sent when it is a string or an integer."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return value


def _build(obj: dict[str, Any], command_id: CommandId) -> Command:
    op = obj.get("op")
    if op is None:
        raise GatewayError(ErrorCode.BAD_REQUEST, "op is required")
    if not isinstance(op, str):
        raise GatewayError(ErrorCode.BAD_REQUEST, "op must be a string")
    builder = _BUILDERS.get(op)
    if builder is None:
        raise GatewayError(ErrorCode.UNKNOWN_OP, f"unknown op {op[:64]!r}")
    return builder(obj, command_id)


def _channel(obj: dict[str, Any]) -> str:
    channel = obj.get("channel")
    if channel is None:
        raise GatewayError(ErrorCode.BAD_REQUEST, "channel is required")
    if not is_valid_channel(channel):
        raise GatewayError(
            ErrorCode.BAD_REQUEST,
            "channel must be 1-255 characters of A-Z a-z 0-9 _ - : . @ / = , $",
        )
    assert isinstance(channel, str)
    return channel


def _token(obj: dict[str, Any], *, required: bool) -> str | None:
    token = obj.get("token")
    if token is None:
        if required:
            raise GatewayError(ErrorCode.BAD_REQUEST, "token is required")
        return None
    if not isinstance(token, str) or not token:
        raise GatewayError(ErrorCode.BAD_REQUEST, "token must be a non-empty string")
    return token


def _since(obj: dict[str, Any]) -> StreamPosition | None:
    since = obj.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise GatewayError(ErrorCode.BAD_REQUEST, "since must be an object {offset, epoch}")
    offset, epoch = since.get("offset"), since.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise GatewayError(
            ErrorCode.BAD_REQUEST, "since.offset must be a non-negative integer below 2^63"
        )
    if not isinstance(epoch, str):
        raise GatewayError(ErrorCode.BAD_REQUEST, "since.epoch must be a string")
    return StreamPosition(offset, epoch)


def check_idempotency_key(value: Any) -> str | None:
    """An ``idempotency_key`` as given (None when absent).

    Raises:
        GatewayError: `bad_request` unless it is a string of 1 to 64 characters.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise GatewayError(
            ErrorCode.BAD_REQUEST,
            f"idempotency_key must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
        )
    return value


def _latest(obj: dict[str, Any]) -> bool:
    latest = obj.get("latest", False)
    if not isinstance(latest, bool):
        raise GatewayError(ErrorCode.BAD_REQUEST, "latest must be true or false")
    return latest


def _limit(obj: dict[str, Any]) -> int | None:
    limit = obj.get("limit")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise GatewayError(ErrorCode.BAD_REQUEST, "limit must be a non-negative integer")
    return limit


def _publish(obj: dict[str, Any], command_id: CommandId) -> Publish:
    channel = _channel(obj)
    if "data" not in obj:
        raise GatewayError(ErrorCode.BAD_REQUEST, "data is required")
    tags = check_tags(obj.get("tags"))
    key = check_idempotency_key(obj.get("idempotency_key"))
    return Publish(command_id, channel, obj["data"], tags, key)


def _subscribe(obj: dict[str, Any], command_id: CommandId) -> Subscribe:
    channel, since, token = _channel(obj), _since(obj), _token(obj, required=False)
    return Subscribe(command_id, channel, since, token, _latest(obj))


def check_tags(tags: object) -> dict[str, str] | None:
    """A publication's ``tags``: an object of at most `MAX_TAGS` string values (None: none).

    Raises:
        GatewayError: `bad_request` for anything else.
    """
    if tags is None:
        return None
    if (
        not isinstance(tags, dict)
        or len(tags) > MAX_TAGS
        or not all(isinstance(value, str) for value in tags.values())
    ):
        raise GatewayError(
            ErrorCode.BAD_REQUEST, f"tags must be an object of at most {MAX_TAGS} string values"
        )
    return tags or None


def _rpc(obj: dict[str, Any], command_id: CommandId) -> Rpc:
    method = obj.get("method")
    if method is None:
        raise GatewayError(ErrorCode.BAD_REQUEST, "method is required")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_LENGTH:
        raise GatewayError(
            ErrorCode.BAD_REQUEST, f"method must be a string of 1-{MAX_METHOD_LENGTH} characters"
        )
    return Rpc(command_id, method, obj.get("data"))


_BUILDERS: dict[str, Callable[[dict[str, Any], CommandId], Command]] = {
    "connect": lambda o, i: Connect(i, _token(o, required=True) or ""),
    "subscribe": _subscribe,
    "unsubscribe": lambda o, i: Unsubscribe(i, _channel(o)),
    "publish": _publish,
    "presence": lambda o, i: Presence(i, _channel(o)),
    "history": lambda o, i: History(i, _channel(o), _since(o), _limit(o)),
    "refresh": lambda o, i: Refresh(i, _token(o, required=True) or ""),
    "ping": lambda o, i: Ping(i),
    "rpc": _rpc,
}

KNOWN_OPS = frozenset(_BUILDERS)
_OP_OF_TYPE: dict[type[Any], str] = {
    Connect: "connect",
    Subscribe: "subscribe",
    Unsubscribe: "unsubscribe",
    Publish: "publish",
    Presence: "presence",
    History: "history",
    Refresh: "refresh",
    Ping: "ping",
    Rpc: "rpc",
}


def op_of(command: Command) -> str:
    """The wire name of a parsed command."""
    return _OP_OF_TYPE[type(command)]


# Server frames. Each returns the frame's JSON text as bytes, ready for the socket.


def reply(op: str, command_id: CommandId, **fields: Any) -> bytes:
    """A reply frame echoing the command's id (omitted when the command had none)."""
    frame: dict[str, Any] = {"op": op}
    if command_id is not None:
        frame["id"] = command_id
    frame.update(fields)
    return orjson.dumps(frame)


def error(err: GatewayError) -> bytes:
    """The `error` frame answering a failed command (with ``details`` when it has them)."""
    if err.details is not None:
        return reply("error", err.id, code=err.code.value, message=err.message, details=err.details)
    return reply("error", err.id, code=err.code.value, message=err.message)


def welcome(
    client: str, node: str, user: str | None, ping: float, command_id: CommandId = None
) -> bytes:
    """The first frame of every connection; ``command_id`` echoes the id of a ``connect``."""
    return reply(
        "welcome",
        command_id,
        client=client,
        node=node,
        user=user,
        ping=int(ping) if float(ping).is_integer() else ping,
        version=PROTOCOL_VERSION,
    )


def disconnect(reason: Disconnect) -> bytes:
    """Sent just before a server-initiated close."""
    return orjson.dumps(
        {
            "op": "disconnect",
            "code": int(reason.code),
            "reason": reason.reason,
            "reconnect": reason.reconnect,
        }
    )


def message_head(
    channel: str,
    data: Any,
    client: str | None,
    user: str | None,
    info: Any = None,
    tags: dict[str, str] | None = None,
) -> bytes:
    """A `message` frame without its closing brace, so offset and epoch can still be appended.

    ``client`` is None for publications of the server API, which carry no `from`; ``info``
    (the publisher's presence info) goes into `from` when there is one. ``tags`` travel
    as the frame's `tags` (after `from`), so history and recovery keep them.

    Raises:
        GatewayError: `bad_request` when ``data`` cannot be encoded (nested deeper than
            the JSON encoder allows).
    """
    frame: dict[str, Any] = {"op": "message", "channel": channel, "data": data}
    if client is not None:
        sender = {"client": client, "user": user}
        if info is not None:
            sender["info"] = info
        frame["from"] = sender
    if tags:
        frame["tags"] = tags
    try:
        return orjson.dumps(frame)[:-1]
    except orjson.JSONEncodeError as exc:
        raise GatewayError(
            ErrorCode.BAD_REQUEST,
            f"data cannot be encoded ({exc}): it may nest 253 levels, integers 64 bits",
        ) from None


def presence_head(op: str, channel: str, client: str, user: str | None, info: Any = None) -> bytes:
    """A `join` or `leave` event without its closing brace (completed by `close_message`)."""
    frame: dict[str, Any] = {"op": op, "channel": channel, "client": client, "user": user}
    if info is not None:
        frame["info"] = info
    return orjson.dumps(frame)[:-1]


def subscribed(
    command_id: CommandId, channel: str, position: StreamPosition | None, recovered: bool
) -> bytes:
    """The reply to `subscribe`; channels without history report offset 0 and epoch ""."""
    offset, epoch = (position.offset, position.epoch) if position else (0, "")
    return reply(
        "subscribed", command_id, channel=channel, offset=offset, epoch=epoch, recovered=recovered
    )


def history_reply(
    command_id: CommandId,
    channel: str,
    position: StreamPosition,
    frames: list[bytes],
    more: bool = False,
) -> bytes:
    """The reply to `history`, splicing the stored message frames in without re-encoding.

    ``more`` says that matching messages were left out to keep the reply within its size.
    """
    head = reply("history", command_id, channel=channel, offset=position.offset)[:-1]
    epoch = orjson.dumps(position.epoch)
    messages = b",".join(frames)
    more_field = b"true" if more else b"false"
    return b'%s,"epoch":%s,"messages":[%s],"more":%s}' % (head, epoch, messages, more_field)


def close_message(head: bytes, position: StreamPosition | None = None) -> bytes:
    """Complete a frame built by `message_head`, with its position in history if it has one."""
    if position is None:
        return head + b"}"
    return head + b',"offset":%d,"epoch":%s}' % (position.offset, orjson.dumps(position.epoch))
