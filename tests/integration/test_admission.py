"""Admission against real ``gateway serve`` processes: slow and half-open connections, the
connection limits per replica and per client address, and trusted proxies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.support.gateways import GatewayProcess
from tests.support.net import wait_until

OTHER_LOOPBACK = "127.0.0.2"
"""A second source address on this machine (all of 127.0.0.0/8 is loopback)."""
NOBODY = "192.0.2.1"
"""A proxy address no test connects from (TEST-NET-1): trusting it trusts no test client."""


@pytest.fixture
def replica() -> Iterator[Callable[..., GatewayProcess]]:
    """``replica(**settings)``: a started ``gateway serve`` on the memory broker."""
    started: list[GatewayProcess] = []

    def start(**settings: Any) -> GatewayProcess:
        process = GatewayProcess(f"admission-{len(started)}", **settings)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@contextlib.asynccontextmanager
async def raw(
    gateway: GatewayProcess, source: str = "127.0.0.1"
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gateway.port, local_addr=(source, 0)
    )
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def until_eof(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after ``timeout``."""
    return await asyncio.wait_for(reader.read(), timeout)


async def trickle(writer: asyncio.StreamWriter, every: float) -> None:
    """Slowloris: a request line, then one more header line every ``every`` seconds."""
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
    for line in range(10_000):
        await asyncio.sleep(every)
        try:
            writer.write(b"X-Slow-%d: x\r\n" % line)
            await writer.drain()
        except (ConnectionError, RuntimeError):
            return


async def half_open(gateway: GatewayProcess, count: int, source: str = "127.0.0.1") -> Any:
    """``count`` connections that sent the start of a handshake and nothing more."""
    stack = contextlib.AsyncExitStack()
    for _ in range(count):
        _, writer = await stack.enter_async_context(raw(gateway, source))
        writer.write(b"GET /ws HTTP/1.1\r\nHost: gateway\r\n")
        await writer.drain()
    return stack


async def handshake(
    gateway: GatewayProcess, *, forwarded_for: str | None = None, source: str = "127.0.0.1"
) -> ClientConnection:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await connect(
        gateway.ws_url, additional_headers=headers, local_addr=(source, 0), open_timeout=5
    )


async def refused(gateway: GatewayProcess, **options: Any) -> tuple[int, str]:
    """The status and body of a handshake the replica must refuse."""
    with pytest.raises(InvalidStatus) as caught:
        await handshake(gateway, **options)
    response = caught.value.response
    return response.status_code, response.body.decode()


async def admitted(gateway: GatewayProcess, **options: Any) -> bool:
    try:
        connection = await handshake(gateway, **options)
    except InvalidStatus:
        return False
    await connection.close()
    return True


# Slow requests


async def test_slowloris_and_silent_sockets_are_closed_at_the_handshake_timeout(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(handshake_timeout=1)
    async with raw(gateway) as (slow, slow_writer), raw(gateway) as (silent, _):
        started = time.monotonic()
        trickling = asyncio.create_task(trickle(slow_writer, every=0.1))
        answers = await asyncio.gather(until_eof(slow, 5), until_eof(silent, 5))
        elapsed = time.monotonic() - started
        trickling.cancel()
    assert 0.9 <= elapsed < 5
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"not complete within 1 s" in answer
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{gateway.http_url}/healthz")).status_code == 200


async def test_a_slow_request_body_is_closed_at_the_handshake_timeout(
    replica: Callable[..., GatewayProcess],
) -> None:
    """Headers on time, then a body that never ends: the application has the request, so
    the connection is only closed."""
    gateway = replica(handshake_timeout=1, api_key="k" * 32)
    async with raw(gateway) as (reader, writer):
        writer.write(
            b"POST /api/publish HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n"
            b"Content-Type: application/json\r\nAuthorization: Bearer " + b"k" * 32 + b"\r\n\r\n{"
        )
        await writer.drain()
        answer = await until_eof(reader, 5)
    assert b"408" not in answer


async def test_an_idle_kept_alive_connection_is_closed(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(handshake_timeout=1)
    async with raw(gateway) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        answer = await until_eof(reader, 3)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'"node":"admission-0"}')


async def test_a_slow_second_request_on_a_kept_alive_connection_is_closed(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(handshake_timeout=2)
    async with raw(gateway) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        first = await reader.readuntil(b'"node":"admission-0"}')
        started = time.monotonic()
        trickling = asyncio.create_task(trickle(writer, every=0.1))
        second = await until_eof(reader, 6)
        trickling.cancel()
    assert first.startswith(b"HTTP/1.1 200 ")
    assert second.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started >= 1.9


async def test_a_websocket_outlives_the_handshake_timeout(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(handshake_timeout=1)
    async with await handshake(gateway) as connection, raw(gateway) as (reader, _):
        await connection.recv()
        timed_out = await until_eof(reader, 5)
        assert timed_out.startswith(b"HTTP/1.1 408 "), "a connection opened with it timed out"
        await connection.send('{"op":"ping","id":1}')
        assert '"pong"' in str(await asyncio.wait_for(connection.recv(), 5))


# Limits per replica


async def test_half_open_connections_count_against_max_connections(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(max_connections=50, handshake_timeout=30)
    async with await half_open(gateway, 50):
        status, body = await refused(gateway)
        assert status == 503 and "replica full: 50 connections" in body
    await wait_until(lambda: admitted(gateway), 5, "a handshake once the half-open ones closed")


async def test_half_open_connections_free_their_place_at_the_handshake_timeout(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(max_connections=5, handshake_timeout=1)
    async with await half_open(gateway, 5):
        assert (await refused(gateway))[0] == 503
        await wait_until(lambda: admitted(gateway), 5, "the half-open ones to time out")


# Limits per client address


async def test_connections_per_address_over_the_limit_get_429(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(max_connections_per_ip=2, forwarded_allow_ips=NOBODY)
    first, second = await handshake(gateway), await handshake(gateway)
    status, body = await refused(gateway)
    assert status == 429 and body == "too many connections from 127.0.0.1: at most 2\n"
    assert await admitted(gateway, source=OTHER_LOOPBACK)
    await first.close()
    await wait_until(lambda: admitted(gateway), 5, "a place freed by the closed connection")
    await second.close()


async def test_half_open_connections_count_for_their_address(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(max_connections_per_ip=2, forwarded_allow_ips=NOBODY, handshake_timeout=30)
    async with await half_open(gateway, 2):
        assert (await refused(gateway))[0] == 429
        assert await admitted(gateway, source=OTHER_LOOPBACK)


async def test_one_address_cannot_fill_the_replica_with_half_open_connections(
    replica: Callable[..., GatewayProcess],
) -> None:
    """Past its own limit, an address's half-open connections take no place in the
    replica's: others still get in."""
    gateway = replica(
        max_connections=5, max_connections_per_ip=2, forwarded_allow_ips=NOBODY,
        handshake_timeout=30,
    )  # fmt: skip
    async with await half_open(gateway, 40):
        assert (await refused(gateway))[0] == 429
        assert await admitted(gateway, source=OTHER_LOOPBACK)


async def test_a_trusted_proxy_forwards_the_client_address(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(max_connections_per_ip=1)  # 127.0.0.1 is trusted by default
    alice = await handshake(gateway, forwarded_for="203.0.113.7")
    status, body = await refused(gateway, forwarded_for="203.0.113.7")
    assert status == 429 and "from 203.0.113.7" in body
    assert "handshake.refused status=429" in gateway.log.read_text()
    assert "client=203.0.113.7:" in gateway.log.read_text()
    assert await admitted(gateway, forwarded_for="203.0.113.8")
    assert await admitted(gateway, forwarded_for="198.51.100.1, 203.0.113.9")
    await alice.close()


async def test_an_untrusted_peer_cannot_choose_its_address(
    replica: Callable[..., GatewayProcess],
) -> None:
    gateway = replica(max_connections_per_ip=1, forwarded_allow_ips=NOBODY)
    first = await handshake(gateway, forwarded_for="203.0.113.7")
    status, body = await refused(gateway, forwarded_for="203.0.113.8")
    assert status == 429 and "from 127.0.0.1" in body
    await first.close()


async def test_trusted_proxies_by_network(replica: Callable[..., GatewayProcess]) -> None:
    gateway = replica(max_connections_per_ip=1, forwarded_allow_ips="127.0.0.0/8,10.0.0.0/8")
    first = await handshake(gateway, forwarded_for="203.0.113.7", source=OTHER_LOOPBACK)
    assert (await refused(gateway, forwarded_for="203.0.113.7"))[0] == 429
    assert await admitted(gateway, forwarded_for="203.0.113.8")
    await first.close()
