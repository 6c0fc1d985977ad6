"""Frames of Centrifugo's client protocol, in its two encodings, to and from messages.

The in-memory form is the generated messages of ``protocol.proto`` (``Command`` from a
client, ``Reply`` to it). On the wire a WebSocket frame carries several of them:

- JSON (no subprotocol, text frames): one JSON object per line, joined by ``\\n``. Field
  names are the ``.proto`` names (``was_recovering``, ``presence_stats``), 64-bit integers
  are JSON numbers, default values are left out, a message field that is set is written
  even when empty (``{"id":5,"publish":{}}``), and every ``bytes`` field holds a raw JSON
  value, written as is, never base64. ``google.protobuf.json_format`` does none of the last
  three the same way, hence the small descriptor-driven mapping here.
- Protobuf (``centrifuge-protobuf`` subprotocol, binary frames): each message prefixed with
  its length as a varint.

The empty message is the ping in both directions: ``{}`` in JSON, the single byte ``0x00``
in Protobuf. Everything here is pure: no I/O, no state; bad input raises ``CodecError``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from gateway.wire.centrifugo.protocol_pb2 import Command, Reply

PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"

_MAX_VARINT_BYTES = 10
_MessageT = TypeVar("_MessageT", bound=Message)


class Encoding(StrEnum):
    """The two encodings of the protocol; the WebSocket subprotocol chooses one."""

    JSON = "json"
    PROTOBUF = "protobuf"

    @property
    def binary(self) -> bool:
        """Frames of this encoding are sent as binary WebSocket frames (else as text)."""
        return self is Encoding.PROTOBUF


class CodecError(ValueError):
    """A frame or message that is not valid in its encoding (Centrifugo: bad request)."""


def encoding_for(subprotocols: Iterable[str]) -> Encoding:
    """The encoding a WebSocket handshake asks for through the subprotocols it offers."""
    return Encoding.PROTOBUF if PROTOBUF_SUBPROTOCOL in subprotocols else Encoding.JSON


def is_ping(message: Message) -> bool:
    """An empty command or reply: the protocol's ping (and, with ``pong``, its answer)."""
    return not message.ListFields()


# Frames: several messages, each encoded once and ready to be joined.


def decode_commands(
    frame: bytes | str, encoding: Encoding, *, limit: int | None = None
) -> list[Command]:
    """The commands of one frame a client sent; more than ``limit`` of them is an error."""
    return _decode_frame(frame, encoding, Command, limit)


def decode_replies(
    frame: bytes | str, encoding: Encoding, *, limit: int | None = None
) -> list[Reply]:
    """The replies of one frame a server sent (for clients and tests)."""
    return _decode_frame(frame, encoding, Reply, limit)


def encode_message(message: Message, encoding: Encoding) -> bytes:
    """One message as it stands in a frame: a JSON line (without ``\\n``) or a delimited
    Protobuf message. Encode a push once and join it into the frames of many clients."""
    if encoding is Encoding.JSON:
        return message_to_json(message)
    body = message.SerializeToString()
    return _varint(len(body)) + body


def join_frame(encoded: Sequence[bytes], encoding: Encoding) -> bytes:
    """One frame from messages that ``encode_message`` encoded."""
    if encoding is Encoding.JSON:
        return b"\n".join(encoded)
    return b"".join(encoded)


def encode_frame(messages: Iterable[Message], encoding: Encoding) -> bytes:
    """One frame holding these messages, in order."""
    return join_frame([encode_message(message, encoding) for message in messages], encoding)


def _decode_frame(
    frame: bytes | str, encoding: Encoding, cls: type[_MessageT], limit: int | None
) -> list[_MessageT]:
    if encoding is Encoding.JSON:
        data = frame.encode() if isinstance(frame, str) else frame
        lines = [line for line in data.split(b"\n") if line.strip()]
        _check_count(len(lines), limit)
        return [message_from_json(line, cls) for line in lines]
    if isinstance(frame, str):
        raise CodecError("a Protobuf frame must be binary")
    messages: list[_MessageT] = []
    position = 0
    while position < len(frame):
        length, position = _read_varint(frame, position)
        end = position + length
        if end > len(frame):
            raise CodecError(
                f"truncated frame: a message of {length} bytes, {len(frame) - position} left"
            )
        _check_count(len(messages) + 1, limit)
        message = cls()
        try:
            message.ParseFromString(frame[position:end])
        except DecodeError as error:
            raise CodecError(f"invalid Protobuf message: {error}") from None
        messages.append(message)
        position = end
    return messages


def _check_count(count: int, limit: int | None) -> None:
    if limit is not None and count > limit:
        raise CodecError(f"more than {limit} messages in one frame")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(frame: bytes, position: int) -> tuple[int, int]:
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        if position + index >= len(frame):
            raise CodecError("truncated frame: the length prefix is cut off")
        byte = frame[position + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, position + index + 1
    raise CodecError("invalid length prefix: longer than 10 bytes")


# JSON <-> message, with Centrifugo's conventions.

_INT_RANGES = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
}


def message_to_json(message: Message) -> bytes:
    """The message as one compact JSON object, as Centrifugo writes it."""
    return orjson.dumps(_to_json_value(message))


def message_from_json(line: bytes | str, cls: type[_MessageT]) -> _MessageT:
    """A message of type ``cls`` from one JSON object. Unknown fields are ignored, as
    Centrifugo ignores them; a value of the wrong type is a ``CodecError``."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise CodecError(f"invalid JSON: {error}") from None
    message = cls()
    _fill(message, value, cls.__name__)
    return message


def _to_json_value(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if _is_map(field):
            if _map_value(field).type == FieldDescriptor.TYPE_MESSAGE:
                out[field.name] = {key: _to_json_value(item) for key, item in value.items()}
            else:
                out[field.name] = dict(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                out[field.name] = [_to_json_value(item) for item in value]
            else:
                out[field.name] = _to_json_value(value)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            out[field.name] = _raw_json(value)
        elif field.is_repeated:
            out[field.name] = list(value)
        else:
            out[field.name] = value
    return out


def _raw_json(value: bytes) -> orjson.Fragment:
    """A raw JSON payload, passed through. A newline can only be whitespace between tokens
    of valid JSON, and it would split the frame, so it is dropped (as Centrifugo does)."""
    return orjson.Fragment(value.replace(b"\n", b"") if b"\n" in value else value)


def _fill(message: Message, value: object, path: str) -> None:
    if not isinstance(value, dict):
        raise CodecError(f"{path}: expected an object")
    fields = _fields_by_name(message.DESCRIPTOR)
    for name, item in value.items():
        field = fields.get(name)
        if field is None or item is None:
            continue
        where = f"{path}.{name}"
        if _is_map(field):
            _fill_map(getattr(message, name), field, item, where)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                if not isinstance(item, list):
                    raise CodecError(f"{where}: expected an array")
                container = getattr(message, name)
                for index, element in enumerate(item):
                    _fill(container.add(), element, f"{where}[{index}]")
            else:
                child = getattr(message, name)
                child.SetInParent()
                _fill(child, item, where)
        elif field.is_repeated:
            if not isinstance(item, list):
                raise CodecError(f"{where}: expected an array")
            getattr(message, name).extend(
                _scalar(field, element, f"{where}[{index}]") for index, element in enumerate(item)
            )
        else:
            setattr(message, name, _scalar(field, item, where))


def _fill_map(container: Any, field: FieldDescriptor, value: object, path: str) -> None:
    if not isinstance(value, dict):
        raise CodecError(f"{path}: expected an object")
    value_field = _map_value(field)
    for key, item in value.items():
        where = f"{path}.{key}"
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            _fill(container[key], item, where)
        else:
            container[key] = _scalar(value_field, item, where)


def _scalar(field: FieldDescriptor, value: object, path: str) -> object:
    kind = field.type
    if kind == FieldDescriptor.TYPE_BYTES:
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError as error:
            raise CodecError(f"{path}: {error}") from None
    if kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise CodecError(f"{path}: expected a string")
        return value
    if kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise CodecError(f"{path}: expected true or false")
        return value
    bounds = _INT_RANGES.get(kind)
    if bounds is None:
        raise CodecError(f"{path}: fields of this type are not supported")
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodecError(f"{path}: expected an integer")
    low, high = bounds
    if not low <= value <= high:
        raise CodecError(f"{path}: {value} is out of range")
    return value


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and entry.GetOptions().map_entry


def _map_value(field: FieldDescriptor) -> FieldDescriptor:
    entry = field.message_type
    assert entry is not None
    return entry.fields_by_name["value"]


@functools.cache
def _fields_by_name(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    return dict(descriptor.fields_by_name)
