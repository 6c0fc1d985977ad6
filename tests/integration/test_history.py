"""History, recovery and presence over /ws on one in-process replica (memory broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from gateway.settings import Settings
from tests.support.client import ProtocolClient
from tests.support.inprocess import LocalGateway, serve_in_process

NAMESPACES = {
    "small": {"history_size": 5},
    "nohist": {"history_size": 0},
    "room": {"presence": True, "join_leave": True},
    "quiet": {"presence": True},
}


@pytest.fixture
async def gateway(settings_factory: Callable[..., Settings]) -> AsyncIterator[LocalGateway]:
    async with serve_in_process(settings_factory(namespaces=NAMESPACES)) as running:
        yield running


@pytest.fixture
async def client(gateway: LocalGateway) -> AsyncIterator[ProtocolClient]:
    async with await ProtocolClient.connect(gateway.ws_url) as connected:
        yield connected


async def publish_many(
    client: ProtocolClient, channel: str, count: int, start: int = 0
) -> list[int]:
    lines = [
        orjson.dumps({"op": "publish", "id": f"p{n}", "channel": channel, "data": n}).decode()
        for n in range(start, start + count)
    ]
    await client.send("\n".join(lines))
    replies = [
        await client.expect(lambda f, n=n: f.get("id") == f"p{n}")
        for n in range(start, start + count)
    ]
    return [reply["offset"] for reply in replies]


async def test_offsets_are_consecutive_per_channel(client: ProtocolClient) -> None:
    assert await publish_many(client, "news:a", 3) == [1, 2, 3]
    assert await publish_many(client, "news:b", 2) == [1, 2]
    assert await publish_many(client, "news:a", 1, start=3) == [4]


async def test_history_returns_the_latest_messages(client: ProtocolClient) -> None:
    await publish_many(client, "feed", 8)
    reply = await client.request("history", channel="feed", limit=3)
    assert reply["op"] == "history" and reply["offset"] == 8 and reply["epoch"]
    assert [m["data"] for m in reply["messages"]] == [5, 6, 7]
    assert [m["offset"] for m in reply["messages"]] == [6, 7, 8]
    assert all(m["op"] == "message" and m["epoch"] == reply["epoch"] for m in reply["messages"])


async def test_history_since_returns_what_followed(client: ProtocolClient) -> None:
    await publish_many(client, "feed2", 6)
    epoch = (await client.request("history", channel="feed2", limit=0))["epoch"]
    reply = await client.request(
        "history", channel="feed2", since={"offset": 2, "epoch": epoch}, limit=2
    )
    assert [m["offset"] for m in reply["messages"]] == [3, 4]
    everything = await client.request(
        "history", channel="feed2", since={"offset": 2, "epoch": epoch}
    )
    assert [m["offset"] for m in everything["messages"]] == [3, 4, 5, 6]


async def test_history_limit_is_capped_by_history_size(client: ProtocolClient) -> None:
    await publish_many(client, "small:x", 9)
    reply = await client.request("history", channel="small:x", limit=100)
    assert [m["offset"] for m in reply["messages"]] == [5, 6, 7, 8, 9]
    assert (await client.request("history", channel="small:x"))["messages"][-1]["offset"] == 9


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"channel": "nohist:x"}, "history is off"),
        ({"channel": "feed3", "limit": -1}, "limit must be a non-negative integer"),
        ({"channel": "feed3", "since": {"offset": 1, "epoch": "not-the-epoch"}}, "re-sync"),
        ({"channel": "feed3", "since": {"offset": -5, "epoch": "e"}}, "non-negative"),
    ],
)
async def test_history_rejections(
    client: ProtocolClient, fields: dict[str, Any], expected: str
) -> None:
    await publish_many(client, "feed3", 2)
    error = await client.request("history", **fields)
    assert error["op"] == "error" and error["code"] == "bad_request"
    assert expected in error["message"]


async def test_history_since_beyond_the_head_is_refused(client: ProtocolClient) -> None:
    await publish_many(client, "feed4", 2)
    epoch = (await client.request("history", channel="feed4", limit=0))["epoch"]
    error = await client.request("history", channel="feed4", since={"offset": 9, "epoch": epoch})
    assert error["code"] == "bad_request" and "beyond" in error["message"]


async def test_recovery_delivers_exactly_the_missed_messages(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as publisher:
        first = await ProtocolClient.connect(gateway.ws_url)
        subscribed = await first.subscribe("rec:1")
        await publish_many(publisher, "rec:1", 2)
        seen = await first.messages(2)
        await first.close()
        await publish_many(publisher, "rec:1", 4, start=2)
        async with await ProtocolClient.connect(gateway.ws_url) as again:
            since = {"offset": seen[-1]["offset"], "epoch": subscribed["epoch"]}
            reply = await again.subscribe("rec:1", since=since)
            assert reply["recovered"] is True and reply["offset"] == 6
            missed = await again.messages(4)
            assert [m["data"] for m in missed] == [2, 3, 4, 5]
            await publish_many(publisher, "rec:1", 1, start=6)
            [live] = await again.messages(1)
            assert live["offset"] == 7
            assert not [f for f in again.inbox if f["op"] == "message"]


async def test_recovery_with_nothing_missed(client: ProtocolClient, gateway: LocalGateway) -> None:
    await publish_many(client, "rec:2", 3)
    epoch = (await client.request("history", channel="rec:2", limit=0))["epoch"]
    async with await ProtocolClient.connect(gateway.ws_url) as other:
        reply = await other.subscribe("rec:2", since={"offset": 3, "epoch": epoch})
        assert reply["recovered"] is True and reply["offset"] == 3
        await publish_many(client, "rec:2", 1, start=3)
        [message] = await other.messages(1)
        assert message["offset"] == 4


@pytest.mark.parametrize(
    ("since", "why"),
    [
        ({"offset": 1, "epoch": "some-other-epoch"}, "the epoch changed"),
        ({"offset": 50, "epoch": None}, "the offset is beyond the head"),
        ({"offset": 1, "epoch": None}, "the missed messages left the window"),
    ],
)
async def test_unrecoverable_positions_say_recovered_false(
    client: ProtocolClient, gateway: LocalGateway, since: dict[str, Any], why: str
) -> None:
    await publish_many(client, "small:rec", 9)
    epoch = (await client.request("history", channel="small:rec", limit=0))["epoch"]
    since = {"offset": since["offset"], "epoch": since["epoch"] or epoch}
    async with await ProtocolClient.connect(gateway.ws_url) as other:
        reply = await other.subscribe("small:rec", since=since)
        assert reply["recovered"] is False, why
        assert reply["offset"] == 9 and reply["epoch"] == epoch
        await publish_many(client, "small:rec", 1, start=9)
        [message] = await other.messages(1)
        assert message["offset"] == 10
        assert not [f for f in other.inbox if f["op"] == "message"]


async def test_since_on_a_channel_without_history(client: ProtocolClient) -> None:
    reply = await client.subscribe("nohist:a", since={"offset": 3, "epoch": "e"})
    assert reply["recovered"] is False and reply["offset"] == 0 and reply["epoch"] == ""
    published = await client.publish("nohist:a", "x")
    assert "offset" not in published
    [message] = await client.messages(1)
    assert "offset" not in message and "epoch" not in message


async def test_presence_lists_subscribers(gateway: LocalGateway) -> None:
    async with (
        await ProtocolClient.connect(gateway.ws_url) as ann,
        await ProtocolClient.connect(gateway.ws_url) as bob,
    ):
        await ann.subscribe("quiet:1")
        await bob.subscribe("quiet:1")
        reply = await ann.request("presence", channel="quiet:1")
        assert reply["op"] == "presence" and reply["channel"] == "quiet:1"
        assert reply["clients"] == {
            ann.client_id: {"user": None, "info": None},
            bob.client_id: {"user": None, "info": None},
        }
        await bob.request("unsubscribe", channel="quiet:1")
        reply = await ann.request("presence", channel="quiet:1")
        assert set(reply["clients"]) == {ann.client_id}


async def test_presence_off_is_a_clear_error(client: ProtocolClient) -> None:
    error = await client.request("presence", channel="feed")
    assert error["code"] == "bad_request" and "presence is off" in error["message"]


async def test_join_and_leave_events(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as watcher:
        await watcher.subscribe("room:1")
        mine = await watcher.expect(lambda f: f["op"] == "join")
        assert mine["client"] == watcher.client_id
        visitor = await ProtocolClient.connect(gateway.ws_url)
        await visitor.subscribe("room:1")
        join = await watcher.expect(lambda f: f["op"] == "join")
        assert join == {
            "op": "join",
            "channel": "room:1",
            "client": visitor.client_id,
            "user": None,
        }
        await visitor.close()
        leave = await watcher.expect(lambda f: f["op"] == "leave")
        assert leave == {
            "op": "leave",
            "channel": "room:1",
            "client": visitor.client_id,
            "user": None,
        }
        assert set((await watcher.request("presence", channel="room:1"))["clients"]) == {
            watcher.client_id
        }
