"""The handshake taken whole (`accept_upgrade`) is one websockets would accept as it stands,
with the same ``Sec-WebSocket-Accept``, and the 101 response is the one websockets and
uvicorn would send; anything else is left to websockets."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request
from websockets.server import ServerProtocol

from gateway.transport.upgrade import accept_upgrade, offered_subprotocols, switching_protocols

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = [
    (b"host", b"127.0.0.1:8000"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-protocol", b"pubsub.v1, other"),
    (b"origin", b"http://example.com"),
]


def websockets_verdict(headers: list[tuple[bytes, bytes]], deflate: bool) -> Any:
    """What websockets' server makes of the handshake: its accept key and negotiated
    extensions header, or the exception that refuses it."""
    extensions = [ServerPerMessageDeflateFactory()] if deflate else []
    protocol = ServerProtocol(extensions=extensions)
    parsed = Headers()
    for name, value in headers:
        parsed[name.decode("ascii")] = value.decode("iso-8859-1")
    try:
        accept, extensions_header, _ = protocol.process_request(Request("/ws", parsed))
    except Exception as exc:
        return type(exc)
    return accept, extensions_header


def test_a_plain_handshake_is_taken_with_websockets_accept_key() -> None:
    accept = accept_upgrade("GET", b"/ws", "1.1", HANDSHAKE, deflate=False)
    assert accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3's example
    assert websockets_verdict(HANDSHAKE, False) == (accept, None)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([h for h in HANDSHAKE if h[0] != b"sec-websocket-key"], "no key"),
        ([*HANDSHAKE, (b"sec-websocket-key", KEY)], "two keys"),
        (
            [(n, b"c2hvcnQ=" if n == b"sec-websocket-key" else v) for n, v in HANDSHAKE],
            "a key of 5 bytes",
        ),
        ([(n, b"8" if n == b"sec-websocket-version" else v) for n, v in HANDSHAKE], "version 8"),
        ([*HANDSHAKE, (b"sec-websocket-version", b"13")], "two versions"),
        ([(n, b"h2c" if n == b"upgrade" else v) for n, v in HANDSHAKE], "another upgrade"),
        ([*HANDSHAKE, (b"upgrade", b"websocket")], "two upgrades"),
        ([(n, b"keep-alive" if n == b"connection" else v) for n, v in HANDSHAKE], "no upgrade"),
        ([*HANDSHAKE, (b"origin", b"http://other.example")], "two origins"),
        ([*HANDSHAKE, (b"sec-websocket-protocol", b"a b")], "a malformed subprotocol"),
        ([*HANDSHAKE, (b"content-length", b"0")], "a body"),
    ],
)
def test_an_unusual_handshake_is_left_to_websockets(
    headers: list[tuple[bytes, bytes]], why: str
) -> None:
    assert accept_upgrade("GET", b"/ws", "1.1", headers, deflate=False) is None, why


def test_a_compression_offer_is_left_to_websockets_only_when_compression_is_on() -> None:
    offer = [*HANDSHAKE, (b"sec-websocket-extensions", b"permessage-deflate")]
    assert accept_upgrade("GET", b"/ws", "1.1", offer, deflate=True) is None
    assert websockets_verdict(offer, True)[1] is not None
    accept = accept_upgrade("GET", b"/ws", "1.1", offer, deflate=False)
    assert accept is not None
    assert websockets_verdict(offer, False) == (accept, None)


def test_the_request_line_and_method_are_checked() -> None:
    assert accept_upgrade("POST", b"/ws", "1.1", HANDSHAKE, deflate=False) is None
    assert accept_upgrade("GET", b"/ws", "1.0", HANDSHAKE, deflate=False) is None
    assert accept_upgrade("GET", b"/w\xc3\xa9", "1.1", HANDSHAKE, deflate=False) is None
    bad_name = [*HANDSHAKE, (b"bad name", b"1")]
    assert accept_upgrade("GET", b"/ws", "1.1", bad_name, deflate=False) is None


TOKENS = st.sampled_from(
    [b"websocket", b"WebSocket", b"upgrade", b"Upgrade", b"keep-alive", b"h2c", b"", b"a b"]
)
VALUES = st.one_of(
    TOKENS,
    st.lists(TOKENS, min_size=1, max_size=3).map(b", ".join),
    st.binary(max_size=12),
    st.sampled_from([KEY, base64.b64encode(b"x" * 15), b"13", b"8", b"not base64!"]),
)
NAMES = st.sampled_from(
    [
        b"connection",
        b"upgrade",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"origin",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"x-other",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(NAMES, VALUES), max_size=8),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=len(HANDSHAKE) - 1), max_size=3),
)
def test_every_handshake_taken_is_one_websockets_accepts_alike(
    extra: list[tuple[bytes, bytes]], deflate: bool, dropped: list[int]
) -> None:
    headers = [h for i, h in enumerate(HANDSHAKE) if i not in dropped] + extra
    accept = accept_upgrade("GET", b"/ws", "1.1", headers, deflate=deflate)
    if accept is not None:
        assert websockets_verdict(headers, deflate) == (accept, None)


def test_the_101_response_is_the_one_websockets_and_uvicorn_send() -> None:
    """uvicorn takes websockets' response, drops its Date, adds its default headers and the
    application's (names lower-cased) and the subprotocol; websockets serializes it."""
    accept = accept_upgrade("GET", b"/ws", "1.1", HANDSHAKE, deflate=False)
    assert accept is not None
    defaults = [(b"date", b"Wed, 02 Dec 2026 08:00:00 GMT"), (b"server", b"uvicorn")]
    app = [(b"X-Trace", b"1")]
    ours = switching_protocols(accept, [*defaults, *app], "pubsub.v1")
    protocol = ServerProtocol()
    parsed = Headers()
    for name, value in HANDSHAKE:
        parsed[name.decode()] = value.decode()
    response = protocol.accept(Request("/ws", parsed))
    del response.headers["Date"]
    response.headers.update(
        [(n.decode().lower(), v.decode()) for n, v in [*defaults, *app]]
        + [("Sec-WebSocket-Protocol", "pubsub.v1")]
    )
    assert ours == response.serialize()


def test_the_offered_subprotocols_are_uvicorns_list() -> None:
    headers = [*HANDSHAKE, (b"sec-websocket-protocol", b"third")]
    assert offered_subprotocols(headers) == ["pubsub.v1", "other", "third"]
