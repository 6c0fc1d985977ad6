"""The ``GET /sse`` stream's framing, and its event ids. Pure: values in, values out.

Every event of a stream carries the JSON text of one protocol frame on a single ``data:``
line (JSON has no raw newline). Events after the first subscription carry an ``id:`` that
holds the stream's position in every channel of its request, so that the id a browser's
``EventSource`` sends back as ``Last-Event-ID`` when it reconnects resumes each channel with
recovery, on whichever replica it lands.

An id, version 1: ``1`` then, for each channel of the request in its order, ``.`` and that
channel's position: empty when there is none (a channel without history, or one not
subscribed yet), else ``<offset>:<epoch>``, the offset in decimal. An epoch of lowercase
hexadecimal digits (what the gateway makes: 12 of them) is written as its bytes in URL-safe
base64 without padding (8 characters); any other as ``~`` and its UTF-8 in URL-safe base64.
So ``1.100:NItsZ1p5.`` is offset 100 of epoch ``348b6c675a79`` in the first channel, and
nothing in the second. About 16 characters a channel: 128 channels fit in 2.2 KiB, well
within the 8 KiB that proxies allow a header line by default.
"""

from __future__ import annotations

import base64
import binascii
import re

from gateway.wire.protocol import MAX_OFFSET, StreamPosition

ID_VERSION = "1"
MAX_ID_LENGTH = 16384
"""Longer ids are ignored without being parsed."""

_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


def encode_entry(position: StreamPosition | None) -> str:
    """One channel's part of an event id."""
    if position is None:
        return ""
    return f"{position.offset}:{encode_epoch(position.epoch)}"


def event_id(entries: list[str]) -> str:
    """An event id from each channel's `encode_entry`, in the request's channel order."""
    return ID_VERSION + "." + ".".join(entries)


def encode_positions(positions: list[StreamPosition | None]) -> str:
    """The event id of a stream standing at these positions (one per channel, in order)."""
    return event_id([encode_entry(position) for position in positions])


def decode_positions(text: str, channels: int) -> list[StreamPosition | None] | None:
    """The positions an event id holds for a request of ``channels`` channels; None when
    it is not an id of this version and shape (then no channel can be recovered)."""
    if len(text) > MAX_ID_LENGTH:
        return None
    version, _, rest = text.partition(".")
    if version != ID_VERSION or not _:
        return None
    parts = rest.split(".")
    if len(parts) != channels:
        return None
    positions: list[StreamPosition | None] = []
    for part in parts:
        if not part:
            positions.append(None)
            continue
        offset_text, colon, epoch_text = part.partition(":")
        if not colon or not _DECIMAL.fullmatch(offset_text):
            return None
        offset = int(offset_text)
        try:
            epoch = _decode_epoch(epoch_text)
        except ValueError:
            return None
        if offset > MAX_OFFSET:
            return None
        positions.append(StreamPosition(offset, epoch))
    return positions


def event(payload: bytes, event_id_line: bytes = b"") -> bytes:
    """An SSE event carrying one frame; ``event_id_line`` is ``b"id: ...\\n"`` or empty."""
    return b"%sdata: %s\n\n" % (event_id_line, payload)


def id_line(identifier: str) -> bytes:
    """The ``id:`` field line of an event."""
    return b"id: " + identifier.encode() + b"\n"


def encode_epoch(epoch: str) -> str:
    """An epoch as an event id writes it."""
    if _HEX.fullmatch(epoch):
        return _b64(bytes.fromhex(epoch))
    return "~" + _b64(epoch.encode())


def _decode_epoch(text: str) -> str:
    """Raises:
    ValueError: not an epoch as `_encode_epoch` writes one.
    """
    raw = text[1:] if text.startswith("~") else text
    if not raw and not text.startswith("~"):
        raise ValueError("an epoch is required")
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if _b64(data) != raw:
        raise ValueError("not the canonical base64")
    if text.startswith("~"):
        return data.decode()
    return data.hex()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
