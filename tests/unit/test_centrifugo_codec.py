"""gateway.wire.centrifugo: the generated schema and the frame codec of both encodings."""

from __future__ import annotations

import json
from pathlib import Path

import centrifuge.protocol.client_pb2 as sdk_pb2
import orjson
import pytest
from centrifuge.codecs import _JsonCodec, _ProtobufCodec
from google.protobuf.descriptor import Descriptor
from google.protobuf.json_format import MessageToDict

from gateway.wire.centrifugo import protocol_pb2
from gateway.wire.centrifugo.codec import (
    PROTOBUF_SUBPROTOCOL,
    CodecError,
    Encoding,
    decode_commands,
    decode_replies,
    encode_frame,
    encode_message,
    encoding_for,
    is_ping,
    join_frame,
)
from gateway.wire.centrifugo.protocol_pb2 import ClientInfo, Command, Publication, Reply
from scripts.generate_centrifugo_protocol import OUTPUTS, generate
from tests.support.gateways import REPO_ROOT

# The schema: ours, written from the protocol's description, against the SDK's own.

NOT_USED_BY_THE_GATEWAY = {"EmulationRequest"}
THE_GATEWAYS_OWN = {"PublishRequest": {"idempotency_key"}}
"""Fields the gateway adds to Centrifugo's messages; no SDK sends them."""


def _fields(descriptor: Descriptor) -> dict[str, tuple[int, int, bool]]:
    own = THE_GATEWAYS_OWN.get(descriptor.name, set())
    return {
        field.name: (field.number, field.type, field.is_repeated)
        for field in descriptor.fields
        if field.name not in own
    }


def test_every_sdk_message_has_the_same_fields_and_numbers() -> None:
    ours = protocol_pb2.DESCRIPTOR.message_types_by_name
    theirs = sdk_pb2.DESCRIPTOR.message_types_by_name
    assert set(theirs) - set(ours) == NOT_USED_BY_THE_GATEWAY
    for name, descriptor in theirs.items():
        if name in NOT_USED_BY_THE_GATEWAY:
            continue
        assert _fields(ours[name]) == _fields(descriptor), name
        for nested in descriptor.nested_types:
            assert _fields(ours[name].nested_types_by_name[nested.name]) == _fields(nested)


def test_the_gateways_own_fields_collide_with_none_of_the_sdks() -> None:
    ours = protocol_pb2.DESCRIPTOR.message_types_by_name
    theirs = sdk_pb2.DESCRIPTOR.message_types_by_name
    for message, names in THE_GATEWAYS_OWN.items():
        numbers = {field.number for field in theirs[message].fields}
        for name in names:
            assert name not in theirs[message].fields_by_name
            assert ours[message].fields_by_name[name].number not in numbers


def test_our_package_does_not_clash_with_the_sdks_in_one_process() -> None:
    assert protocol_pb2.DESCRIPTOR.package != sdk_pb2.DESCRIPTOR.package
    assert protocol_pb2.DESCRIPTOR.name != sdk_pb2.DESCRIPTOR.name


def test_generated_code_is_current(tmp_path: Path) -> None:
    generate(tmp_path)
    for path in OUTPUTS:
        assert (tmp_path / path).read_text() == (REPO_ROOT / path).read_text(), (
            f"{path} is stale: run python scripts/generate_centrifugo_protocol.py"
        )


# Subprotocol and ping.


def test_the_subprotocol_chooses_the_encoding() -> None:
    assert encoding_for([]) is Encoding.JSON
    assert encoding_for(["centrifuge-json"]) is Encoding.JSON
    assert encoding_for(["x", PROTOBUF_SUBPROTOCOL]) is Encoding.PROTOBUF
    assert Encoding.PROTOBUF.binary and not Encoding.JSON.binary


def test_the_empty_message_is_the_ping_in_both_encodings() -> None:
    assert encode_message(Reply(), Encoding.JSON) == b"{}"
    assert encode_message(Reply(), Encoding.PROTOBUF) == b"\x00"
    (ping,) = decode_commands(b"{}", Encoding.JSON)
    assert is_ping(ping)
    assert [is_ping(c) for c in decode_commands(b"\x00\x00", Encoding.PROTOBUF)] == [True, True]
    assert not is_ping(Command(id=1))


# JSON: what Centrifugo writes.


def test_json_commands_of_one_frame_in_order() -> None:
    frame = (
        '{"id":1,"connect":{"token":"t","name":"js","data":{"a":[1,2]}}}\n'
        '{"id":2,"subscribe":{"channel":"chat:1","recover":true,"offset":18446744073709551615,'
        '"epoch":"e","join_leave":true,"delta":"fossil","flag":2}}\n'
        "{}\n"
    )
    connect, subscribe, ping = decode_commands(frame, Encoding.JSON)
    assert (connect.id, connect.connect.token, connect.connect.name) == (1, "t", "js")
    assert orjson.loads(connect.connect.data) == {"a": [1, 2]}
    assert subscribe.subscribe.offset == 2**64 - 1
    assert subscribe.subscribe.join_leave and subscribe.subscribe.delta == "fossil"
    assert subscribe.subscribe.flag == 2
    assert is_ping(ping)


def test_json_empty_results_are_kept() -> None:
    reply = Reply(id=5)
    reply.publish.SetInParent()
    assert encode_message(reply, Encoding.JSON) == b'{"id":5,"publish":{}}'
    unsubscribe = Reply(id=6)
    unsubscribe.unsubscribe.SetInParent()
    assert encode_message(unsubscribe, Encoding.JSON) == b'{"id":6,"unsubscribe":{}}'


def test_json_bytes_fields_carry_raw_json_and_names_are_snake_case() -> None:
    reply = Reply(id=3)
    result = reply.subscribe
    result.was_recovering = True
    result.recoverable = True
    result.offset = 2**63
    result.epoch = "ep"
    result.publications.add(data=b'{"x":\n 1}', offset=7).tags["kind"] = "a"
    result.publications[0].info.CopyFrom(
        ClientInfo(user="u", client="c", conn_info=b'{"n":1}', chan_info=b"[true]")
    )
    assert orjson.loads(encode_message(reply, Encoding.JSON)) == {
        "id": 3,
        "subscribe": {
            "recoverable": True,
            "epoch": "ep",
            "offset": 2**63,
            "was_recovering": True,
            "publications": [
                {
                    "data": {"x": 1},
                    "offset": 7,
                    "tags": {"kind": "a"},
                    "info": {
                        "user": "u",
                        "client": "c",
                        "conn_info": {"n": 1},
                        "chan_info": [True],
                    },
                }
            ],
        },
    }
    assert b"\n" not in encode_message(reply, Encoding.JSON)


def test_json_presence_map_and_push_without_id() -> None:
    reply = Reply(id=9)
    reply.presence.presence["c1"].CopyFrom(ClientInfo(user="u1", client="c1"))
    push = Reply()
    push.push.channel = "news"
    push.push.pub.CopyFrom(Publication(data=b'"hi"', offset=1))
    frame = encode_frame([reply, push], Encoding.JSON)
    first, second = frame.split(b"\n")
    assert orjson.loads(first) == {
        "id": 9,
        "presence": {"presence": {"c1": {"user": "u1", "client": "c1"}}},
    }
    assert orjson.loads(second) == {"push": {"channel": "news", "pub": {"data": "hi", "offset": 1}}}


def test_json_matches_what_the_python_sdk_sends_and_reads() -> None:
    commands = [
        {"id": 1, "connect": {"token": "t", "name": "python", "subs": {"a": {"recover": True}}}},
        {"id": 2, "publish": {"channel": "c", "data": {"input": "é"}}},
        {"id": 3, "history": {"channel": "c", "limit": -1, "since": {"offset": 2, "epoch": "e"}}},
        {},
    ]
    decoded = decode_commands(_JsonCodec.encode_commands(commands), Encoding.JSON)
    assert decoded[0].connect.subs["a"].recover
    assert orjson.loads(decoded[1].publish.data) == {"input": "é"}
    assert decoded[2].history.limit == -1 and decoded[2].history.since.offset == 2
    assert is_ping(decoded[3])
    replies = [Reply(id=2), Reply()]
    replies[0].publish.SetInParent()
    text = encode_frame(replies, Encoding.JSON).decode()
    assert _JsonCodec.decode_replies(text) == [{"id": 2, "publish": {}}, {}]


def test_json_unknown_fields_are_ignored_and_null_is_unset() -> None:
    (command,) = decode_commands(
        '{"id":1,"subscribe":{"channel":"c","type":1,"cursor":"x","data":null},"new":{}}',
        Encoding.JSON,
    )
    assert command.subscribe.channel == "c"
    assert not command.subscribe.data


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("not json", "invalid JSON"),
        ("[1,2]", "Command: expected an object"),
        ('{"id":"1"}', "Command.id: expected an integer"),
        ('{"id":-1}', "Command.id: -1 is out of range"),
        ('{"id":4294967296}', "out of range"),
        ('{"id":true}', "expected an integer"),
        ('{"id":1.5}', "expected an integer"),
        ('{"subscribe":{"channel":5}}', "Command.subscribe.channel: expected a string"),
        ('{"subscribe":{"recover":"yes"}}', "expected true or false"),
        ('{"subscribe":{"offset":18446744073709551616}}', "Command.subscribe.offset"),
        ('{"subscribe":[]}', "Command.subscribe: expected an object"),
        ('{"connect":{"subs":[]}}', "Command.connect.subs: expected an object"),
        ('{"connect":{"headers":{"a":1}}}', "Command.connect.headers.a: expected a string"),
        ('{"subscribe":{"tf":{"vals":"x"}}}', "Command.subscribe.tf.vals: expected an array"),
    ],
)
def test_json_bad_commands_are_codec_errors(frame: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_commands(frame, Encoding.JSON)


def test_json_data_nested_too_deep_is_a_codec_error() -> None:
    deep = "[" * 300 + "]" * 300
    with pytest.raises(CodecError):
        decode_commands('{"id":1,"publish":{"channel":"c","data":' + deep + "}}", Encoding.JSON)


def test_json_blank_lines_are_skipped_and_the_count_is_bounded() -> None:
    assert len(decode_commands("\n{}\n\n{}\n", Encoding.JSON)) == 2
    with pytest.raises(CodecError, match="more than 3 messages"):
        decode_commands("\n".join(["{}"] * 4), Encoding.JSON, limit=3)
    assert len(decode_commands("\n".join(["{}"] * 3), Encoding.JSON, limit=3)) == 3


# Protobuf: varint-delimited.


def test_protobuf_round_trip_and_varint_lengths() -> None:
    big = Reply()
    big.push.channel = "c"
    big.push.pub.data = b"x" * 300
    small = Reply(id=1)
    small.publish.SetInParent()
    frame = encode_frame([big, small, Reply()], Encoding.PROTOBUF)
    body = big.SerializeToString()
    assert frame.startswith(bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body)
    assert decode_replies(frame, Encoding.PROTOBUF) == [big, small, Reply()]
    parts = [encode_message(m, Encoding.PROTOBUF) for m in (big, small)]
    assert join_frame(parts, Encoding.PROTOBUF) == frame[:-1]


def test_protobuf_matches_what_the_python_sdk_sends_and_reads() -> None:
    commands = [
        {"id": 1, "connect": {"token": "t", "name": "python"}},
        {"id": 2, "subscribe": {"channel": "c", "recover": True, "offset": "5", "epoch": "e"}},
        {"id": 3, "publish": {"channel": "c", "data": "eyJhIjoxfQ=="}},
        {},
    ]
    decoded = decode_commands(_ProtobufCodec.encode_commands(commands), Encoding.PROTOBUF)
    assert decoded[0].connect.token == "t"
    assert decoded[1].subscribe.offset == 5
    assert decoded[2].publish.data == b'{"a":1}'
    assert is_ping(decoded[3])
    reply = Reply(id=2)
    reply.subscribe.recoverable = True
    reply.subscribe.offset = 5
    reply.subscribe.publications.add(data=b"\x00\xff", offset=5)
    (parsed,) = _ProtobufCodec.decode_replies(encode_frame([reply], Encoding.PROTOBUF))
    expected = sdk_pb2.Reply()
    expected.ParseFromString(reply.SerializeToString())
    assert parsed == MessageToDict(expected, preserving_proto_field_name=True)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x05\x08", "truncated frame: a message of 5 bytes, 1 left"),
        (b"\x80", "the length prefix is cut off"),
        (b"\xff" * 11, "longer than 10 bytes"),
        (b"\x02\xff\xff", "invalid Protobuf message"),
    ],
)
def test_protobuf_bad_frames_are_codec_errors(frame: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_commands(frame, Encoding.PROTOBUF)


def test_protobuf_frames_must_be_binary_and_the_count_is_bounded() -> None:
    with pytest.raises(CodecError, match="must be binary"):
        decode_commands("{}", Encoding.PROTOBUF)
    with pytest.raises(CodecError, match="more than 2 messages"):
        decode_commands(b"\x00" * 3, Encoding.PROTOBUF, limit=2)


def test_binary_payloads_survive_protobuf_but_json_payloads_stay_json() -> None:
    reply = Reply()
    reply.push.pub.data = json.dumps({"k": "ü"}).encode()
    assert decode_replies(encode_frame([reply], Encoding.PROTOBUF), Encoding.PROTOBUF) == [reply]
    assert orjson.loads(encode_message(reply, Encoding.JSON))["push"]["pub"]["data"] == {"k": "ü"}
