"""Reading a hub's state in tests, through what it reports (`Hub.activity`)."""

from __future__ import annotations

from gateway.core.hub import Hub


def subscribers(hub: Hub, channel: str) -> int:
    """Local subscribers of ``channel`` on ``hub``."""
    return next((count for name, count, _ in hub.activity() if name == channel), 0)
