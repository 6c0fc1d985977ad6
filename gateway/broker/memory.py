"""The in-process broker: one replica, nothing shared. The reference implementation.

What expires in Redis expires here too, and is freed even if nobody asks for it again: a
channel's history ``history_ttl`` seconds after its last publication, a channel's presence
twice ``presence_ttl`` after its last write, a replica's registry entry after its TTL, an
idempotency key ``idempotency_window`` seconds after it was accepted. A
`Deadlines` queue knows which of them is due next, so freeing costs nothing per publication
beyond a dictionary look-up; a sweeper task frees what is due every `SWEEP_SECONDS`.

Freed is not yet given back: glibc's allocator keeps the freed pages of its heap unless they
are at its very end, so the process would stay as large as at its peak. After a sweep that
freed at least `RETURN_BYTES` of messages, the sweeper asks the allocator to return its
free pages to the system (``malloc_trim``, where the C library has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.broker.base import Broker, BrokerHandler, HistoryPage, HistoryPolicy
from gateway.wire import protocol
from gateway.wire.channels import CONTROL_CHANNEL
from gateway.wire.envelope import envelope, new_epoch, now_us
from gateway.wire.errors import GatewayError, unavailable
from gateway.wire.protocol import StreamPosition

SWEEP_SECONDS = 1.0
"""How often the sweeper frees what expired (in real time, whatever the broker's clock)."""
RETURN_BYTES = 1 << 20
"""Message bytes a sweep must free before free memory is handed back to the system."""


class Deadlines:
    """When each key must be looked at again, soonest first.

    `due` hands out the keys whose time came without looking at the others. A key is held
    once: scheduling it later than it already is does nothing (whoever looks at it then
    schedules it again if it is still alive), earlier moves it forward.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._at: dict[str, float] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def schedule(self, key: str, at: float) -> None:
        """Look at ``key`` again no later than ``at``."""
        current = self._at.get(key)
        if current is not None and current <= at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, next(self._order), key))

    def due(self, now: float) -> list[str]:
        """The keys whose time is ``now`` or past, each once; they are no longer held."""
        keys = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._at.get(key) == at:
                del self._at[key]
                keys.append(key)
        return keys


@dataclass
class _Stream:
    epoch: str
    top: int = 0
    expires_at: float = float("inf")
    messages: deque[tuple[int, bytes]] = field(default_factory=deque)


@dataclass
class _Presence:
    members: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    expires_at: float = float("inf")
    """When the whole channel's presence is dropped (as Redis expires its keys)."""


class MemoryBroker:
    """Delivers each publication synchronously to this process's subscribed channels."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sweep_seconds: float = SWEEP_SECONDS,
        idempotency_window: float = 300.0,
    ) -> None:
        self._clock = clock
        self._window = idempotency_window
        self._once: dict[tuple[str, str], tuple[StreamPosition | None, float]] = {}
        """Idempotency keys accepted within the window: ``(channel, key) -> (position,
        expiry)``. Every key lives the same window, so insertion order is expiry order."""
        self._sweep_seconds = sweep_seconds
        self._handler: BrokerHandler | None = None
        self._channels: set[str] = set()
        self._streams: dict[str, _Stream] = {}
        self._presence: dict[str, _Presence] = {}
        self._nodes: dict[str, tuple[bytes, float]] = {}
        self._stream_deadlines = Deadlines()
        self._presence_deadlines = Deadlines()
        self._node_deadlines = Deadlines()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def accepting(self) -> bool:
        return self._handler is not None

    @property
    def listening(self) -> bool:
        return self._handler is not None

    @property
    def ready(self) -> bool:
        return self._handler is not None

    @property
    def reconnects(self) -> int:
        """Always 0: nothing here can drop."""
        return 0

    @property
    def channels(self) -> frozenset[str]:
        """Channels currently held (what Redis would list in ``PUBSUB CHANNELS``)."""
        return frozenset(self._channels)

    @property
    def retained(self) -> tuple[int, int, int]:
        """What is kept in memory now: channels with history, channels with presence,
        registry entries."""
        return len(self._streams), len(self._presence), len(self._nodes)

    @property
    def idempotency_keys(self) -> int:
        """Idempotency keys kept now (each for the idempotency window)."""
        return len(self._once)

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._sweeper = asyncio.create_task(self._sweep(), name="memory-broker-expiry")

    async def close(self) -> None:
        self._handler = None
        self._channels.clear()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    def expire(self) -> int:
        """Free every history, presence and registry entry whose time ran out; the message
        bytes freed."""
        now = self._clock()
        return (
            self._forget_keys(now)
            + _free_expired(self._stream_deadlines, self._streams, _stream_size, now)
            + _free_expired(self._presence_deadlines, self._presence, _presence_size, now)
            + _free_expired(self._node_deadlines, self._nodes, _node_size, now)
        )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            if self.expire() >= RETURN_BYTES:
                _return_free_memory()

    async def subscribe(self, channel: str) -> None:
        self._check()
        self._channels.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(
        self,
        channel: str,
        head: bytes,
        history: HistoryPolicy | None,
        *,
        idempotency_key: str | None = None,
    ) -> StreamPosition | None:
        return self._publish(channel, head, history, idempotency_key)

    def _publish(
        self, channel: str, head: bytes, history: HistoryPolicy | None, once: str | None = None
    ) -> StreamPosition | None:
        handler = self._check()
        if once is not None:
            now = self._clock()
            self._forget_keys(now)
            seen = self._once.get((channel, once))
            if seen is not None:
                return seen[0]
            position = self._deliver(handler, channel, head, history)
            self._once[channel, once] = (position, now + self._window)
            return position
        return self._deliver(handler, channel, head, history)

    def _forget_keys(self, now: float) -> int:
        """Drop the idempotency keys whose window ended; the bytes freed (roughly)."""
        once = self._once
        freed = 0
        while once:
            first = next(iter(once))
            if once[first][1] > now:
                break
            del once[first]
            freed += len(first[0]) + len(first[1])
        return freed

    def _deliver(
        self, handler: BrokerHandler, channel: str, head: bytes, history: HistoryPolicy | None
    ) -> StreamPosition | None:
        position = None
        if history is not None:
            stream = self._stream(channel, history)
            stream.top += 1
            position = StreamPosition(stream.top, stream.epoch)
            frame = protocol.close_message(head, position)
            stream.messages.append((stream.top, frame))
            while len(stream.messages) > history.size:
                stream.messages.popleft()
            stream.expires_at = self._clock() + history.ttl
        else:
            frame = protocol.close_message(head)
        if channel in self._channels:
            if channel == CONTROL_CHANNEL:
                handler.on_control(envelope(frame, None, now_us()))
            else:
                handler.on_publication(channel, envelope(frame, position, now_us()))
        return position

    def publish_later(
        self,
        channel: str,
        head: bytes,
        history: HistoryPolicy | None,
        *,
        idempotency_key: str | None = None,
    ) -> asyncio.Future[StreamPosition | None]:
        future: asyncio.Future[StreamPosition | None] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self._publish(channel, head, history, idempotency_key))
        except GatewayError as error:
            future.set_exception(error)
        return future

    async def read_history(
        self,
        channel: str,
        history: HistoryPolicy,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        self._check()
        stream = self._stream(channel, history)
        retained = list(stream.messages)
        first = retained[0][0] if retained else stream.top + 1
        if after is not None:
            chosen = [item for item in retained if item[0] > after]
            chosen = chosen if limit is None else chosen[:limit]
        else:
            chosen = retained[-limit:] if limit else []
        return HistoryPage(stream.epoch, stream.top, first, chosen)

    async def remove_history(self, channel: str) -> None:
        self._check()
        stream = self._streams.get(channel)
        if stream is not None:
            stream.messages.clear()

    async def presence_add(self, channel: str, client: str, entry: bytes, ttl: float) -> None:
        self._check()
        self._present(channel, ttl).members[client] = (entry, self._clock() + ttl)

    async def presence_remove(self, channel: str, client: str) -> None:
        self._check()
        presence = self._presence.get(channel)
        if presence is not None:
            presence.members.pop(client, None)
            if not presence.members:
                del self._presence[channel]

    async def presence_refresh(self, members: list[tuple[str, str, bytes]], ttl: float) -> None:
        self._check()
        expires_at = self._clock() + ttl
        for channel, client, entry in members:
            self._present(channel, ttl).members[client] = (entry, expires_at)

    def _present(self, channel: str, ttl: float) -> _Presence:
        """The channel's presence, kept for twice ``ttl`` from now (as in Redis)."""
        presence = self._presence.get(channel)
        if presence is None:
            presence = self._presence[channel] = _Presence()
        presence.expires_at = self._clock() + 2 * ttl
        self._presence_deadlines.schedule(channel, presence.expires_at)
        return presence

    async def presence(self, channel: str) -> tuple[dict[str, bytes], list[tuple[str, bytes]]]:
        self._check()
        now = self._clock()
        presence = self._presence.get(channel)
        entries = presence.members if presence is not None else {}
        expired = [(client, entry) for client, (entry, until) in entries.items() if until <= now]
        for client, _ in expired:
            del entries[client]
        return {client: entry for client, (entry, _) in entries.items()}, expired

    def _check(self) -> BrokerHandler:
        if self._handler is None:
            raise unavailable("the broker is closed")
        return self._handler

    def _stream(self, channel: str, history: HistoryPolicy) -> _Stream:
        """The channel's stream; a new epoch when there was none or it expired."""
        stream = self._streams.get(channel)
        if stream is None or stream.expires_at <= self._clock():
            stream = self._streams[channel] = _Stream(new_epoch())
            stream.expires_at = self._clock() + history.ttl
            self._stream_deadlines.schedule(channel, stream.expires_at)
        return stream

    async def register_node(self, node: str, state: bytes, ttl: float) -> None:
        self._check()
        self._nodes[node] = (state, self._clock() + ttl)
        self._node_deadlines.schedule(node, self._nodes[node][1])

    async def unregister_node(self, node: str) -> None:
        self._nodes.pop(node, None)

    async def nodes(self) -> dict[str, bytes]:
        self._check()
        now = self._clock()
        for node in [node for node, (_, expiry) in self._nodes.items() if expiry <= now]:
            del self._nodes[node]
        return {node: state for node, (state, _) in self._nodes.items()}


_: type[Broker] = MemoryBroker


Entry = TypeVar("Entry")


def _free_expired(
    deadlines: Deadlines,
    entries: dict[str, Entry],
    expiry_and_size: Callable[[Entry], tuple[float, int]],
    now: float,
) -> int:
    """Drop the due entries that expired, and look again later at those that lived on;
    the bytes freed."""
    freed = 0
    for name in deadlines.due(now):
        entry = entries.get(name)
        if entry is None:
            continue
        expires_at, size = expiry_and_size(entry)
        if expires_at <= now:
            del entries[name]
            freed += size
        else:
            deadlines.schedule(name, expires_at)
    return freed


def _stream_size(stream: _Stream) -> tuple[float, int]:
    return stream.expires_at, sum(len(frame) for _, frame in stream.messages)


def _presence_size(presence: _Presence) -> tuple[float, int]:
    return presence.expires_at, sum(len(entry) for entry, _ in presence.members.values())


def _node_size(node: tuple[bytes, float]) -> tuple[float, int]:
    return node[1], len(node[0])


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or None where there is none."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def _return_free_memory() -> None:
    """Hand the allocator's free pages back to the system, where the C library can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
