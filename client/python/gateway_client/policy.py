"""When to reconnect and when to refresh a token. Pure: values in, values out."""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Callable
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

CloseAction = Literal["stop", "refresh", "now", "backoff"]

_STOP = frozenset({1000, 1003, 1009, 4003})
_NOW = frozenset({1001, 1012})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def close_action(code: int) -> CloseAction:
    """What to do after the server closed with ``code``, per the protocol's close-code table.

    "stop"; "refresh" (get a new token, then reconnect); "now" (reconnect at once, to the
    next URL); or "backoff".
    """
    if code in _STOP:
        return "stop"
    if code == 4001:
        return "refresh"
    if code in _NOW:
        return "now"
    return "backoff"


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


def backoff_delay(
    attempt: int,
    min_delay: float,
    max_delay: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Full jitter: a random delay in [0, min(max_delay, min_delay * 2**attempt))."""
    return rand() * min(max_delay, min_delay * 2.0 ** min(attempt, 62))


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
