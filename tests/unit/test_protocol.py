from __future__ import annotations

import orjson
import pytest

from gateway.wire import protocol
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.protocol import (
    Connect,
    History,
    Ping,
    Presence,
    Publish,
    Refresh,
    StreamPosition,
    Subscribe,
    Unsubscribe,
    parse,
)


def bad(message: str, id: int | str | None = None) -> GatewayError:
    return GatewayError(ErrorCode.BAD_REQUEST, message, id)


def test_parses_every_op() -> None:
    text = "\n".join(
        [
            '{"op":"subscribe","id":1,"channel":"chat:a","since":{"offset":4,"epoch":"e"},"token":"t"}',
            '{"op":"unsubscribe","id":"two","channel":"chat:a"}',
            '{"op":"publish","channel":"c","data":{"x":[1,2]}}',
            '{"op":"presence","id":3,"channel":"c"}',
            '{"op":"history","id":4,"channel":"c","limit":10}',
            '{"op":"refresh","id":5,"token":"new"}',
            '{"op":"connect","token":"jwt"}',
            '{"op":"ping","id":6}',
        ]
    )
    assert parse(text) == [
        Subscribe(1, "chat:a", StreamPosition(4, "e"), "t"),
        Unsubscribe("two", "chat:a"),
        Publish(None, "c", {"x": [1, 2]}),
        Presence(3, "c"),
        History(4, "c", None, 10),
        Refresh(5, "new"),
        Connect(None, "jwt"),
        Ping(6),
    ]


def test_blank_lines_are_skipped() -> None:
    assert parse('\n{"op":"ping"}\n\n  \r\n') == [Ping(None)]
    assert parse("") == []


def test_publish_accepts_null_data() -> None:
    assert parse('{"op":"publish","channel":"c","data":null}') == [Publish(None, "c", None)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{nope", None),
        ("[1,2]", bad("a command must be a JSON object")),
        ('"ping"', bad("a command must be a JSON object")),
        ('{"id":1}', bad("op is required", 1)),
        ('{"op":5,"id":1}', bad("op must be a string", 1)),
        ('{"op":"fly","id":"x"}', GatewayError(ErrorCode.UNKNOWN_OP, "unknown op 'fly'", "x")),
        ('{"op":"subscribe","id":7}', bad("channel is required", 7)),
        ('{"op":"publish","id":7,"channel":"c"}', bad("data is required", 7)),
        ('{"op":"connect","id":7}', bad("token is required", 7)),
        ('{"op":"connect","id":7,"token":""}', bad("token must be a non-empty string", 7)),
        (
            '{"op":"subscribe","id":7,"channel":"c","token":5}',
            bad("token must be a non-empty string", 7),
        ),
        ('{"op":"ping","id":true}', bad("id must be an integer or a string")),
        ('{"op":"ping","id":1.5}', bad("id must be an integer or a string")),
        ('{"op":"ping","id":{"a":1}}', bad("id must be an integer or a string")),
        (
            '{"op":"history","id":1,"channel":"c","limit":-1}',
            bad("limit must be a non-negative integer", 1),
        ),
        (
            '{"op":"subscribe","id":1,"channel":"c","since":5}',
            bad("since must be an object {offset, epoch}", 1),
        ),
        (
            '{"op":"subscribe","id":1,"channel":"c","since":{"offset":-1,"epoch":"e"}}',
            bad("since.offset must be a non-negative integer below 2^63", 1),
        ),
        (
            f'{{"op":"history","id":1,"channel":"c","since":{{"offset":{2**63},"epoch":"e"}}}}',
            bad("since.offset must be a non-negative integer below 2^63", 1),
        ),
        (
            '{"op":"subscribe","id":1,"channel":"c","since":{"offset":1}}',
            bad("since.epoch must be a string", 1),
        ),
    ],
)
def test_malformed_commands_become_errors(line: str, expected: GatewayError | None) -> None:
    [result] = parse(line)
    assert isinstance(result, GatewayError)
    if expected is None:
        assert result.code is ErrorCode.BAD_REQUEST and result.message.startswith("invalid JSON")
    else:
        assert result == expected


def test_id_of_65_characters_is_refused_and_echoed() -> None:
    long_id = "x" * 65
    [result] = parse(orjson.dumps({"op": "ping", "id": long_id}).decode())
    assert result == bad("id longer than 64 characters", long_id)
    assert parse(orjson.dumps({"op": "ping", "id": "y" * 64}).decode()) == [Ping("y" * 64)]


@pytest.mark.parametrize("channel", ["", "a b", "x" * 256, "ünï", "a{b}", 5, None, ["c"]])
def test_invalid_channel_names_are_bad_requests(channel: object) -> None:
    [result] = parse(orjson.dumps({"op": "subscribe", "id": 1, "channel": channel}).decode())
    assert isinstance(result, GatewayError)
    assert result.code is ErrorCode.BAD_REQUEST and result.id == 1


def test_one_bad_line_does_not_spoil_the_others() -> None:
    results = parse('{"op":"ping","id":1}\nnot json\n{"op":"ping","id":2}')
    assert results[0] == Ping(1) and results[2] == Ping(2)
    assert isinstance(results[1], GatewayError)


def test_reply_echoes_id_only_when_given() -> None:
    assert orjson.loads(protocol.reply("pong", None)) == {"op": "pong"}
    assert orjson.loads(protocol.reply("pong", "a")) == {"op": "pong", "id": "a"}


def test_error_frame() -> None:
    frame = orjson.loads(protocol.error(GatewayError(ErrorCode.NOT_SUBSCRIBED, "no", 3)))
    assert frame == {"op": "error", "id": 3, "code": "not_subscribed", "message": "no"}


def test_message_frame_with_and_without_position() -> None:
    head = protocol.message_head("chat", {"t": "hi"}, "c1", "alice")
    assert orjson.loads(protocol.close_message(head)) == {
        "op": "message",
        "channel": "chat",
        "data": {"t": "hi"},
        "from": {"client": "c1", "user": "alice"},
    }
    frame = orjson.loads(protocol.close_message(head, StreamPosition(7, 'ep"och')))
    assert frame["offset"] == 7 and frame["epoch"] == 'ep"och'


def test_message_frame_names_the_publishers_info() -> None:
    head = protocol.message_head("chat", "hi", "c1", None, {"name": "Zoë"})
    assert orjson.loads(protocol.close_message(head))["from"] == {
        "client": "c1",
        "user": None,
        "info": {"name": "Zoë"},
    }


def test_server_api_messages_carry_no_from() -> None:
    head = protocol.message_head("chat", 1, None, None)
    assert "from" not in orjson.loads(protocol.close_message(head))


def test_welcome_frame() -> None:
    frame = orjson.loads(protocol.welcome("c", "node-1", None, 25.0))
    assert frame == {
        "op": "welcome",
        "client": "c",
        "node": "node-1",
        "user": None,
        "ping": 25,
        "version": 1,
    }
