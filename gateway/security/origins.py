"""Which web pages may open a WebSocket to the gateway: the ``Origin`` allow-list.

Browsers send ``Origin`` on every WebSocket handshake and let any page connect anywhere, so
the server must refuse pages it does not serve (cross-site WebSocket hijacking). Clients
that are not browsers send no ``Origin``; they pass, and must be kept out by tokens.

- A page of the gateway's own origin passes (the ``Origin``'s ``host[:port]`` is the
  request's ``Host``; schemes are not compared, as a proxy that terminates TLS forwards
  ``ws`` for ``wss``): the demo at ``/`` keeps working whatever the list says. A
  same-origin page cannot hijack anything.
- No list configured: beyond that, the origin's host name must equal the host name of the
  request's ``Host``. Ports are not compared, so a load balancer that rewrites the port
  does not lock the demo page out, and the loopback names (``localhost``, ``127.0.0.1``,
  ``[::1]``, any ``127.x.x.x``) count as one host, so a development page on
  ``http://localhost:3000`` may connect to ``ws://127.0.0.1:8000``. Pages opened from
  ``file://`` (``Origin: null``) are refused.
- ``*`` in the list: every origin passes.
- ``null`` in the list: pages opened from ``file://`` (and sandboxed frames), which send
  ``Origin: null``, pass.
- Otherwise the origin must be one of the list, compared as ``scheme://host[:port]`` in
  lower case with default ports (80, 443) dropped.

A refusal comes with a sentence that says what to change (`OriginPolicy.refusal`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from gateway.settings import ConfigError

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
NULL_ORIGIN = "null"
"""The ``Origin`` of pages opened from ``file://`` and of sandboxed frames."""
SETTING = "GATEWAY_ALLOWED_ORIGINS"
_SHOWN_CHARACTERS = 120


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None if not an origin."""
    parts = _parts(origin)
    if parts is None or not parts[0]:
        return None
    scheme, host, port = parts
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``::1``), in any case."""
    host = host.lower().removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parts(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host name (IPv6 in brackets) and port of a URL, lower case; None if unusable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, host, port


def _authority(parts: tuple[str, str, int | None]) -> str:
    """``host[:port]`` without the default ports 80 and 443 (the scheme is not compared: a
    proxy that terminates TLS hands the gateway ``ws`` for a page's ``wss``)."""
    _, host, port = parts
    return host if port in (None, 80, 443) else f"{host}:{port}"


def _same_host(origin_host: str, request_host: str) -> bool:
    return origin_host == request_host or (is_loopback(origin_host) and is_loopback(request_host))


def shown(value: str) -> str:
    """A header value quoted for a log line or a response: escaped and bounded in length."""
    if len(value) > _SHOWN_CHARACTERS:
        value = value[:_SHOWN_CHARACTERS] + "..."
    return repr(value)


class OriginPolicy:
    """Decides whether a handshake's ``Origin`` may connect; see the module docstring."""

    __slots__ = ("_allowed", "_anything", "_null")

    def __init__(self, allowed: Iterable[str]) -> None:
        """Raises:
        ConfigError: an entry is neither ``*``, ``null`` nor an origin such as
            ``https://example.com``.
        """
        entries = [entry.strip() for entry in allowed if entry.strip()]
        self._anything = "*" in entries
        self._null = any(entry.lower() == NULL_ORIGIN for entry in entries)
        normalized: set[str] = set()
        for entry in entries:
            if entry == "*" or entry.lower() == NULL_ORIGIN:
                continue
            origin = normalize_origin(entry)
            if origin is None:
                raise ConfigError(
                    f"setting 'allowed_origins': {entry!r} is not an origin "
                    "(scheme://host[:port]), null (pages opened from file://) or *"
                )
            normalized.add(origin)
        self._allowed = frozenset(normalized)

    @property
    def configured(self) -> bool:
        """True when a list was configured (else the request's own host decides)."""
        return self._anything or self._null or bool(self._allowed)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """True when a handshake with this ``Origin`` (None: absent) and ``Host`` may go on."""
        return self.refusal(origin, host) is None

    def refusal(self, origin: str | None, host: str | None) -> str | None:
        """Why a handshake with this ``Origin`` and ``Host`` is refused, naming the setting
        that would let it in; None when it may go on."""
        if origin is None or self._anything:
            return None
        if origin.strip() == NULL_ORIGIN:
            if self._null:
                return None
            return (
                "origin 'null' not allowed: pages opened from file:// send Origin: null; "
                f"to let them connect, add null to {SETTING} (allowed_origins in the config file)"
            )
        parts = _parts(origin)
        normalized = normalize_origin(origin)
        if parts is None or normalized is None:
            return f"origin {shown(origin)} not allowed: it is not scheme://host[:port]"
        if normalized in self._allowed:
            return None
        served = _parts(f"//{host}") if host is not None else None
        if served is not None:
            if _authority(parts) == _authority(served):
                return None
            if not self.configured and _same_host(parts[1], served[1]):
                return None
        if self.configured:
            return (
                f"origin {shown(origin)} not allowed: it is not in {SETTING}; to let this "
                f"page connect, add {normalized} to it (allowed_origins in the config file)"
            )
        own = shown(served[1]) if served is not None else "(the request has no Host header)"
        return (
            f"origin {shown(origin)} not allowed: without {SETTING} only pages from this "
            f"gateway's own host {own} may connect; to let this page connect, set "
            f"{SETTING}={normalized} (allowed_origins in the config file)"
        )
