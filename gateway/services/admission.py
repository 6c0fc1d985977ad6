"""Whether a handshake may open a connection: its origin, the replica's readiness, and how
many connections the replica holds, and from which client addresses (`HandshakePolicy`
checks them in that order; `Admission` keeps the tally).

Two kinds of connection count against ``max_connections`` and ``max_connections_per_ip``:

- half-open ones: accepted by TCP, their HTTP request (a WebSocket handshake or any other)
  not complete yet. Under ``gateway serve``, `gateway.transport.http` reports them from
  accept until the request is complete, the connection closes or ``handshake_timeout``
  closes it. Before the headers arrive, only the TCP peer is known: a half-open
  connection counts under its peer's address, except when the peer is a trusted proxy
  (``forwarded_allow_ips``), whose connections carry many clients and count for no address.
  A connection from an address that already holds its limit is not counted at all (its
  handshake will be refused anyway), so that one address cannot fill the replica's
  ``max_connections`` with sockets that never finish their request.
- open WebSockets, reported by the replica for as long as it runs them, under the client
  address of the handshake: the TCP peer, or the ``X-Forwarded-For`` address a trusted
  proxy gave (uvicorn's proxy-headers middleware has put it in the ASGI scope).

A handshake is refused with 503 when the replica's open and half-open connections reach
``max_connections``, and with 429 when its client address holds
``max_connections_per_ip`` of them. Mounted into another application (no
``gateway serve``), only open WebSockets are counted: the host's server owns the sockets.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any

from gateway.security.origins import OriginPolicy
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake is refused: the HTTP status and the message of the response body."""

    status: int
    message: str


class TrustedProxies:
    """The peers whose ``X-Forwarded-For`` is believed: addresses, networks, or ``*``."""

    def __init__(self, entries: list[str]) -> None:
        self._everyone = "*" in entries
        self._networks = [ipaddress.ip_network(entry) for entry in entries if entry != "*"]
        self._verdicts: dict[str, bool] = {}
        """The answer for each peer asked recently: every connection asks at its accept and
        again at its handshake, and parsing an address and matching it to networks costs
        more than a connection's admission otherwise does."""

    def trust(self, host: str) -> bool:
        if self._everyone:
            return True
        if not self._networks:
            return False
        verdict = self._verdicts.get(host)
        if verdict is None:
            if len(self._verdicts) >= TRUST_CACHE_SIZE:
                self._verdicts.clear()
            verdict = self._verdicts[host] = self._matches(host)
        return verdict

    def _matches(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


TRUST_CACHE_SIZE = 4096
"""Peers whose trust is remembered; more start the memory afresh (bounded in size)."""


class HalfOpen:
    """One TCP connection's place in the half-open tally; `hold` and `release` toggle it.

    A connection kept alive between HTTP requests is half-open again from the first byte of
    its next request. One that was not counted when accepted never is.
    """

    __slots__ = ("_address", "_admission", "_counted", "held")

    def __init__(self, admission: Admission, address: str | None, counted: bool) -> None:
        self._admission = admission
        self._address = address
        self._counted = counted
        self.held = False

    def hold(self) -> None:
        if self._counted and not self.held:
            self.held = True
            self._admission.half_open += 1
            if self._address is not None:
                self._admission.half_open_at[self._address] += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self._admission.half_open -= 1
            if self._address is not None:
                _decrement(self._admission.half_open_at, self._address)


class Admission:
    """The connection tally of one replica and the handshake checks made against it."""

    def __init__(self, settings: Settings) -> None:
        self.max_connections = settings.max_connections
        self.max_per_address = settings.max_connections_per_ip
        self.proxies = TrustedProxies(settings.forwarded_allow_ips)
        self.half_open = 0
        """Half-open connections counted against the limits."""
        self.half_open_at: Counter[str] = Counter()
        self.open_at: Counter[str] = Counter()
        """Open WebSockets by client address."""
        self.handshake_timeouts = 0
        """Connections closed because their request was not complete in time."""

    def held_by(self, address: str) -> int:
        """Open and half-open connections counted under ``address``."""
        return self.open_at[address] + self.half_open_at[address]

    def accept(self, peer: str | None) -> HalfOpen:
        """A TCP connection from ``peer`` was accepted: it is half-open from now on."""
        address = peer if peer is not None and not self.proxies.trust(peer) else None
        full = address is not None and self._over_limit(address)
        pending = HalfOpen(self, address, counted=not full)
        pending.hold()
        return pending

    def check(self, scope: Any, open_connections: int) -> Refusal | None:
        """Whether a handshake that just completed (its own connection no longer half-open)
        may open; ``open_connections`` is how many the replica runs now."""
        limit = self.max_connections
        if limit and open_connections + self.half_open >= limit:
            return Refusal(503, f"replica full: {limit} connections")
        address = client_address(scope)
        if address is not None and self._over_limit(address):
            message = f"too many connections from {address}: at most {self.max_per_address}"
            return Refusal(429, message)
        return None

    def opened(self, address: str | None) -> None:
        """A WebSocket of ``address`` opened."""
        if address is not None:
            self.open_at[address] += 1

    def closed(self, address: str | None) -> None:
        """A WebSocket of ``address`` ended."""
        if address is not None:
            _decrement(self.open_at, address)

    def _over_limit(self, address: str) -> bool:
        return bool(self.max_per_address) and self.held_by(address) >= self.max_per_address


class HandshakePolicy:
    """The checks of a completed WebSocket handshake, in order: the ``Origin`` allow-list,
    the replica's readiness (``readiness`` says whether it is ready, and why not), then the
    connection limits (``connections`` are the open ones)."""

    def __init__(
        self,
        origins: OriginPolicy,
        readiness: Callable[[], tuple[bool, str]],
        admission: Admission,
        connections: Sized,
    ) -> None:
        self._origins = origins
        self._readiness = readiness
        self._admission = admission
        self._connections = connections

    def refusal(self, scope: Any) -> Refusal | None:
        """Why the handshake of this ASGI ``scope`` is refused, or None when it may open."""
        origin = origin_refusal(self._origins, scope["headers"])
        if origin is not None:
            return Refusal(403, origin)
        ready, reason = self._readiness()
        if not ready:
            return Refusal(503, f"replica not ready: {reason}")
        return self._admission.check(scope, len(self._connections))


def origin_refusal(origins: OriginPolicy, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why a handshake with these (ASGI) headers fails the ``Origin`` allow-list (a sentence
    naming the setting to change), or None when it passes."""
    origin = host = None
    for name, value in headers:
        if len(name) in (4, 6):
            lowered = name.lower()
            if lowered == b"origin":
                origin = value.decode("latin-1")
            elif lowered == b"host":
                host = value.decode("latin-1")
    return origins.refusal(origin, host)


def client_address(scope: Any) -> str | None:
    """The client's host in an ASGI scope (after any trusted proxy's ``X-Forwarded-For``)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
