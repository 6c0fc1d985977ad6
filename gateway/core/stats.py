"""Counters bumped where things happen; the metrics collector and the registry read them."""

from __future__ import annotations

from collections import Counter


class Stats:
    """Counters bumped where things happen."""

    __slots__ = (
        "closes",
        "commands",
        "errors",
        "published",
        "received_bytes",
        "sent_bytes",
        "slow_consumers",
    )

    def __init__(self) -> None:
        self.commands: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.slow_consumers = 0
        """Connections the server closed with 4008, whatever overflowed (counted at the close)."""
        self.published = 0
        self.received_bytes = 0
        self.sent_bytes = 0
