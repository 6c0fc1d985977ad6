"""`subscribe` with ``"latest": true`` on real replicas sharing a real redis-server: the
channel's latest message after `subscribed`, then the live stream, without gap or duplicate."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import orjson
import pytest

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.redis_server import RedisServer

BARE = orjson.dumps({"bare": {"history_size": 0}}).decode()

_names = itertools.count()


def fresh(prefix: str = "latest") -> str:
    return f"{prefix}:{next(_names)}-{id(_names)}"


async def test_latest_on_an_empty_channel_sends_only_the_live_stream(
    cluster: list[GatewayProcess],
) -> None:
    channel = fresh()
    async with (
        await ProtocolClient.connect(cluster[0].ws_url) as reader,
        await ProtocolClient.connect(cluster[1].ws_url) as writer,
    ):
        subscribed = await reader.subscribe(channel, latest=True)
        assert subscribed["offset"] == 0 and subscribed["recovered"] is False
        await writer.publish(channel, "first")
        [message] = await reader.messages(1)
        assert (message["data"], message["offset"]) == ("first", 1)
        assert reader.inbox == []


async def test_latest_on_a_full_channel_sends_the_newest_message_then_live(
    cluster: list[GatewayProcess],
) -> None:
    channel = fresh()
    async with (
        await ProtocolClient.connect(cluster[0].ws_url) as reader,
        await ProtocolClient.connect(cluster[1].ws_url) as writer,
    ):
        for n in range(150):  # past the default history_size of 100
            await writer.publish(channel, n)
        subscribed = await reader.subscribe(channel, latest=True)
        assert subscribed["offset"] == 150
        [latest] = await reader.messages(1)
        assert (latest["data"], latest["offset"]) == (149, 150)
        await writer.publish(channel, "live")
        [live] = await reader.messages(1)
        assert (live["data"], live["offset"]) == ("live", 151)
        assert reader.inbox == []


async def test_latest_under_a_publishing_storm_has_no_gap_and_no_duplicate(
    cluster: list[GatewayProcess],
) -> None:
    channel = fresh()
    async with (
        await ProtocolClient.connect(cluster[0].ws_url) as reader,
        await ProtocolClient.connect(cluster[1].ws_url) as writer,
    ):
        await writer.publish(channel, "before")
        stop, started = asyncio.Event(), asyncio.Event()

        async def storm() -> int:
            sent = 0
            while not stop.is_set() and sent < 2000:
                await writer.publish(channel, sent)
                sent += 1
                if sent == 10:
                    started.set()
            return sent

        publishing = asyncio.create_task(storm())
        await asyncio.wait_for(started.wait(), 10)
        subscribed = await reader.subscribe(channel, latest=True)
        stop.set()
        sent = await publishing
        last = sent + 1
        received = await reader.messages(last - subscribed["offset"] + 1, timeout=20)
        offsets = [m["offset"] for m in received]
        assert offsets == list(range(subscribed["offset"], last + 1))


async def test_since_takes_precedence_when_it_can_be_recovered(
    cluster: list[GatewayProcess],
) -> None:
    channel = fresh()
    async with await ProtocolClient.connect(cluster[0].ws_url) as client:
        first = await client.publish(channel, "a")
        for data in ("b", "c"):
            await client.publish(channel, data)
        epoch = (await client.request("history", channel=channel))["epoch"]
        since = {"offset": first["offset"], "epoch": epoch}
        subscribed = await client.subscribe(channel, since=since, latest=True)
        assert subscribed["recovered"] is True
        assert [m["data"] for m in await client.messages(2)] == ["b", "c"]
        assert client.inbox == []


async def test_latest_follows_when_since_cannot_be_recovered(
    cluster: list[GatewayProcess],
) -> None:
    channel = fresh()
    async with await ProtocolClient.connect(cluster[0].ws_url) as client:
        for data in ("a", "b", "c"):
            await client.publish(channel, data)
        stale = {"offset": 1, "epoch": "not-the-epoch"}
        subscribed = await client.subscribe(channel, since=stale, latest=True)
        assert subscribed["recovered"] is False
        [latest] = await client.messages(1)
        assert (latest["data"], latest["offset"]) == ("c", 3)
        await client.publish(channel, "d")
        [live] = await client.messages(1)
        assert (live["data"], live["offset"]) == ("d", 4)


async def test_latest_on_a_channel_without_history_sends_nothing_more(
    gateways: Callable[..., list[GatewayProcess]], redis_server: RedisServer
) -> None:
    [replica] = gateways(1, redis_url=redis_server.url, namespaces=BARE)
    channel = fresh("bare")
    async with await ProtocolClient.connect(replica.ws_url) as client:
        await client.publish(channel, "gone")
        subscribed = await client.subscribe(channel, latest=True)
        assert (subscribed["offset"], subscribed["epoch"]) == (0, "")
        await client.publish(channel, "live")
        [live] = await client.messages(1)
        assert live["data"] == "live" and "offset" not in live


@pytest.mark.parametrize("value", ["yes", 1, None])
async def test_latest_must_be_a_boolean(cluster: list[GatewayProcess], value: object) -> None:
    async with await ProtocolClient.connect(cluster[0].ws_url) as client:
        reply = await client.request("subscribe", channel=fresh(), latest=value)
        assert reply["op"] == "error" and reply["code"] == "bad_request", reply
