"""The handshake request taken from uvicorn's parser is the one websockets' parser makes of
the same bytes, and anything unusual is left to websockets' parser."""

from __future__ import annotations

import pytest
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS, Request
from websockets.streams import StreamReader

from gateway.transport.websocket import handshake_request

HANDSHAKE = [
    (b"host", b"127.0.0.1:8000"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-protocol", b"pubsub.v1, other"),
    (b"origin", b"http://example.com"),
    (b"user-agent", b"caf\xe9 client\t1.0"),
]


def parsed_by_websockets(target: bytes, headers: list[tuple[bytes, bytes]]) -> Request:
    raw = b"GET " + target + b" HTTP/1.1\r\n"
    raw += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    reader = StreamReader()
    reader.feed_data(raw)
    parser = Request.parse(reader.read_line)
    try:
        next(parser)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("websockets wanted more bytes")


@pytest.mark.parametrize(
    "target", [b"/ws", b"/ws?token=a.b.c&name=x%20y", b"/connection/websocket"]
)
def test_the_request_is_the_one_websockets_parses(target: bytes) -> None:
    ours = handshake_request("GET", target, "1.1", HANDSHAKE)
    theirs = parsed_by_websockets(target, HANDSHAKE)
    assert ours is not None
    assert (ours.method, ours.path, ours.protocol) == (theirs.method, theirs.path, theirs.protocol)
    assert list(ours.headers.raw_items()) == list(theirs.headers.raw_items())
    assert ours.headers["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.mark.parametrize(
    ("method", "target", "version", "headers", "why"),
    [
        ("POST", b"/ws", "1.1", HANDSHAKE, "another method"),
        ("GET", b"/ws", "1.0", HANDSHAKE, "another version"),
        ("GET", b"/" + b"x" * MAX_LINE_LENGTH, "1.1", HANDSHAKE, "request line too long"),
        ("GET", b"/w\xc3\xa9", "1.1", HANDSHAKE, "a target that is not ASCII"),
        (
            "GET",
            b"/ws",
            "1.1",
            [*HANDSHAKE, (b"x-long", b"v" * MAX_LINE_LENGTH)],
            "header line too long",
        ),
        (
            "GET",
            b"/ws",
            "1.1",
            HANDSHAKE + [(b"x-n", b"1")] * MAX_NUM_HEADERS,
            "too many headers",
        ),
        ("GET", b"/ws", "1.1", [*HANDSHAKE, (b"bad name", b"1")], "a name that is no token"),
        ("GET", b"/ws", "1.1", [*HANDSHAKE, (b"x-bad", b"a\x00b")], "a control character"),
        ("GET", b"/ws", "1.1", [*HANDSHAKE, (b"content-length", b"0")], "a body header"),
        ("GET", b"/ws", "1.1", [*HANDSHAKE, (b"transfer-encoding", b"chunked")], "chunked"),
    ],
)
def test_an_unusual_request_is_left_to_websockets(
    method: str, target: bytes, version: str, headers: list[tuple[bytes, bytes]], why: str
) -> None:
    assert handshake_request(method, target, version, headers) is None, why
