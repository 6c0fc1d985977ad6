from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateway.core.frames import Outgoing, text_frame
from gateway.core.outbox import MAX_BATCH_BYTES, Outbox
from gateway.core.passes import LoopPasses


class FakeSink:
    """A socket that can be made to refuse direct writes, like a paused transport."""

    def __init__(self) -> None:
        self.accepting = True
        self.frames: list[bytes] = []
        self.sent: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()

    def try_write(self, frame: bytes) -> bool:
        if not self.accepting:
            return False
        self.frames.append(frame)
        return True

    def payloads(self) -> list[bytes]:
        """What the written frames carried (each one a complete frame)."""
        return [bytes(parse_frame(frame).data) for frame in self.frames]

    async def send(self, payload: bytes, binary: bool = False) -> None:
        await self.writable.wait()
        self.sent.append(payload)

    async def close(self, final: bytes, code: int, reason: str) -> None:
        self.sent.append(final)


def parse_frame(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frame_is_a_valid_websocket_frame(size: int) -> None:
    payload = b"x" * size
    frame = parse_frame(text_frame(payload))
    assert frame.opcode is Opcode.TEXT and frame.fin and bytes(frame.data) == payload


async def test_a_frame_goes_to_the_socket_at_the_end_of_the_pass_as_built() -> None:
    sink = FakeSink()
    outbox = Outbox(sink, limit=4, passes=LoopPasses())
    message = Outgoing(b'{"op":"message"}')
    assert outbox.offer(message)
    assert sink.frames == [] and len(outbox) == 1
    await next_pass()
    assert len(sink.frames) == 1 and len(outbox) == 0
    assert sink.frames[0] is message.frame, "the frame built once for every subscriber"


async def test_backlog_leaves_as_one_ndjson_frame() -> None:
    sink = FakeSink()
    sink.accepting = False
    sink.writable.clear()
    outbox = Outbox(sink, limit=10, passes=LoopPasses())
    for index in range(3):
        assert outbox.offer(Outgoing(b'{"n":%d}' % index))
    await next_pass()
    sink.accepting = True
    assert outbox.offer(Outgoing(b'{"n":3}'))
    await next_pass()
    assert sink.frames == [], "a later pass must not overtake the backlog"
    sink.writable.set()
    await outbox.flush()
    assert b"\n".join(sink.sent) == b'{"n":0}\n{"n":1}\n{"n":2}\n{"n":3}'
    assert sink.sent[0].startswith(b'{"n":0}\n{"n":1}\n{"n":2}'), "the backlog left as one frame"


async def test_full_queue_refuses_without_blocking() -> None:
    sink = FakeSink()
    sink.accepting = False
    sink.writable.clear()
    outbox = Outbox(sink, limit=2, passes=LoopPasses())
    assert outbox.offer(Outgoing(b"1")) and outbox.offer(Outgoing(b"2"))
    assert not outbox.offer(Outgoing(b"3"))
    await outbox.close()


async def test_batches_are_capped_in_size() -> None:
    sink = FakeSink()
    sink.accepting = False
    sink.writable.clear()
    outbox = Outbox(sink, limit=100, passes=LoopPasses())
    chunk = b"x" * (MAX_BATCH_BYTES // 3)
    for _ in range(6):
        outbox.offer(Outgoing(chunk))
    sink.writable.set()
    await outbox.flush()
    assert len(sink.sent) >= 2
    assert all(len(frame) <= MAX_BATCH_BYTES for frame in sink.sent)
    assert b"\n".join(sink.sent) == b"\n".join([chunk] * 6)


async def test_close_drops_the_backlog_and_later_offers() -> None:
    sink = FakeSink()
    sink.accepting = False
    sink.writable.clear()
    outbox = Outbox(sink, limit=10, passes=LoopPasses())
    outbox.offer(Outgoing(b"queued"))
    await outbox.close()
    sink.writable.set()
    assert outbox.offer(Outgoing(b"late"))
    await asyncio.sleep(0)
    assert sink.sent == [] and len(outbox) == 0


async def next_pass() -> None:
    """Let the event loop finish the current pass (the end-of-pass callback runs)."""
    await asyncio.sleep(0)


async def test_a_burst_in_one_pass_leaves_as_one_write() -> None:
    sink = FakeSink()
    outbox = Outbox(sink, limit=100, passes=LoopPasses())
    for index in range(5):
        assert outbox.offer(Outgoing(b'{"n":%d}' % index))
    assert sink.frames == []
    await next_pass()
    assert sink.payloads() == [b'{"n":0}\n{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}']
    assert len(outbox) == 0


async def test_each_pass_writes_its_own() -> None:
    sink = FakeSink()
    outbox = Outbox(sink, limit=100, passes=LoopPasses())
    outbox.offer(Outgoing(b"{1}"))
    await next_pass()
    outbox.offer(Outgoing(b"{2}"))
    await next_pass()
    assert sink.payloads() == [b"{1}", b"{2}"]


async def test_a_flush_before_the_end_of_the_pass_writes_each_message_once() -> None:
    sink = FakeSink()
    outbox = Outbox(sink, limit=10, passes=LoopPasses())
    outbox.offer(Outgoing(b"{1}"))
    await outbox.flush()
    outbox.offer(Outgoing(b"{2}"))
    outbox.offer(Outgoing(b"{3}"))
    await outbox.flush()
    await next_pass()
    assert sink.payloads() == [b"{1}", b"{2}\n{3}"], "each written once, in order"


async def test_deferred_frames_wait_for_a_paused_socket() -> None:
    sink = FakeSink()
    sink.writable.clear()
    outbox = Outbox(sink, limit=100, passes=LoopPasses())
    outbox.offer(Outgoing(b"{1}"))
    outbox.offer(Outgoing(b"{2}"))
    sink.accepting = False
    await next_pass()
    assert sink.payloads() == [] and len(outbox) == 1, "the pass's batch waits, as one"
    sink.accepting = True
    sink.writable.set()
    await outbox.flush()
    assert sink.sent == [b"{1}\n{2}"]


async def test_deferred_frames_count_towards_the_limit() -> None:
    sink = FakeSink()
    outbox = Outbox(sink, limit=3, passes=LoopPasses())
    results = [outbox.offer(Outgoing(b"{%d}" % n)) for n in range(6)]
    assert results == [True, True, True, False, False, False]


def stalled_sink() -> FakeSink:
    """A socket that takes nothing: everything offered queues."""
    sink = FakeSink()
    sink.accepting = False
    sink.writable.clear()
    return sink


async def test_queued_bytes_are_bounded_beside_the_count() -> None:
    outbox = Outbox(stalled_sink(), limit=100, passes=LoopPasses(), byte_limit=1000)
    assert outbox.offer(Outgoing(b"x" * 600))
    assert outbox.offer(Outgoing(b"y" * 400))
    assert outbox.queued_bytes == 1000
    assert not outbox.offer(Outgoing(b"z")), "one byte over the limit is a slow consumer"
    await outbox.close()
    assert outbox.queued_bytes == 0


async def test_a_message_larger_than_the_byte_limit_may_wait_alone() -> None:
    outbox = Outbox(stalled_sink(), limit=100, passes=LoopPasses(), byte_limit=1000)
    assert outbox.offer(Outgoing(b"x" * 5000))
    assert not outbox.offer(Outgoing(b"y"))
    await outbox.close()


async def test_queued_bytes_are_released_as_the_writer_sends() -> None:
    sink = stalled_sink()
    outbox = Outbox(sink, limit=100, passes=LoopPasses(), byte_limit=10_000)
    for _ in range(5):
        outbox.offer(Outgoing(b"x" * 1000))
    assert outbox.queued_bytes == 5000
    sink.writable.set()
    await outbox.flush()
    assert outbox.queued_bytes == 0 and sink.sent == [b"\n".join([b"x" * 1000] * 5)]


async def test_deferred_frames_count_their_bytes_and_a_refused_batch_keeps_them() -> None:
    sink = FakeSink()
    outbox = Outbox(sink, limit=100, passes=LoopPasses(), byte_limit=10_000)
    for n in range(4):
        outbox.offer(Outgoing(b"%d" % n * 100))
    assert outbox.queued_bytes == 400, "all four wait for the end of the pass"
    sink.accepting = False
    await next_pass()
    assert outbox.queued_bytes == 403, "the four wait as one NDJSON batch, newlines included"
    sink.accepting = True
    await outbox.flush()
    assert outbox.queued_bytes == 0


async def test_without_batches_each_message_leaves_in_its_own_frame() -> None:
    sink = FakeSink()
    outbox = Outbox(sink, limit=100, passes=LoopPasses(), batches=False)
    for text in (b"one\ntwo", b"three", b"four"):
        assert outbox.offer(Outgoing(text))
    await next_pass()
    assert sink.payloads() == [b"one\ntwo", b"three", b"four"]
    sink.accepting = False
    sink.writable.clear()
    for text in (b"five", b"six"):
        outbox.offer(Outgoing(text))
    sink.writable.set()
    await outbox.flush()
    assert sink.sent == [b"five", b"six"]


async def test_crowded_past_half_of_either_limit() -> None:
    outbox = Outbox(stalled_sink(), limit=4, passes=LoopPasses(), byte_limit=1000)
    outbox.offer(Outgoing(b"x" * 500))
    assert not outbox.crowded
    outbox.offer(Outgoing(b"x"))
    assert outbox.crowded, "over half of the bytes"
    await outbox.close()
    outbox = Outbox(stalled_sink(), limit=4, passes=LoopPasses(), byte_limit=1000)
    for _ in range(3):
        outbox.offer(Outgoing(b"x"))
    assert outbox.crowded, "over half of the messages"
    await outbox.close()


async def test_room_returns_once_the_writer_brings_the_queue_below_half() -> None:
    sink = stalled_sink()
    outbox = Outbox(sink, limit=100, passes=LoopPasses(), byte_limit=MAX_BATCH_BYTES * 4)
    chunk = b"x" * (MAX_BATCH_BYTES - 10)
    for _ in range(4):
        outbox.offer(Outgoing(chunk))
    room = asyncio.ensure_future(outbox.room())
    await asyncio.sleep(0)
    assert not room.done(), "a socket that takes nothing makes no room"
    sink.writable.set()
    await asyncio.wait_for(room, 1)
    assert not outbox.crowded


async def test_room_waits_until_closed_for_a_peer_that_never_reads() -> None:
    outbox = Outbox(stalled_sink(), limit=100, passes=LoopPasses(), byte_limit=MAX_BATCH_BYTES * 4)
    for _ in range(4):
        outbox.offer(Outgoing(b"x" * (MAX_BATCH_BYTES - 10)))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(outbox.room(), 0.05)
    room = asyncio.ensure_future(outbox.room())
    await outbox.close()
    await asyncio.wait_for(room, 1)
