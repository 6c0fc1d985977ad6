"""Refused handshakes, logged so that whoever runs the gateway sees why a client could not
connect: a browser shows its page only "Unexpected response code: 403", never the body.

One warning per refusal with its status, path, ``Origin``, client address and reason;
never the query string, which may hold a token. A flood of refusals is logged at most
`LOG_RATE` lines per second (after a burst of `LOG_BURST`); the next line logged counts the
ones left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from gateway.security.origins import shown
from gateway.security.ratelimit import TokenBucket

log = logging.getLogger(__name__)

LOG_RATE = 5.0
"""Refusal lines per second once the burst is spent."""
LOG_BURST = 50
"""Refusal lines logged at once before `LOG_RATE` applies."""


class RefusalLog:
    """Logs refused handshakes at level warning, bounded in rate."""

    __slots__ = ("_bucket", "_skipped")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket = TokenBucket(LOG_RATE, LOG_BURST, clock)
        self._skipped = 0

    def refused(self, scope: Mapping[str, Any], status: int, reason: str) -> None:
        """Log one refused handshake of this ASGI ``scope``."""
        if not self._bucket.take():
            self._skipped += 1
            return
        skipped, self._skipped = self._skipped, 0
        origin = _header(scope, b"origin")
        log.warning(
            "handshake.refused status=%d path=%s origin=%s client=%s reason=%s%s",
            status,
            shown(scope.get("path", "")),
            shown(origin) if origin is not None else "-",
            _address(scope.get("client")),
            reason,
            f" (and {skipped} more refusals not logged)" if skipped else "",
        )


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _address(client: Any) -> str:
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


REFUSALS = RefusalLog()
"""The process's refusal log (one budget for every replica of the process)."""
