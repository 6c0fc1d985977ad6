"""One contract, two brokers: memory (the reference) and Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from gateway.broker.base import Broker, HistoryPolicy
from gateway.broker.memory import MemoryBroker
from gateway.broker.redis import RedisBroker
from gateway.wire import protocol
from gateway.wire.envelope import parse_envelope
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.protocol import StreamPosition
from tests.support.net import wait_until
from tests.support.redis_server import RedisServer


def head(frame: bytes) -> bytes:
    """A frame as `Broker.publish` takes it: without its closing brace."""
    assert frame.endswith(b"}")
    return frame[:-1]


class Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.envelopes: list[bytes] = []
        self.arrived = asyncio.Event()
        self.reconnections = 0
        self.controls: list[bytes] = []

    def on_publication(self, channel: str, envelope: bytes) -> None:
        self.envelopes.append(envelope)
        self.received.append((channel, parse_envelope(envelope)[3]))
        self.arrived.set()

    def on_control(self, envelope: bytes) -> None:
        self.controls.append(parse_envelope(envelope)[3])
        self.arrived.set()

    def on_reconnected(self) -> None:
        self.reconnections += 1

    async def wait_for(self, count: int) -> None:
        await wait_until(lambda: len(self.received) >= count, 5, f"{count} publications")


@pytest.fixture(params=["memory", "redis"])
async def broker(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[Broker, Recorder]]:
    recorder = Recorder()
    instance: Broker
    if request.param == "memory":
        instance = MemoryBroker()
    else:
        instance = RedisBroker(redis_server.url, prefix=f"t{id(recorder)}")
    await instance.start(recorder)
    await wait_until(lambda: instance.ready, 5, "broker ready")
    yield instance, recorder
    await instance.close()


async def test_subscriber_receives_publications(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    await instance.subscribe("chat:1")
    await instance.publish("chat:1", head(b'{"n":1}'), None)
    await instance.publish("chat:2", head(b'{"n":2}'), None)
    await instance.publish("chat:1", head(b'{"n":3}'), None)
    await recorder.wait_for(2)
    assert recorder.received == [("chat:1", b'{"n":1}'), ("chat:1", b'{"n":3}')]


async def test_unsubscribed_channel_is_silent(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    await instance.subscribe("a")
    await instance.subscribe("b")
    instance.unsubscribe("a")
    await instance.publish("a", head(b'{"v":1}'), None)
    await instance.publish("b", head(b'{"v":2}'), None)
    await recorder.wait_for(1)
    assert recorder.received == [("b", b'{"v":2}')]


async def test_resubscribe_after_unsubscribe(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    for _ in range(20):
        await instance.subscribe("flip")
        instance.unsubscribe("flip")
    await instance.subscribe("flip")
    await instance.publish("flip", head(b'{"v":"x"}'), None)
    await recorder.wait_for(1)
    assert recorder.received == [("flip", b'{"v":"x"}')]


async def test_order_of_one_publisher_is_kept(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    await instance.subscribe("seq")
    for index in range(200):
        await instance.publish("seq", head(b'{"v":%d}' % index), None)
    await recorder.wait_for(200)
    assert [frame for _, frame in recorder.received] == [b'{"v":%d}' % i for i in range(200)]


async def test_closed_broker_refuses_publishes(broker: tuple[Broker, Recorder]) -> None:
    instance, _ = broker
    await instance.close()
    with pytest.raises(GatewayError) as refused:
        await instance.publish("x", head(b'{"v":1}'), None)
    assert refused.value.code is ErrorCode.UNAVAILABLE


POLICY = HistoryPolicy(size=5, ttl=60)


def message_head(n: int) -> bytes:
    return protocol.message_head("h", n, "client", None)


async def test_offsets_are_consecutive_and_stored(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    channel = f"hist:{id(recorder)}"
    await instance.subscribe(channel)
    positions = [await instance.publish(channel, message_head(n), POLICY) for n in range(3)]
    assert [p.offset for p in positions if p] == [1, 2, 3]
    assert len({p.epoch for p in positions if p}) == 1
    await recorder.wait_for(3)
    for envelope, position in zip(recorder.envelopes, positions, strict=True):
        offset, epoch, published_at, frame = parse_envelope(envelope)
        assert published_at > 0
        assert position == StreamPosition(offset, epoch)
        decoded = orjson.loads(frame)
        assert decoded["offset"] == offset and decoded["epoch"] == epoch
    page = await instance.read_history(channel, POLICY, after=1)
    assert [offset for offset, _ in page.messages] == [2, 3]
    assert [orjson.loads(frame)["data"] for _, frame in page.messages] == [1, 2]
    assert page.top == 3 and page.first == 1


async def test_removed_history_keeps_the_epoch_and_offsets(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    channel = f"removed:{id(recorder)}"
    positions = [await instance.publish(channel, message_head(n), POLICY) for n in range(3)]
    epoch = positions[0].epoch if positions[0] else None
    await instance.remove_history(channel)
    page = await instance.read_history(channel, POLICY, after=1)
    assert (page.epoch, page.top, page.messages) == (epoch, 3, [])
    assert page.first == 4, "a recovery from offset 1 must learn that 2 and 3 are gone"
    assert await instance.publish(channel, message_head(3), POLICY) == StreamPosition(4, epoch)
    page = await instance.read_history(channel, POLICY, after=0)
    assert [offset for offset, _ in page.messages] == [4]
    await instance.remove_history(f"never-used:{id(recorder)}")


async def test_history_keeps_the_newest_size_messages(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    channel = f"trim:{id(recorder)}"
    for n in range(12):
        await instance.publish(channel, message_head(n), POLICY)
    newest = await instance.read_history(channel, POLICY, limit=3)
    assert [offset for offset, _ in newest.messages] == [10, 11, 12]
    everything = await instance.read_history(channel, POLICY, after=0)
    assert [offset for offset, _ in everything.messages] == [8, 9, 10, 11, 12]
    assert everything.first == 8 and everything.top == 12
    limited = await instance.read_history(channel, POLICY, after=8, limit=2)
    assert [offset for offset, _ in limited.messages] == [9, 10]
    assert (await instance.read_history(channel, POLICY)).messages == []


async def test_empty_channel_gets_an_epoch_its_first_message_keeps(
    broker: tuple[Broker, Recorder],
) -> None:
    instance, recorder = broker
    channel = f"fresh:{id(recorder)}"
    page = await instance.read_history(channel, POLICY, limit=0)
    assert page.top == 0 and page.first == 1 and page.epoch
    position = await instance.publish(channel, message_head(1), POLICY)
    assert position == StreamPosition(1, page.epoch)


async def test_expired_history_starts_a_new_epoch(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    channel = f"ttl:{id(recorder)}"
    short = HistoryPolicy(size=5, ttl=0.2)
    first = await instance.publish(channel, message_head(1), short)
    assert first is not None

    async def epoch_changed() -> bool:
        page = await instance.read_history(channel, short, limit=0)
        return page.epoch != first.epoch and page.top == 0

    await wait_until(epoch_changed, 5, "the history to expire")


async def test_presence_lists_adds_and_drops_removed_and_expired(
    broker: tuple[Broker, Recorder],
) -> None:
    instance, recorder = broker
    channel = f"who:{id(recorder)}"
    await instance.presence_add(channel, "c1", b'{"user":"ann","info":null}', 60)
    await instance.presence_add(channel, "c2", b'{"user":"bob","info":{"a":1}}', 0.2)
    entries, expired = await instance.presence(channel)
    assert set(entries) == {"c1", "c2"} and expired == []
    await instance.presence_remove(channel, "c1")

    async def c2_expired() -> bool:
        entries, expired = await instance.presence(channel)
        return not entries and expired == [("c2", b'{"user":"bob","info":{"a":1}}')]

    await wait_until(c2_expired, 5, "c2 to expire")


async def test_presence_refresh_keeps_entries_alive(broker: tuple[Broker, Recorder]) -> None:
    instance, recorder = broker
    channel = f"alive:{id(recorder)}"
    entry = b'{"user":"ann","info":null}'
    await instance.presence_add(channel, "c1", entry, 0.3)
    await instance.presence_refresh([(channel, "c1", entry)], 60)
    await instance.presence_add(channel, "c2", entry, 0.3)

    async def only_c1() -> bool:
        entries, _ = await instance.presence(channel)
        return set(entries) == {"c1"}

    await wait_until(only_c1, 5, "c2 to expire while c1 stays")


@pytest.mark.parametrize("after", [2**63 - 1, 2**63, 2**70, -5])
async def test_a_read_after_an_offset_out_of_range_is_answered(
    broker: tuple[Broker, Recorder], after: int
) -> None:
    instance, _ = broker
    policy = HistoryPolicy(size=10, ttl=60)
    await instance.publish("range:1", head(b'{"n":1}'), policy)
    page = await instance.read_history("range:1", policy, after=after)
    assert page.top == 1
    assert [offset for offset, _ in page.messages] == ([1] if after < 0 else [])
