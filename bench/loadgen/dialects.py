"""How the load generator talks to each kind of server; everything else is shared.

A dialect reacts to the frames that are not publications (handshake, confirmations, acks,
pings) and builds the subscribe and publish frames. Publications themselves are counted
the same way for every server: by the ``"ts":`` stamps the publisher put in their data.
"""

from __future__ import annotations

import re
from typing import Protocol

STAMP = re.compile(rb'"ts":(\d+)')
"""The publisher's send time (``time.monotonic_ns()``) inside each publication's data."""


class Peer(Protocol):
    """What a dialect needs of a connection."""

    channel: str | None

    def write(self, frame: bytes) -> None:
        """Send one text frame."""
        ...

    def confirmed(self) -> None:
        """The connection is ready: subscribed, or (a publisher) connected."""
        ...

    def acknowledged(self, count: int) -> None:
        """The server accepted ``count`` publications."""
        ...

    def failed(self, count: int, frame: bytes) -> None:
        """The server answered ``count`` commands with an error."""
        ...


class Dialect(Protocol):
    """The per-server part of the client."""

    def opened(self, peer: Peer) -> None:
        """The WebSocket handshake completed."""
        ...

    def control(self, peer: Peer, frame: bytes) -> None:
        """A text frame that carries no publication."""
        ...

    def publish(self, channel: str, data: bytes, number: int) -> bytes:
        """The frame publishing ``data`` (JSON) to ``channel``; ``number`` counts from 1."""
        ...


class PubSubDialect:
    """Protocol v1 (the gateway) and the bare reference, which speaks the same subset."""

    def opened(self, peer: Peer) -> None:
        if peer.channel is None:
            peer.confirmed()
        else:
            peer.write(b'{"op":"subscribe","id":0,"channel":"%s"}' % peer.channel.encode())

    def control(self, peer: Peer, frame: bytes) -> None:
        if b'"op":"subscribed"' in frame:
            peer.confirmed()
        acks = frame.count(b'"op":"published"')
        if acks:
            peer.acknowledged(acks)
        errors = frame.count(b'"op":"error"')
        if errors:
            peer.failed(errors, frame)

    def publish(self, channel: str, data: bytes, number: int) -> bytes:
        return b'{"op":"publish","id":%d,"channel":"%s","data":%s}' % (
            number,
            channel.encode(),
            data,
        )


class SocketIODialect:
    """Socket.IO v5 over Engine.IO v4, WebSocket transport only, default namespace.

    Engine.IO packets: ``0`` open, ``2`` ping (answered ``3``), ``4`` message; inside a
    message, Socket.IO packets: ``0`` connect, ``2`` event, ``3`` ack, ``4`` connect error.
    The subscription is acknowledged with id 0; publications with ids from 1.
    """

    def opened(self, peer: Peer) -> None:
        """Nothing yet: the server speaks first (the Engine.IO open packet)."""

    def control(self, peer: Peer, frame: bytes) -> None:
        if frame.startswith(b"43"):
            if frame.startswith(b"430["):
                peer.confirmed()
            else:
                peer.acknowledged(1)
        elif frame == b"2":
            peer.write(b"3")
        elif frame.startswith(b"0{"):
            peer.write(b"40")
        elif frame.startswith(b"40"):
            if peer.channel is None:
                peer.confirmed()
            else:
                peer.write(b'420["subscribe","%s"]' % peer.channel.encode())
        elif frame.startswith((b"44", b"41", b"1")):
            peer.failed(1, frame)

    def publish(self, channel: str, data: bytes, number: int) -> bytes:
        return b'42%d["publish",{"channel":"%s","data":%s}]' % (number, channel.encode(), data)


DIALECTS: dict[str, Dialect] = {"pubsub": PubSubDialect(), "socketio": SocketIODialect()}
