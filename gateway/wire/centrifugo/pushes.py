"""The gateway's frames as Centrifugo's messages: a stored or live `message` frame (protocol
v1, `gateway.wire.protocol.message_head`) as a ``Publication``, a `join` or `leave` frame as
the push of the same name. Pure: bytes in, messages out.

A publication's ``data`` is the raw JSON text of the frame's `data`, byte for byte as it was
published (a Protobuf client that published ``{"a": 1}`` with a space gets the same bytes
back), cut out of the frame rather than decoded and encoded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.wire.centrifugo.protocol_pb2 import ClientInfo, Publication, Reply

PUB, JOIN, LEAVE = "pub", "join", "leave"


@dataclass(frozen=True, slots=True)
class Event:
    """One frame of ours read for Centrifugo: its kind (`PUB`, `JOIN`, `LEAVE`), channel,
    the publication's raw ``data`` (empty for join and leave), who it is from, its offset
    and tags."""

    kind: str
    channel: str
    data: bytes
    info: ClientInfo | None
    offset: int
    tags: dict[str, str]


def read_frame(payload: bytes) -> Event | None:
    """The event a frame of ours carries; None for a frame Centrifugo has no push for."""
    try:
        frame: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(frame, dict):
        return None
    op, channel = frame.get("op"), frame.get("channel")
    if not isinstance(channel, str):
        return None
    if op == "message":
        sender = frame.get("from")
        info = _client_info(sender) if isinstance(sender, dict) else None
        tags = frame.get("tags")
        offset = frame.get("offset")
        return Event(
            PUB,
            channel,
            _data_text(payload, frame, channel),
            info,
            offset if isinstance(offset, int) else 0,
            tags if isinstance(tags, dict) else {},
        )
    if op in (JOIN, LEAVE):
        return Event(op, channel, b"", _client_info(frame), 0, {})
    return None


def publication(event: Event, data: bytes | None = None) -> Publication:
    """The ``Publication`` of a `PUB` event (``data`` in place of the event's, for deltas)."""
    pub = Publication(data=event.data if data is None else data, offset=event.offset)
    if event.info is not None:
        pub.info.CopyFrom(event.info)
    if event.tags:
        pub.tags.update(event.tags)
    return pub


def push(event: Event, pub: Publication | None = None) -> Reply:
    """The push of an event: ``pub`` (default: the event's own publication), join or leave."""
    reply = Reply()
    message = reply.push
    message.channel = event.channel
    if event.kind == PUB:
        message.pub.CopyFrom(pub if pub is not None else publication(event))
    elif event.kind == JOIN:
        message.join.info.CopyFrom(event.info or ClientInfo())
    else:
        message.leave.info.CopyFrom(event.info or ClientInfo())
    return reply


def as_json_string(data: bytes) -> bytes:
    """``data`` (JSON text, or a fossil delta of it) as the JSON string a delta
    subscription's ``data`` is in the JSON encoding."""
    return orjson.dumps(data.decode("utf-8", errors="replace"))


def _client_info(fields: dict[str, Any]) -> ClientInfo:
    user, client, info = fields.get("user"), fields.get("client"), fields.get("info")
    result = ClientInfo(
        user=user if isinstance(user, str) else "",
        client=client if isinstance(client, str) else "",
    )
    if info is not None:
        result.conn_info = orjson.dumps(info)
    return result


def _data_text(payload: bytes, frame: dict[str, Any], channel: str) -> bytes:
    """The raw text of the frame's `data`: what lies between the head `message_head` writes
    before it and the fields after it, which are re-encoded to find where it ends."""
    prefix = b'{"op":"message","channel":%s,"data":' % orjson.dumps(channel)
    after: list[bytes] = []
    seen_data = False
    for key, value in frame.items():
        if seen_data:
            after.append(b",%s:%s" % (orjson.dumps(key), orjson.dumps(value)))
        elif key == "data":
            seen_data = True
    suffix = b"".join(after) + b"}"
    end = len(payload) - len(suffix)
    if payload.startswith(prefix) and payload.endswith(suffix) and end > len(prefix):
        return payload[len(prefix) : end]
    return orjson.dumps(frame.get("data"))
