from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.broker.base import BrokerRoutes, HistoryPolicy
from gateway.broker.memory import MemoryBroker
from gateway.core.frames import Outgoing
from gateway.core.hub import Hub
from gateway.wire import protocol
from gateway.wire.envelope import envelope
from gateway.wire.errors import SLOW_CONSUMER, Disconnect, ErrorCode, GatewayError
from gateway.wire.protocol import StreamPosition
from tests.support.hub import subscribers as local_subscribers
from tests.support.net import wait_until


class FakeSubscriber:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self.received: list[bytes] = []
        self.closed: Disconnect | None = None

    def deliver(self, message: Outgoing) -> bool:
        if len(self.received) >= self.capacity:
            return False
        self.received.append(message.payload)
        return True

    def close(self, reason: Disconnect) -> None:
        self.closed = reason


class RecordingBroker(MemoryBroker):
    """The memory broker, counting subscribe calls that reach it and able to hold them."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribes: list[str] = []
        self.unsubscribes: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def subscribe(self, channel: str) -> None:
        if channel not in self.channels:
            self.subscribes.append(channel)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise GatewayError(ErrorCode.UNAVAILABLE, "down")
        await super().subscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        self.unsubscribes.append(channel)
        super().unsubscribe(channel)


@pytest.fixture
async def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
async def hub(broker: RecordingBroker) -> Hub:
    hub = Hub(broker)
    await broker.start(BrokerRoutes(hub.on_publication, lambda _: None, hub.on_reconnected))
    return hub


async def test_publication_reaches_every_local_subscriber(
    hub: Hub, broker: RecordingBroker
) -> None:
    subscribers = [FakeSubscriber() for _ in range(3)]
    for subscriber in subscribers:
        await hub.subscribe("chat", subscriber)
    hub.on_publication("chat", b'{"op":"message"}')
    assert all(s.received == [b'{"op":"message"}'] for s in subscribers)
    assert hub.delivered == 3


async def test_one_broker_subscription_per_channel(hub: Hub, broker: RecordingBroker) -> None:
    first, second = FakeSubscriber(), FakeSubscriber()
    await hub.subscribe("chat", first)
    await hub.subscribe("chat", second)
    assert broker.subscribes == ["chat"]
    hub.unsubscribe("chat", first)
    assert broker.unsubscribes == [] and local_subscribers(hub, "chat") == 1
    hub.unsubscribe("chat", second)
    assert broker.unsubscribes == ["chat"] and hub.channel_count == 0


async def test_subscribers_join_only_once_the_broker_confirms(
    hub: Hub, broker: RecordingBroker
) -> None:
    broker.gate = asyncio.Event()
    subscribers = [FakeSubscriber() for _ in range(5)]
    tasks = [asyncio.create_task(hub.subscribe("chat", s)) for s in subscribers]
    await asyncio.sleep(0)
    assert local_subscribers(hub, "chat") == 0 and hub.channel_count == 1
    hub.unsubscribe("chat", subscribers[0])
    assert broker.unsubscribes == [], "a channel with subscribers on their way is kept"
    broker.gate.set()
    await asyncio.gather(*tasks)
    assert local_subscribers(hub, "chat") == 5 and broker.channels == {"chat"}


async def test_failed_subscribe_leaves_nothing_behind(hub: Hub, broker: RecordingBroker) -> None:
    broker.fail = True
    with pytest.raises(GatewayError):
        await hub.subscribe("chat", FakeSubscriber())
    assert hub.channel_count == 0 and broker.unsubscribes == ["chat"]


async def test_slow_subscriber_is_closed_and_others_get_everything(
    hub: Hub, broker: RecordingBroker
) -> None:
    slow, fine = FakeSubscriber(capacity=2), FakeSubscriber()
    await hub.subscribe("chat", slow)
    await hub.subscribe("chat", fine)
    for index in range(5):
        hub.on_publication("chat", b"%d" % index)
    assert slow.closed is SLOW_CONSUMER
    assert fine.received == [b"0", b"1", b"2", b"3", b"4"] and fine.closed is None


async def test_publication_of_other_channels_is_ignored(hub: Hub, broker: RecordingBroker) -> None:
    subscriber = FakeSubscriber()
    await hub.subscribe("a", subscriber)
    hub.on_publication("b", b"x")
    assert subscriber.received == []


async def test_frame_is_built_once_for_all_subscribers(hub: Hub, broker: RecordingBroker) -> None:
    seen: list[Outgoing] = []

    class Spy(FakeSubscriber):
        def deliver(self, message: Outgoing) -> bool:
            seen.append(message)
            return True

    for _ in range(3):
        await hub.subscribe("chat", Spy())
    hub.on_publication("chat", b"{}")
    assert len({id(message) for message in seen}) == 1


# Continuity on channels with history.

POLICY = HistoryPolicy(size=100, ttl=60)


def offsets(subscriber: FakeSubscriber) -> list[int]:
    return [orjson.loads(payload)["offset"] for payload in subscriber.received]


async def publish(broker: MemoryBroker, channel: str, n: int) -> StreamPosition | None:
    head = protocol.message_head(channel, n, "c", None)
    return await broker.publish(channel, head, POLICY)


async def test_history_channel_position_is_known_at_join(hub: Hub, broker: RecordingBroker) -> None:
    for n in range(3):
        await publish(broker, "h", n)
    position = await hub.subscribe("h", FakeSubscriber(), POLICY)
    assert position is not None and position.offset == 3
    assert await hub.subscribe("h", FakeSubscriber(), POLICY) == position


async def test_duplicates_are_dropped(hub: Hub, broker: RecordingBroker) -> None:
    subscriber = FakeSubscriber()
    await hub.subscribe("h", subscriber, POLICY)
    position = await publish(broker, "h", 1)
    assert position is not None
    frame = subscriber.received[0]
    hub.on_publication("h", envelope(frame, position, 0))
    assert offsets(subscriber) == [1]


async def test_skipped_offsets_are_read_from_history_before_newer_ones(
    hub: Hub, broker: RecordingBroker
) -> None:
    subscriber = FakeSubscriber()
    await hub.subscribe("h", subscriber, POLICY)
    broker.unsubscribe("h")  # the replica stops hearing the channel: publications are missed
    for n in range(4):
        await publish(broker, "h", n)
    await broker.subscribe("h")
    await publish(broker, "h", 4)  # offset 5 arrives; 1-4 were missed
    await wait_until(lambda: len(subscriber.received) == 5, 5, "repair")
    assert offsets(subscriber) == [1, 2, 3, 4, 5]
    assert hub.repairs == 1


async def test_reconnection_repairs_every_history_channel(
    hub: Hub, broker: RecordingBroker
) -> None:
    subscriber = FakeSubscriber()
    await hub.subscribe("h", subscriber, POLICY)
    broker.unsubscribe("h")
    for n in range(3):
        await publish(broker, "h", n)
    await broker.subscribe("h")
    hub.on_reconnected()
    await wait_until(lambda: len(subscriber.received) == 3, 5, "repair after reconnect")
    assert offsets(subscriber) == [1, 2, 3]


async def test_new_epoch_is_followed_from_its_start(hub: Hub, broker: RecordingBroker) -> None:
    subscriber = FakeSubscriber()
    await hub.subscribe("h", subscriber, POLICY)
    await publish(broker, "h", 0)
    hub.on_publication("h", envelope(b'{"op":"message","n":"a"}', StreamPosition(1, "new"), 0))
    hub.on_publication("h", envelope(b'{"op":"message","n":"b"}', StreamPosition(2, "new"), 0))
    assert await hub.subscribe("h", FakeSubscriber(), POLICY) == StreamPosition(2, "new")
    assert len(subscriber.received) == 3


async def test_publications_during_seeding_are_held_then_released(
    hub: Hub, broker: RecordingBroker
) -> None:
    await publish(broker, "h", 0)
    broker.gate = asyncio.Event()
    subscriber = FakeSubscriber()
    joining = asyncio.create_task(hub.subscribe("h", subscriber, POLICY))
    await asyncio.sleep(0)
    broker.gate.set()
    position = await joining
    assert position is not None and position.offset == 1
    await publish(broker, "h", 1)
    assert offsets(subscriber) == [2]


async def test_activity_counts_each_publication_once_whatever_the_subscribers(
    hub: Hub, broker: RecordingBroker
) -> None:
    for subscriber in (FakeSubscriber(), FakeSubscriber(), FakeSubscriber()):
        await hub.subscribe("busy", subscriber)
    await hub.subscribe("quiet", FakeSubscriber())
    for _ in range(4):
        hub.on_publication("busy", b'{"op":"message"}')
    hub.on_publication("elsewhere", b'{"op":"message"}')
    assert sorted(hub.activity()) == [("busy", 3, 4), ("quiet", 1, 0)]
    assert hub.delivered == 12


async def test_activity_can_be_read_while_channels_come_and_go(hub: Hub) -> None:
    subscriber = FakeSubscriber()
    for channel in ("a", "b", "c"):
        await hub.subscribe(channel, subscriber)
    rows = hub.activity()
    first = next(rows)
    hub.unsubscribe("b", subscriber)
    await hub.subscribe("d", subscriber)
    assert [first, *rows] == [("a", 1, 0), ("c", 1, 0)]
