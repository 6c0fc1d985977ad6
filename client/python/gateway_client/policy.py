"""When to reconnect and when to refresh a token. Pure: values in, values out.

What each close code asks of a client is the server's own table (`gateway.wire.errors`).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from gateway.wire.errors import ClientAction as CloseAction
from gateway.wire.errors import close_action

__all__ = [
    "CloseAction",
    "close_action",
    "handshake_retryable",
    "refresh_delay",
    "token_expiry",
    "with_name",
]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def handshake_retryable(status: int) -> bool:
    """Whether an HTTP status refusing the handshake may clear up (overload, not ready)."""
    return status in _RETRY_STATUSES


def with_name(url: str, name: str | None) -> str:
    """``url`` with ``?name=`` set to a display name (other parameters kept); unchanged
    when the name is None or blank."""
    chosen = (name or "").strip()
    if not chosen:
        return url
    parts = urlsplit(url)
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key != "name"
    ]
    return urlunsplit(parts._replace(query=urlencode([*query, ("name", chosen)])))


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT in seconds, or None; the signature is not checked here."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def refresh_delay(exp: float, now: float) -> float:
    """Seconds from ``now`` until a token expiring at ``exp`` should be refreshed.

    A fifth of the remaining lifetime before expiry, at most 30 seconds before it.
    """
    remaining = exp - now
    return max(0.0, remaining - min(30.0, remaining / 5))
