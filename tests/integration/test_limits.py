"""Limits that hold against a hostile client, through both sinks (direct writes and plain
ASGI sends): history replies bounded in bytes with `more`, recovery of a history larger
than the queue, the bounded wait for a queue that does not drain, one message a frame on
``/websocket``, and `data` that cannot be encoded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect

from tests.support.client import ProtocolClient
from tests.support.hub import subscribers as local_subscribers
from tests.support.inprocess import LocalGateway
from tests.support.net import wait_until
from tests.support.raw_ws import RawWebSocket

BIG = 60 * 1024


async def publish_all(client: ProtocolClient, channel: str, data: list[Any]) -> None:
    """Publish each value (one command a frame), then wait for every reply."""
    for n, value in enumerate(data):
        await client.send({"op": "publish", "id": f"p{n}", "channel": channel, "data": value})
    for n in range(len(data)):
        reply = await client.expect(lambda f, n=n: f.get("id") == f"p{n}")
        assert reply["op"] == "published", reply


async def page_through(
    client: ProtocolClient, channel: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every `history` reply of one paging: since = the last offset got, while `more`."""
    pages: list[dict[str, Any]] = []
    fields: dict[str, Any] = {} if limit is None else {"limit": limit}
    while True:
        reply = await client.request("history", channel=channel, **fields)
        assert reply["op"] == "history", reply
        pages.append(reply)
        if not reply["more"]:
            return pages
        last = reply["messages"][-1]
        fields["since"] = {"offset": last["offset"], "epoch": reply["epoch"]}
        if limit is not None:
            limit -= len(reply["messages"])
            fields["limit"] = limit


async def test_a_history_reply_is_bounded_and_pages_from_the_oldest(
    serve: Callable[..., Any],
) -> None:
    async with serve(history_reply_bytes=2000, rate=0) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            await publish_all(client, "paged", [[n, "x" * 300] for n in range(20)])
            since_start = {"offset": 0, "epoch": (await client.subscribe("paged"))["epoch"]}
            first = await client.request("history", channel="paged", since=since_start)
            assert first["more"] is True and 1 <= len(first["messages"]) < 20
            assert len(orjson.dumps(first["messages"])) <= 2000 + 100
            pages = await page_through(client, "paged")
            got = [m["data"][0] for page in pages for m in page["messages"]]
            assert got == list(range(20)) and len(pages) > 2
            assert [page["more"] for page in pages] == [True] * (len(pages) - 1) + [False]


async def test_without_since_the_latest_are_paged_from_the_oldest_of_them(
    serve: Callable[..., Any],
) -> None:
    async with serve(history_reply_bytes=2000, rate=0) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            await publish_all(client, "latest", [[n, "x" * 300] for n in range(20)])
            pages = await page_through(client, "latest", limit=12)
            assert pages[0]["messages"][0]["data"][0] == 8, "the window starts at the oldest"
            got = [m["data"][0] for page in pages for m in page["messages"]]
            assert got == list(range(8, 20))


async def test_a_small_history_fits_in_one_reply_that_says_no_more(
    gateway: LocalGateway,
) -> None:
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        await publish_all(client, "short", [1, 2, 3])
        reply = await client.request("history", channel="short")
        assert [m["data"] for m in reply["messages"]] == [1, 2, 3] and reply["more"] is False


async def test_the_http_api_bounds_history_too(serve: Callable[..., Any]) -> None:
    async with serve(history_reply_bytes=2000, api_key="k", rate=0) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            await publish_all(client, "api:paged", [[n, "x" * 300] for n in range(10)])
        headers = {"Authorization": "Bearer k"}
        async with httpx.AsyncClient(base_url=gateway.http_url, headers=headers) as http:
            got: list[int] = []
            params: dict[str, Any] = {}
            while True:
                body = (await http.get("/api/history/api:paged", params=params)).json()
                got += [m["data"][0] for m in body["messages"]]
                if not body["more"]:
                    break
                params = {"since": body["messages"][-1]["offset"], "epoch": body["epoch"]}
            assert got == list(range(10))
            huge = await http.get(
                "/api/history/api:paged", params={"since": 2**63, "epoch": body["epoch"]}
            )
            assert huge.status_code == 422 and "since" in huge.text
            deep = "[" * 254 + "]" * 254
            published = await http.post(
                "/api/publish",
                content=f'{{"channel":"api:paged","data":{deep}}}',
                headers={"Content-Type": "application/json"},
            )
            assert published.status_code == 400, published.text
            assert "253 levels" in published.json()["detail"]["message"]


async def recover(gateway: LocalGateway, channel: str, count: int, size: int) -> None:
    """Publish ``count`` messages of ``size`` bytes after a client's position, then have it
    resubscribe from there: it gets all of them, then the live stream."""
    async with await ProtocolClient.connect(gateway.ws_url) as publisher:
        position = await publisher.subscribe(channel)
        await publish_all(publisher, channel, [[n, "x" * size] for n in range(count)])
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            since = {"offset": position["offset"], "epoch": position["epoch"]}
            subscribed = await client.subscribe(channel, since=since)
            assert subscribed["recovered"] is True
            await publisher.publish(channel, ["live"])
            received = await client.messages(count + 1, channel=channel, timeout=30)
            assert [m["data"][0] for m in received] == [*range(count), "live"]
            assert [m["offset"] for m in received] == list(range(1, count + 2))
    assert gateway.replica.stats.slow_consumers == 0


async def test_a_recovery_larger_than_the_queue_reaches_a_client_that_reads(
    serve: Callable[..., Any],
) -> None:
    """100 missed messages of 60 KiB are more than `max_queue_bytes`: they go out as the
    client takes them instead of overflowing its queue."""
    async with serve(rate=0, max_queue_bytes=1024 * 1024) as gateway:
        await recover(gateway, "recover:big", 100, BIG)


async def test_a_recovery_read_in_several_pages_misses_nothing(
    serve: Callable[..., Any],
) -> None:
    """With 1 MiB messages allowed, a broker read asks for 8 messages at most."""
    async with serve(rate=0, max_message_bytes=1024 * 1024) as gateway:
        await recover(gateway, "recover:paged", 40, 100)


async def test_a_client_whose_queue_never_drains_is_closed_within_a_ping_interval(
    serve: Callable[..., Any],
) -> None:
    """It sends commands but reads nothing: its read loop waits for room in its queue at
    most one ping interval, then it is closed with 4008 and its queue is freed."""
    ping = 1.0
    async with serve(rate=0, ping_seconds=ping, max_queue=8) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as loader:
            await publish_all(loader, "fill", [[n, "x" * BIG] for n in range(60)])
        replica = gateway.replica
        attacker = await asyncio.to_thread(RawWebSocket.connect, gateway.port)
        try:
            batch = "\n".join(
                orjson.dumps({"op": "history", "id": n, "channel": "fill"}).decode()
                for n in range(3)
            )
            assert await asyncio.to_thread(attacker.send_text, batch)
            pings = "\n".join(orjson.dumps({"op": "ping", "id": n}).decode() for n in range(3, 40))
            started = time.monotonic()
            assert await asyncio.to_thread(attacker.send_text, pings)
            await wait_until(lambda: replica.stats.slow_consumers == 1, 2 * ping + 3, "4008")
            assert time.monotonic() - started < 2 * ping + 3
            assert all(c.outbox.queued_bytes == 0 for c in replica.connections)
        finally:
            attacker.close()


async def test_each_message_is_its_own_frame_on_the_plain_text_endpoint(
    serve: Callable[..., Any],
) -> None:
    async with serve(rate=0) as gateway:
        hub = gateway.replica.hub
        async with connect(f"{gateway.plain_url}?channel=plain") as plain:
            await wait_until(
                lambda: local_subscribers(hub, "plain") == 1, 5, "the plain-text subscription"
            )
            async with await ProtocolClient.connect(gateway.ws_url) as publisher:
                texts = ["one\ntwo", "three", "four"]
                batch = "\n".join(
                    orjson.dumps({"op": "publish", "channel": "plain", "data": t}).decode()
                    for t in texts
                )
                await publisher.send(batch)
                frames = [await asyncio.wait_for(plain.recv(), 5) for _ in texts]
        assert frames == texts
