"""A hostile client against real replicas: every limit of docs/security.md's "Limits that
hold against a hostile client" holds, in bytes and in time, and a well-behaved neighbour
on the same replica misses nothing.

The attacker is a bare socket that completes the WebSocket handshake with a small
receive buffer and then never reads (`tests.support.raw_ws`). The replicas ping every
`PING` seconds, so that the time bounds (a few ping intervals) stay short.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until
from tests.support.raw_ws import RawWebSocket, rss_bytes, server_side_open
from tests.support.redis_server import RedisServer

PING = 1.0
BIG = 60 * 1024
"""Bytes of `data` in each message of the big history (the report's 60 KiB)."""
BIG_CHANNEL = "big:history"
RSS_BOUND = 64 * 2**20
"""How much one attacker may raise the replica's resident memory (docs/security.md)."""
API_KEY = "abuse-key"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def command(op: str, **fields: Any) -> str:
    return orjson.dumps({"op": op, **fields}).decode()


async def scrape(replica: GatewayProcess) -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"{replica.http_url}/metrics")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def slow_consumers(replica: GatewayProcess) -> float:
    return value(await scrape(replica), "gateway_slow_consumers_total")


async def connections(replica: GatewayProcess) -> float:
    return value(await scrape(replica), "gateway_connections")


async def subscriptions(replica: GatewayProcess) -> float:
    return value(await scrape(replica), "gateway_subscriptions")


async def api_history(
    replica: GatewayProcess, channel: str, offset: int, epoch: str
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(
            f"{replica.http_url}/api/history/{channel}",
            params={"since": str(offset), "epoch": epoch},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )


def publish_nested(command_id: int, channel: str, depth: int) -> str:
    """A `publish` whose `data` is ``depth`` nested arrays (written by hand: encoders
    refuse such depths)."""
    data = "[" * depth + "]" * depth
    return f'{{"op":"publish","id":{command_id},"channel":"{channel}","data":{data}}}'


def with_since(op: str, command_id: str, channel: str, offset: int, epoch: str) -> str:
    """A command whose ``since.offset`` may be any integer (encoders stop at 64 bits)."""
    since = f'{{"offset":{offset},"epoch":"{epoch}"}}'
    return f'{{"op":"{op}","id":"{command_id}","channel":"{channel}","since":{since}}}'


def kernel_send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to here (``tcp_wmem``'s maximum)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
        return int(limits.read().split()[2])


async def publish_big(client: ProtocolClient, channel: str, count: int) -> None:
    """Publish ``count`` messages of `BIG` bytes (one a frame: a frame is at most 64 KiB)."""
    blob = "x" * BIG
    for n in range(count):
        await client.send(command("publish", id=n, channel=channel, data={"n": n, "blob": blob}))
    for n in range(count):
        reply = await client.expect(lambda f, n=n: f.get("id") == n)
        assert reply["op"] == "published", reply


@pytest.fixture(scope="module")
def replica() -> Iterator[GatewayProcess]:
    """A replica on the memory broker with default limits, pinging every `PING` s; the
    command rate is not limited, so that the load generators can be quick."""
    process = GatewayProcess("abuse", ping_seconds=PING, rate=0).start()
    yield process
    process.kill()


@pytest.fixture(scope="module")
def big_history(replica: GatewayProcess) -> str:
    """`BIG_CHANNEL` holding 100 messages of 60 KiB (6 MB): what one `history` matches."""

    async def fill() -> None:
        async with await ProtocolClient.connect(replica.ws_url) as loader:
            await publish_big(loader, BIG_CHANNEL, 100)

    asyncio.run(fill())
    return BIG_CHANNEL


@pytest.fixture
async def neighbour(replica: GatewayProcess) -> AsyncIterator[ProtocolClient]:
    async with await ProtocolClient.connect(replica.ws_url) as client:
        yield client


def flood_history(attacker: RawWebSocket, channel: str, stop: threading.Event) -> int:
    """`history` 50 times a second, at most 500 times, never reading a reply."""
    for sent in range(500):
        if stop.is_set() or not attacker.send_text(command("history", id=sent, channel=channel)):
            return sent
        stop.wait(0.02)
    return 500


async def test_a_history_flood_that_is_never_read_is_dropped_in_bounded_memory(
    replica: GatewayProcess, big_history: str, neighbour: ProtocolClient
) -> None:
    assert replica.process is not None
    pid = replica.process.pid
    await neighbour.subscribe("steady:flood")
    slow_before = await slow_consumers(replica)
    async with await ProtocolClient.connect(replica.ws_url) as writer:
        base = rss_bytes(pid)
        attacker = RawWebSocket.connect(replica.port)
        stop = threading.Event()
        flood = asyncio.create_task(asyncio.to_thread(flood_history, attacker, big_history, stop))
        peak, published = base, 0
        deadline = time.monotonic() + 12
        try:
            while time.monotonic() < deadline:
                await writer.publish("steady:flood", published)
                published += 1
                peak = max(peak, rss_bytes(pid))
                if peak - base > 4 * RSS_BOUND:
                    break  # the bound is broken already; stop before the host suffers
                if not server_side_open(replica.port, attacker.port):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            sent = await flood
        print(f"flood: {sent} history commands; RSS {base >> 20} -> peak {peak >> 20} MiB")
        assert peak - base < RSS_BOUND, f"RSS rose by {(peak - base) >> 20} MiB"
        assert not server_side_open(replica.port, attacker.port), "the attacker is still served"
        assert await slow_consumers(replica) - slow_before == 1
        attacker.close()
        received = await neighbour.messages(published, channel="steady:flood")
        assert [message["data"] for message in received] == list(range(published))


async def test_a_peer_that_stops_reading_is_aborted_within_three_ping_intervals(
    replica: GatewayProcess, big_history: str
) -> None:
    """Its pings go unanswered while a reply it never reads fills the socket's buffers:
    the connection and all it buffered are dropped, not kept for good."""
    opened = await connections(replica)
    attacker = RawWebSocket.connect(replica.port)

    async def attacker_counted() -> bool:
        return await connections(replica) == opened + 1

    async def attacker_gone() -> bool:
        return await connections(replica) == opened

    await wait_until(attacker_counted, 5, "the attacker's connection")
    assert attacker.send_text(command("history", id=1, channel=big_history))
    started = time.monotonic()
    try:
        await wait_until(
            lambda: not server_side_open(replica.port, attacker.port),
            3 * PING + 3,
            "the replica to abort the connection",
        )
    finally:
        attacker.close()
    assert time.monotonic() - started < 3 * PING + 3
    await wait_until(attacker_gone, 5, "the connection to be freed")


async def test_a_subscriber_that_stops_reading_is_closed_once_its_queue_passes_its_bytes(
    replica: GatewayProcess, neighbour: ProtocolClient
) -> None:
    """Some hundred messages of 60 KiB are far fewer than `max_queue` (1024) messages, but
    more than the kernel's socket buffers and `max_queue_bytes` (4 MiB) together: the
    subscriber that does not read gets 4008."""
    count = max(300, (kernel_send_buffer_max() + 8 * 2**20) // BIG)
    channel = "fan:big"
    await neighbour.subscribe(channel)
    slow_before = await slow_consumers(replica)
    subscribed = await subscriptions(replica)
    attacker = RawWebSocket.connect(replica.port)

    async def attacker_subscribed() -> bool:
        return await subscriptions(replica) == subscribed + 1

    async def attacker_closed() -> bool:
        return await slow_consumers(replica) - slow_before == 1

    try:
        assert attacker.send_text(command("subscribe", id=1, channel=channel))
        await wait_until(attacker_subscribed, 5, "the attacker's subscription")
        async with await ProtocolClient.connect(replica.ws_url) as publisher:
            await publish_big(publisher, channel, count)
        await wait_until(attacker_closed, 10, "the attacker's 4008")
        received = await neighbour.messages(count, channel=channel, timeout=30)
        assert [message["data"]["n"] for message in received] == list(range(count))
    finally:
        attacker.close()


async def test_data_too_deep_to_encode_is_bad_request_and_the_batch_goes_on(
    replica: GatewayProcess, neighbour: ProtocolClient
) -> None:
    channel = "deep:batch"
    await neighbour.subscribe(channel)
    async with await ProtocolClient.connect(replica.ws_url) as client:
        await client.send(publish_nested(0, channel, 254))
        alone = await client.expect(lambda f: f.get("id") == 0)
        assert alone["op"] == "error" and alone["code"] == "bad_request", alone
        batch = [
            command("publish", id=1, channel=channel, data=1),
            publish_nested(2, channel, 254),
            command("publish", id=3, channel=channel, data=3),
            command("ping", id=4),
            publish_nested(5, channel, 600),
            command("publish", id=6, channel=channel, data=6),
        ]
        await client.send("\n".join(batch))
        replies = [await client.expect(lambda f: "id" in f) for _ in batch]
        assert [(reply["id"], reply["op"]) for reply in replies] == [
            (1, "published"),
            (2, "error"),
            (3, "published"),
            (4, "pong"),
            (5, "error"),
            (6, "published"),
        ]
        assert {replies[1]["code"], replies[4]["code"]} == {"bad_request"}
        assert "253 levels" in replies[1]["message"]
        assert (await client.request("ping"))["op"] == "pong"
    received = await neighbour.messages(3, channel=channel)
    assert [message["data"] for message in received] == [1, 3, 6]
    assert "Traceback" not in replica.log.read_text()


async def test_each_message_is_its_own_frame_on_the_plain_text_endpoint(
    replica: GatewayProcess,
) -> None:
    channel = "plain:frames"
    subscribed = await subscriptions(replica)

    async def plain_subscribed() -> bool:
        return await subscriptions(replica) == subscribed + 1

    async with connect(f"{replica.plain_url}?channel={channel}") as plain:
        await wait_until(plain_subscribed, 5, "the plain-text client's subscription")
        async with await ProtocolClient.connect(replica.ws_url) as publisher:
            texts = ["one\ntwo", "three", "four", '{"five":5}']
            batch = [
                command("publish", id=n, channel=channel, data=text) for n, text in enumerate(texts)
            ]
            await publisher.send("\n".join(batch))
            frames = [await asyncio.wait_for(plain.recv(), 5) for _ in texts]
    assert frames == texts


@pytest.fixture(scope="module")
def redis_replica(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        "abuse-redis", redis_url=redis_server.url, redis_prefix="abuse", api_key=API_KEY
    ).start()
    yield process
    process.kill()


async def published_epoch(client: ProtocolClient, channel: str) -> str:
    """Publish once to ``channel``; its epoch."""
    await client.publish(channel, "first")
    return str((await client.request("history", channel=channel))["epoch"])


@pytest.mark.parametrize("offset", [2**63, 2**63 + 1, 2**64, 10**30])
async def test_offsets_from_2_63_are_bad_request_on_redis(
    redis_replica: GatewayProcess, offset: int
) -> None:
    channel = "offsets:huge"
    async with await ProtocolClient.connect(redis_replica.ws_url) as client:
        epoch = await published_epoch(client, channel)
        for op in ("history", "subscribe"):
            await client.send(with_since(op, op, channel, offset, epoch))
            reply = await client.expect(lambda f, op=op: f.get("id") == op)
            assert reply["op"] == "error" and reply["code"] == "bad_request", (op, reply)
    response = await api_history(redis_replica, channel, offset, epoch)
    assert response.status_code == 422 and "since" in response.text
    await assert_no_broker_error(redis_replica)


@pytest.mark.parametrize("offset", [2**53 + 1, 2**63 - 513, 2**63 - 512, 2**63 - 1])
async def test_offsets_below_2_63_beyond_the_channel_are_bad_request_on_redis(
    redis_replica: GatewayProcess, offset: int
) -> None:
    """Offsets that Redis' Lua cannot represent exactly (doubles above 2^53) included."""
    channel = "offsets:beyond"
    async with await ProtocolClient.connect(redis_replica.ws_url) as client:
        epoch = await published_epoch(client, channel)
        since = {"offset": offset, "epoch": epoch}
        reply = await client.request("history", channel=channel, since=since)
        assert reply["op"] == "error" and reply["code"] == "bad_request", reply
        assert "beyond the channel's latest offset" in reply["message"]
        subscribed = await client.subscribe(channel, since=since)
        assert subscribed["recovered"] is False
    response = await api_history(redis_replica, channel, offset, epoch)
    assert response.status_code == 400, response.text
    await assert_no_broker_error(redis_replica)


async def assert_no_broker_error(replica: GatewayProcess) -> None:
    samples = await scrape(replica)
    assert value(samples, "gateway_errors_total", code="unavailable") == 0
    for op in ("history", "subscribe"):
        assert value(samples, "gateway_commands_total", op=op, result="unavailable") == 0
    assert "history_failed" not in replica.log.read_text()
