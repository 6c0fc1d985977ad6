"""Which web pages may open a WebSocket to the gateway: the ``Origin`` allow-list.

Browsers send ``Origin`` on every WebSocket handshake and let any page connect anywhere, so
the server must refuse pages it does not serve (cross-site WebSocket hijacking). Clients
that are not browsers send no ``Origin``; they pass, and must be kept out by tokens.

- No list configured: the origin's host name must equal the host name of the request's
  ``Host`` header (ports and schemes are not compared, so a load balancer that rewrites the
  port does not lock the demo page out).
- ``*`` in the list: every origin passes.
- Otherwise the origin must be one of the list, compared as ``scheme://host[:port]`` in
  lower case with default ports (80, 443) dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from gateway.settings import ConfigError

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def _host_name(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:
        return None


class OriginPolicy:
    """Decides whether a handshake's ``Origin`` may connect; see the module docstring."""

    __slots__ = ("_allowed", "_anything")

    def __init__(self, allowed: Iterable[str]) -> None:
        """Raises:
        ConfigError: an entry is neither ``*`` nor an origin such as ``https://example.com``.
        """
        entries = [entry.strip() for entry in allowed if entry.strip()]
        self._anything = "*" in entries
        normalized: set[str] = set()
        for entry in entries:
            origin = normalize_origin(entry) if entry != "*" else "*"
            if origin is None:
                raise ConfigError(
                    f"setting 'allowed_origins': {entry!r} is not an origin "
                    "(scheme://host[:port]) or *"
                )
            normalized.add(origin)
        normalized.discard("*")
        self._allowed = frozenset(normalized)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """True when a handshake with this ``Origin`` (None: absent) and ``Host`` may go on."""
        if origin is None or self._anything:
            return True
        if self._allowed:
            return normalize_origin(origin) in self._allowed
        origin_host = _host_name(origin) if "://" in origin else None
        return (
            origin_host is not None and host is not None and origin_host == _host_name(f"//{host}")
        )
