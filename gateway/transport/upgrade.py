"""The WebSocket opening handshake of a request uvicorn's HTTP parser already read, answered
without building it again for the ``websockets`` library: the common case of every
connection, in a fraction of the CPU.

`accept_upgrade` decides only what ``websockets`` itself would accept unchanged (RFC 6455
§4.2.1: one key of 16 bytes, version 13, an upgrade to ``websocket``, at most one
``Origin``, well-formed subprotocols, no extension to negotiate); anything else (a malformed
or unusual request, a compression offer while permessage-deflate is on) it leaves to
``websockets``, so every refusal stays that library's own. `switching_protocols` is the
101 response ``websockets`` and uvicorn would send, header for header.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS
from websockets.utils import accept_key

TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
"""An HTTP header name (RFC 9110 token), as websockets' own request parser accepts it."""
FIELD_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
"""An HTTP header value, as websockets' own request parser accepts it."""
_TOKEN_LIST = re.compile(rb"%s(?:[ \t]*,[ \t]*%s)*" % (TOKEN.pattern, TOKEN.pattern))
"""A comma-separated list of tokens, with no empty element: a subset of what websockets'
``parse_connection`` and ``parse_subprotocol`` accept, with the same result."""


def fields_acceptable(target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when websockets' HTTP parser would read this request line and these headers as
    they are: not over-long, not too many, the names tokens, the values printable."""
    if len(target) + 14 > MAX_LINE_LENGTH or not target.isascii():
        return False
    for count, (name, value) in enumerate(headers, 1):
        if count > MAX_NUM_HEADERS or len(name) + len(value) + 2 > MAX_LINE_LENGTH:
            return False
        if not TOKEN.fullmatch(name) or not FIELD_VALUE.fullmatch(value):
            return False
    return True


def accept_upgrade(
    method: str,
    target: bytes,
    version: str,
    headers: Iterable[tuple[bytes, bytes]],
    *,
    deflate: bool,
) -> str | None:
    """The ``Sec-WebSocket-Accept`` value for a handshake websockets would accept as it
    stands, with no extension negotiated; None for any other request (websockets then
    judges it). ``headers`` are uvicorn's (names lower-cased); ``deflate`` says whether
    permessage-deflate is offered to clients (then a client's offer needs negotiating)."""
    if method != "GET" or version != "1.1" or not fields_acceptable(target, headers):
        return None
    key = b""
    keys = versions = upgrades = origins = 0
    upgrade = connection = False
    for name, value in headers:
        name = name.lower()
        if name == b"connection":
            if _TOKEN_LIST.fullmatch(value) is None:
                return None
            connection = connection or any(
                option.strip().lower() == b"upgrade" for option in value.split(b",")
            )
        elif name == b"upgrade":
            upgrades += 1
            upgrade = value.lower() == b"websocket"
        elif name == b"sec-websocket-key":
            keys += 1
            key = value
        elif name == b"sec-websocket-version":
            versions += 1
            if value != b"13":
                return None
        elif name == b"origin":
            origins += 1
        elif name == b"sec-websocket-protocol":
            if _TOKEN_LIST.fullmatch(value) is None:
                return None
        elif name == b"sec-websocket-extensions":
            if deflate:
                return None
        elif name in (b"transfer-encoding", b"content-length"):
            return None
    if not (connection and upgrade and upgrades == 1 and keys == 1 and versions == 1):
        return None
    if origins > 1:
        return None
    try:
        raw_key = base64.b64decode(key, validate=True)
    except binascii.Error:
        return None
    if len(raw_key) != 16:
        return None
    return accept_key(key.decode("ascii"))


def offered_subprotocols(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The subprotocols a handshake offers, in order (the ASGI scope's ``subprotocols``)."""
    offered: list[str] = []
    for name, value in headers:
        if name.lower() == b"sec-websocket-protocol":
            offered.extend(token.strip() for token in value.decode("ascii").split(","))
    return offered


def switching_protocols(
    accept: str, headers: Iterable[tuple[bytes, bytes]], subprotocol: str | None
) -> bytes:
    """The 101 response: what websockets' ``accept`` builds (its ``Date`` left out, as
    uvicorn removes it), then ``headers`` (the server's defaults and the application's,
    names lower-cased, as uvicorn adds them), then the chosen subprotocol."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: ",
        accept.encode("ascii"),
        b"\r\n",
    ]
    for name, value in headers:
        lines += (name.lower(), b": ", value, b"\r\n")
    if subprotocol:
        lines += (b"Sec-WebSocket-Protocol: ", subprotocol.encode(), b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)
