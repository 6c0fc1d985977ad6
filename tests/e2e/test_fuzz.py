"""Random frames, random JSON and random command fields thrown at a live replica.

The replica must never crash, must answer everything with documented frames (an `error`
carries a documented code, never `internal`) or close with a documented code, and a
well-behaved client on the same replica must still receive every message. NDJSON
batches that mix valid and invalid commands (some with `data` nested too deeply to
encode) get one reply per command, in command order, unless a documented close ends them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gateway.wire.errors import ErrorCode
from gateway.wire.protocol import KNOWN_OPS
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer
from tests.support.tokens import SECRET, connection_token, subscription_token

EXAMPLES = 200
STEADY_CHANNEL = "steady:stream"

SERVER_OPS = {
    "welcome",
    "error",
    "pong",
    "subscribed",
    "unsubscribed",
    "published",
    "message",
    "presence",
    "history",
    "refreshed",
    "disconnect",
    "join",
    "leave",
}
ERROR_CODES = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}
CLOSE_CODES = {1000, 1001, 1009, 1011, 1012, 4001, 4003, 4008, 4029}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
channel_like = st.sampled_from(
    ["chat", "chat:room", "$private", "$inbox:fuzzer", STEADY_CHANNEL, "", "x" * 256, "bad name"]
) | st.text(max_size=12)
token_like = st.sampled_from(
    [
        connection_token("fuzzer", ttl=3600),
        connection_token("someone-else", ttl=3600),
        connection_token("fuzzer", ttl=-5),
        subscription_token("fuzzer", "$private", ttl=3600),
        "not.a.jwt",
    ]
) | st.text(max_size=30)
commands = st.fixed_dictionaries(
    {"op": st.sampled_from(sorted(KNOWN_OPS)) | st.text(max_size=10) | json_values},
    optional={
        "id": json_values | st.text(min_size=60, max_size=70),
        "channel": channel_like | json_values,
        "data": json_values,
        "token": token_like | json_values,
        "since": json_values
        | st.fixed_dictionaries(
            {"offset": st.integers(-5, 2**40) | json_values, "epoch": st.text(max_size=8)}
        ),
        "limit": st.integers(-5, 10**6) | json_values,
    },
)

plausible_commands = st.builds(
    lambda op, command_id, channel, data, token: {
        "op": op,
        "id": command_id,
        "channel": channel,
        "data": data,
        "token": token,
    },
    st.sampled_from(sorted(KNOWN_OPS)),
    st.integers(0, 1000),
    channel_like,
    json_values | st.text(min_size=5000, max_size=5000),
    token_like,
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


DEEP = "deep-data-of-depth-"
"""A `data` value written out as that many nested arrays (encoders refuse such depths)."""


def _with_deep_data(text: str) -> str:
    while (start := text.find(f'"{DEEP}')) != -1:
        end = text.index('"', start + 1)
        depth = int(text[start + 1 + len(DEEP) : end])
        text = text[:start] + "[" * depth + "]" * depth + text[end + 1 :]
    return text


deep_publishes = st.builds(
    lambda channel, depth: {"op": "publish", "channel": channel, "data": f"{DEEP}{depth}"},
    channel_like,
    st.integers(250, 700),
)


@dataclass
class Batch:
    """Commands to send as one NDJSON frame, each given its own integer id."""

    commands: list[dict[str, Any]]

    def frame(self, first_id: int) -> tuple[str, list[int]]:
        ids = list(range(first_id, first_id + len(self.commands)))
        lines = [_json({**command, "id": n}) for command, n in zip(self.commands, ids, strict=True)]
        return _with_deep_data("\n".join(lines)), ids


DEEP_PUBLISH = {"op": "publish", "channel": "chat", "data": f"{DEEP}254"}

checked_batches = st.lists(
    commands | plausible_commands | deep_publishes, min_size=2, max_size=8
).map(Batch)


frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=64),
    json_values.map(_json),
    commands.map(_json),
    plausible_commands.map(_json),
    st.lists(commands | plausible_commands, min_size=2, max_size=5).map(
        lambda batch: "\n".join(map(_json, batch))
    ),
    checked_batches,
)


@dataclass
class Observed:
    error_codes: set[str] = field(default_factory=set)
    close_codes: set[int] = field(default_factory=set)
    ops: set[str] = field(default_factory=set)


def check_frame(raw: str | bytes, observed: Observed) -> list[dict[str, Any]]:
    """Every line of a server frame is a documented frame; returns them."""
    assert isinstance(raw, str), "the server sends text frames only"
    parsed = []
    for line in raw.split("\n"):
        frame = orjson.loads(line)
        assert isinstance(frame, dict) and frame.get("op") in SERVER_OPS, frame
        observed.ops.add(frame["op"])
        if frame["op"] == "error":
            assert frame["code"] in ERROR_CODES, frame
            assert isinstance(frame["message"], str) and frame["message"]
            observed.error_codes.add(frame["code"])
        parsed.append(frame)
    return parsed


class Fuzzer:
    """The misbehaving client; reconnects whenever the server closes it."""

    def __init__(self, url: str, observed: Observed, stack: ExitStack) -> None:
        self.url = url
        self.stack = stack
        self.observed = observed
        self.sent = 0
        self.websocket = self._connect()

    def _connect(self) -> ClientConnection:
        url = f"{self.url}?token={connection_token('fuzzer', ttl=3600)}"
        websocket = self.stack.enter_context(connect(url))
        welcome = check_frame(websocket.recv(timeout=5), self.observed)
        assert welcome[0]["op"] == "welcome"
        return websocket

    def exchange(self, frame: str | bytes | Batch) -> None:
        """Send ``frame``, then a ping, and check everything up to the pong (or a close).

        A `Batch` must be answered command by command, in order: every command before
        the pong, or those before a documented close.
        """
        self.sent += 1
        marker = f"sync-{self.sent}"
        expected: list[int] | None = None
        if isinstance(frame, Batch):
            frame, expected = frame.frame(first_id=self.sent * 100)
        answered: list[Any] = []
        try:
            self.websocket.send(frame)
            self.websocket.send(_json({"op": "ping", "id": marker}))
            while True:
                replies = check_frame(self.websocket.recv(timeout=5), self.observed)
                for reply in replies:
                    if reply.get("id") == marker and reply["op"] == "pong":
                        assert expected is None or answered == expected, (answered, expected)
                        return
                    if "id" in reply and reply["id"] != marker:
                        answered.append(reply["id"])
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server closed without a close frame"
            assert closed.rcvd.code in CLOSE_CODES, closed.rcvd
            if expected is not None:
                assert answered == expected[: len(answered)], (answered, expected)
            self.observed.close_codes.add(closed.rcvd.code)
            self.websocket = self._connect()


@pytest.fixture(scope="module")
def replica(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        "fuzz",
        redis_url=redis_server.url,
        redis_prefix="fuzz",
        jwt_secret=SECRET,
        rate=0,
        max_message_bytes=4096,
    )
    process.start()
    yield process
    process.kill()


def test_random_input_never_hurts_the_replica_or_its_neighbours(replica: GatewayProcess) -> None:
    observed = Observed()
    stack = ExitStack()
    token = connection_token("steady", ttl=3600)
    subscriber = stack.enter_context(connect(f"{replica.ws_url}?token={token}", max_queue=None))
    publisher = stack.enter_context(connect(f"{replica.ws_url}?token={token}"))
    for client in (subscriber, publisher):
        check_frame(client.recv(timeout=5), observed)
    subscriber.send(_json({"op": "subscribe", "id": 1, "channel": STEADY_CHANNEL}))
    assert check_frame(subscriber.recv(timeout=5), observed)[0]["op"] == "subscribed"
    fuzzer = Fuzzer(replica.ws_url, observed, stack)
    published = 0
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(frame=frames)
    @example(frame=Batch([DEEP_PUBLISH]))
    @example(frame=Batch([{"op": "publish", "channel": "chat", "data": 1}, DEEP_PUBLISH]))
    @example(frame=Batch([DEEP_PUBLISH, {"op": "ping"}, {"op": "history", "channel": "chat"}]))
    def throw(frame: str | bytes | Batch) -> None:
        nonlocal published
        fuzzer.exchange(frame)
        publisher.send(_json({"op": "publish", "channel": STEADY_CHANNEL, "data": published}))
        published += 1
        assert check_frame(publisher.recv(timeout=5), observed)[0]["op"] == "published"

    throw()
    elapsed = time.monotonic() - started
    received = []
    while len(received) < published:
        for frame in check_frame(subscriber.recv(timeout=10), observed):
            if frame["op"] == "message" and frame["channel"] == STEADY_CHANNEL:
                if isinstance(frame["data"], int) and "from" in frame:
                    if frame["from"]["user"] == "steady":
                        received.append(frame["data"])
    assert received == list(range(published))
    stack.close()

    assert replica.process is not None and replica.process.poll() is None
    assert httpx.get(f"{replica.http_url}/readyz", timeout=5).status_code == 200
    log = replica.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, replica.log_tail()
    assert {"bad_request", "unknown_op"} <= observed.error_codes
    print(
        f"fuzz: {fuzzer.sent} frames in {elapsed:.1f}s; errors {sorted(observed.error_codes)}; "
        f"closes {sorted(observed.close_codes)}; ops {sorted(observed.ops)}"
    )
