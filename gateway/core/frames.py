"""What leaves for clients: RFC 6455 text frames, and the message built once per publication."""

from __future__ import annotations

import struct
from typing import Protocol


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final WebSocket text frame (RFC 6455 §5.2) carrying ``payload``."""
    return _frame(0x81, payload)


def binary_frame(payload: bytes) -> bytes:
    """A complete, unmasked, final WebSocket binary frame carrying ``payload``."""
    return _frame(0x82, payload)


def _frame(first: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", first, 126, length) + payload
    return struct.pack("!BBQ", first, 127, length) + payload


class Encoding(Protocol):
    """How one client dialect shows a publication (the plain-text endpoint, Centrifugo...):
    computed once per publication per dialect, by `Outgoing.encoded`."""

    def encode(self, message: Outgoing) -> Outgoing | None:
        """The message in this dialect; None when the dialect shows nothing of it."""
        ...


class Outgoing:
    """One frame on its way to clients: its payload and the WebSocket frame around it (a
    text frame for JSON, or a binary one).

    Built once per publication per replica and shared by every local subscriber; its forms
    in other dialects are built on first use and kept beside it (`encoded`).
    """

    __slots__ = ("_encoded", "frame", "offset", "payload", "size")

    def __init__(self, payload: bytes, offset: int = 0, *, binary: bool = False) -> None:
        self.payload = payload
        self.size = len(payload)
        """The payload's bytes, counted once for every queue it may wait in."""
        self.frame = binary_frame(payload) if binary else text_frame(payload)
        self.offset = offset
        """The message's offset on a channel with history; 0 otherwise."""
        self._encoded: dict[Encoding, Outgoing | None] | None = None

    def encoded(self, encoding: Encoding) -> Outgoing | None:
        """This message as ``encoding`` shows it, built once however many clients get it."""
        forms = self._encoded
        if forms is None:
            forms = self._encoded = {}
        elif encoding in forms:
            return forms[encoding]
        form = forms[encoding] = encoding.encode(self)
        return form
