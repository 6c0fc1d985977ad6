"""``GET /sse`` as ``gateway serve`` serves it, with its direct chunk writes: a burst fanned
out in one loop pass leaves as clean event-stream lines whose ids follow every message, for
streams of one channel (which share each message's event) and of several."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from gateway.wire.sse import decode_positions
from tests.support.client import ProtocolClient
from tests.support.gateways import GatewayProcess
from tests.support.sse import sse_url

pytestmark = pytest.mark.timeout(60)

BURST = 60
FIELDS = ("id: ", "data: ", "retry: ", ": ")


@pytest.fixture(scope="module")
def replica() -> Iterator[GatewayProcess]:
    process = GatewayProcess("sse-direct", rate=0).start()
    yield process
    process.kill()


async def lines_until(lines: AsyncIterator[str], seen: list[str], text: str, count: int) -> None:
    while sum(text in line for line in seen) < count:
        seen.append(await anext(lines))


def events(seen: list[str]) -> list[tuple[str, dict[str, object]]]:
    """Each event's id and frame (an event is an ``id:`` line and a ``data:`` line)."""
    found, last_id = [], ""
    for line in seen:
        if line.startswith("id: "):
            last_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            found.append((last_id, orjson.loads(line.removeprefix("data: "))))
    return found


async def burst(replica: GatewayProcess, channels: list[str]) -> None:
    """``BURST`` publications in one NDJSON frame, round robin over ``channels``."""
    async with await ProtocolClient.connect(replica.ws_url) as publisher:
        await publisher.send(
            "\n".join(
                orjson.dumps(
                    {"op": "publish", "id": n, "channel": channels[n % len(channels)], "data": n}
                ).decode()
                for n in range(BURST)
            )
        )
        await publisher.expect(lambda f: f.get("op") == "published" and f["id"] == BURST - 1)


@pytest.mark.parametrize("channels", [["one:a"], ["two:a", "two:b", "two:c"]])
async def test_a_burst_leaves_as_clean_lines_whose_ids_follow_every_message(
    replica: GatewayProcess, channels: list[str]
) -> None:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http,
        http.stream("GET", sse_url(replica.http_url, channels)) as first,
        http.stream("GET", sse_url(replica.http_url, channels)) as second,
    ):
        streams = [(first.aiter_lines(), []), (second.aiter_lines(), [])]
        for lines, seen in streams:
            await lines_until(lines, seen, '"op":"subscribed"', len(channels))
        await burst(replica, channels)
        for lines, seen in streams:
            await lines_until(lines, seen, '"op":"message"', BURST)
    results = []
    for _, seen in streams:
        assert all(line == "" or line.startswith(FIELDS) for line in seen), seen[:20]
        messages = [(i, frame) for i, frame in events(seen) if frame["op"] == "message"]
        assert [frame["data"] for _, frame in messages] == list(range(BURST))
        for identifier, frame in messages:
            positions = decode_positions(identifier, len(channels))
            assert positions is not None, identifier
            mine = positions[channels.index(str(frame["channel"]))]
            assert mine is not None
            assert (mine.offset, mine.epoch) == (frame["offset"], frame["epoch"])
        last = decode_positions(messages[-1][0], len(channels))
        assert last is not None
        assert [p.offset if p else None for p in last] == [
            len(range(index, BURST, len(channels))) for index in range(len(channels))
        ]
        results.append([identifier for identifier, _ in messages])
    assert results[0] == results[1], "two streams of the same channels see the same ids"
