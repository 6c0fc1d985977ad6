"""The pure parts of the Centrifugo dialect: code tables, tags filters, pushes from frames."""

from __future__ import annotations

import orjson
import pytest

from gateway.session.centrifugo import boundary_users, is_valid_centrifugo_channel
from gateway.wire import errors, protocol
from gateway.wire.centrifugo import codes, pushes
from gateway.wire.centrifugo.filters import FilterError, compile_filter
from gateway.wire.centrifugo.protocol_pb2 import FilterNode
from gateway.wire.errors import CLOSES, ERRORS, CloseCode, Disconnect


def test_every_error_code_has_a_centrifugo_code() -> None:
    assert set(codes.ERROR_CODES) == set(ERRORS)
    assert set(codes.ERROR_MESSAGES) == set(codes.CentrifugoError)


@pytest.mark.parametrize("code", list(CLOSES))
def test_every_close_keeps_its_reconnect_rule_in_centrifugo(code: CloseCode) -> None:
    mapped = codes.CLOSES_BY_CODE[code]
    assert 3000 <= mapped.code <= 3999
    if code is CloseCode.NORMAL:
        return  # the server never ends a connection with 1000; the client did
    if code is CloseCode.UNAUTHORIZED:
        # "refresh, then reconnect" splits by reason in Centrifugo: an invalid token stops
        # (3500), an expired one refreshes and reconnects (3005); see the test below
        assert not mapped.reconnect
        assert codes.close_for(errors.TOKEN_EXPIRED).reconnect
        return
    assert mapped.reconnect == CLOSES[code].reconnect, (code, mapped)


def _named_disconnects() -> list[Disconnect]:
    found = [value for value in vars(errors).values() if isinstance(value, Disconnect)]
    found += [value for value in vars(codes).values() if isinstance(value, Disconnect)]
    return found


@pytest.mark.parametrize("reason", _named_disconnects(), ids=lambda reason: reason.reason)
def test_every_named_disconnect_maps(reason: Disconnect) -> None:
    close = codes.close_for(reason)
    assert 3000 <= close.code <= 3999 and close.reason


def test_the_closes_that_share_4001_part_ways() -> None:
    assert codes.close_for(errors.UNAUTHORIZED).code == 3500
    assert not codes.close_for(errors.UNAUTHORIZED).reconnect
    assert codes.close_for(errors.TOKEN_EXPIRED).code == 3005
    assert codes.close_for(errors.TOKEN_EXPIRED).reconnect
    assert codes.close_for(errors.CONNECT_TIMEOUT).reconnect
    assert codes.close_for(errors.DISCONNECTED_BY_SERVER).code == 3503
    assert codes.close_for(Disconnect(CloseCode.UNAUTHORIZED, "token expired")).code == 3005


def leaf(key: str, cmp: str, val: str = "", vals: tuple[str, ...] = ()) -> FilterNode:
    return FilterNode(key=key, cmp=cmp, val=val, vals=list(vals))


@pytest.mark.parametrize(
    ("node", "tags", "expected"),
    [
        (leaf("a", "eq", "1"), {"a": "1"}, True),
        (leaf("a", "eq", "1"), {}, False),
        (leaf("a", "neq", "1"), {}, True),
        (leaf("a", "in", vals=("1", "2")), {"a": "2"}, True),
        (leaf("a", "nin", vals=("1", "2")), {"a": "3"}, True),
        (leaf("a", "ex"), {"a": ""}, True),
        (leaf("a", "nex"), {"a": ""}, False),
        (leaf("a", "sw", "ab"), {"a": "abc"}, True),
        (leaf("a", "ew", "bc"), {"a": "abc"}, True),
        (leaf("a", "ct", "b"), {"a": "abc"}, True),
        (leaf("p", "gt", "10"), {"p": "10.5"}, True),
        (leaf("p", "lte", "10"), {"p": "11"}, False),
        (leaf("p", "gte", "10"), {"p": "not a number"}, False),
        (FilterNode(op="and", nodes=[leaf("a", "ex"), leaf("b", "ex")]), {"a": "1"}, False),
        (FilterNode(op="or", nodes=[leaf("a", "ex"), leaf("b", "ex")]), {"a": "1"}, True),
        (FilterNode(op="not", nodes=[leaf("a", "ex")]), {"a": "1"}, False),
    ],
)
def test_tags_filters(node: FilterNode, tags: dict[str, str], expected: bool) -> None:
    assert compile_filter(node)(tags) is expected


@pytest.mark.parametrize(
    "node",
    [
        leaf("a", "regex", "x"),
        leaf("", "eq", "x"),
        leaf("p", "gt", "ten"),
        FilterNode(op="not", nodes=[leaf("a", "ex"), leaf("b", "ex")]),
        FilterNode(op="xor", nodes=[leaf("a", "ex")]),
        FilterNode(op="and", nodes=[leaf("a", "ex")] * 100),
        leaf("a", "in", vals=tuple(str(n) for n in range(100))),
    ],
)
def test_bad_tags_filters_are_refused(node: FilterNode) -> None:
    with pytest.raises(FilterError):
        compile_filter(node)


def test_a_deep_filter_is_refused() -> None:
    node = leaf("a", "ex")
    for _ in range(10):
        node = FilterNode(op="not", nodes=[node])
    with pytest.raises(FilterError):
        compile_filter(node)


def test_a_publication_keeps_its_data_byte_for_byte() -> None:
    data = orjson.Fragment(b'{"a": 1,  "b": [1, 2]}')
    head = protocol.message_head("ch", data, "c1", "u1", {"name": "x"}, {"k": "v"})
    frame = protocol.close_message(head, protocol.StreamPosition(7, "e1"))
    event = pushes.read_frame(frame)
    assert event is not None
    assert event.data == b'{"a": 1,  "b": [1, 2]}'
    assert (event.offset, event.tags, event.info.user, event.info.client) == (
        7,
        {"k": "v"},
        "u1",
        "c1",
    )
    assert orjson.loads(event.info.conn_info) == {"name": "x"}
    assert orjson.loads(frame)["tags"] == {"k": "v"}


def test_join_and_other_frames() -> None:
    join = pushes.read_frame(protocol.presence_head("join", "ch", "c1", None) + b"}")
    assert join is not None and join.kind == pushes.JOIN and join.info.user == ""
    assert pushes.read_frame(b'{"op":"welcome"}') is None
    assert pushes.read_frame(b"not json") is None


def test_channel_names_with_the_user_boundary() -> None:
    assert is_valid_centrifugo_channel("#42")
    assert is_valid_centrifugo_channel("news#42,43")
    assert not is_valid_centrifugo_channel("#control")
    assert not is_valid_centrifugo_channel("a#b#c")
    assert not is_valid_centrifugo_channel("")
    assert not is_valid_centrifugo_channel("sp ace")
    assert boundary_users("news#42,43") == ["42", "43"]
    assert boundary_users("news") is None
