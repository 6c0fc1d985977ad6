"""How a publication looks to Centrifugo's clients, built once per publication per encoding.

The hub hands every subscriber the same `Outgoing` (the pubsub.v1 frame). Its Centrifugo
forms hang beside it (`Outgoing.encoded`): the frame read once (`event_of`), then one push
per encoding (`PUSHES`: JSON text, Protobuf binary), and, for subscriptions with fossil
deltas, one `DeltaForm` per encoding that holds both the full push and the delta against
the channel's previous publication. The delta is computed once per publication and
encoding, never per subscriber; each subscriber takes the delta only when the previous
publication it received is the one the delta was made from (`DeltaForm.base`).
"""

from __future__ import annotations

import weakref

from gateway.core.frames import Outgoing
from gateway.wire.centrifugo import codec, fossil, pushes
from gateway.wire.centrifugo.codec import Encoding as Wire
from gateway.wire.centrifugo.pushes import PUB, Event


class _Read(Outgoing):
    """A frame read as a Centrifugo event (kept beside the frame; never sent)."""

    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        super().__init__(b"")
        self.event = event


class _Reading:
    def encode(self, message: Outgoing) -> Outgoing | None:
        event = pushes.read_frame(message.payload)
        return None if event is None else _Read(event)


READING = _Reading()


def event_of(message: Outgoing) -> Event | None:
    """The Centrifugo event of a frame, read once however many encodings need it."""
    read = message.encoded(READING)
    return read.event if isinstance(read, _Read) else None


class PushForm(Outgoing):
    """A push ready for the socket, with the event it shows (for the subscriber's checks:
    join/leave wanted, tags filter)."""

    __slots__ = ("event",)

    def __init__(self, payload: bytes, offset: int, wire: Wire, event: Event) -> None:
        super().__init__(payload, offset, binary=wire.binary)
        self.event = event


class PushEncoding:
    """The push of every publication, join and leave, in one encoding."""

    __slots__ = ("wire",)

    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def encode(self, message: Outgoing) -> Outgoing | None:
        event = event_of(message)
        if event is None:
            return None
        payload = codec.encode_message(pushes.push(event), self.wire)
        return PushForm(payload, message.offset, self.wire, event)


PUSHES = {wire: PushEncoding(wire) for wire in Wire}


class DeltaForm(PushForm):
    """A publication for delta subscriptions: the full push (itself), and the push whose
    ``data`` is a fossil delta against ``base`` when that is smaller."""

    __slots__ = ("base", "delta")

    def __init__(self, payload: bytes, offset: int, wire: Wire, event: Event) -> None:
        super().__init__(payload, offset, wire, event)
        self.base: Outgoing | None = None
        self.delta: PushForm | None = None


class DeltaChannel:
    """The previous publication of one channel, for the deltas of its subscribers here.

    Held by each delta subscription of the channel; gone with the last one.
    """

    __slots__ = ("__weakref__", "data", "last")

    def __init__(self) -> None:
        self.last: Outgoing | None = None
        self.data = b""


class DeltaEncoding:
    """Publications for fossil-delta subscriptions in one encoding.

    Payloads over ``max_bytes`` go in full, without a delta: a delta costs time in the
    size of both payloads, on the fan-out's path.
    """

    __slots__ = ("_channels", "max_bytes", "wire")

    def __init__(self, wire: Wire, max_bytes: int) -> None:
        self.wire = wire
        self.max_bytes = max_bytes
        self._channels: weakref.WeakValueDictionary[str, DeltaChannel] = (
            weakref.WeakValueDictionary()
        )

    def hold(self, channel: str) -> DeltaChannel:
        """The channel's state, for a delta subscription to keep while it lasts."""
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = DeltaChannel()
        return state

    def encode(self, message: Outgoing) -> Outgoing | None:
        event = event_of(message)
        if event is None:
            return None
        if event.kind != PUB:
            return message.encoded(PUSHES[self.wire])
        text = not self.wire.binary
        full = self._form(message, event, event.data, delta=False)
        state = self._channels.get(event.channel)
        if state is None:
            return full
        base, base_data = state.last, state.data
        state.last, state.data = message, event.data
        limit = self.max_bytes
        if base is None or len(event.data) > limit or len(base_data) > limit:
            return full
        delta = fossil.create(base_data, event.data, text=text)
        if len(delta) < len(event.data):
            full.base = base
            full.delta = self._form(message, event, delta, delta=True)
        return full

    def _form(self, message: Outgoing, event: Event, data: bytes, *, delta: bool) -> DeltaForm:
        wire = self.wire
        pub = pushes.publication(event, delta_data(data, wire))
        pub.delta = delta
        payload = codec.encode_message(pushes.push(event, pub), wire)
        return DeltaForm(payload, message.offset, wire, event)


def delta_data(data: bytes, wire: Wire) -> bytes:
    """A delta subscription's ``data``: in JSON a string holding the text (or the delta),
    as Centrifugo sends it; in Protobuf the bytes themselves."""
    return data if wire.binary else pushes.as_json_string(data)
