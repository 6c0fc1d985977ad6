"""Which part of a run ran out of CPU: the servers, the load generator, or Redis."""

from __future__ import annotations

BUSY = 0.85
"""Share of a CPU above which a process (or a group of them) counts as the limit."""
OTHER_WORK = 0.2
"""CPUs' worth of work by processes outside the bench above which the machine counts as
busy: figures are noted as disturbed, and ``--spill auto`` does not spill."""


def limit(server_share: float, loadgen_level: float, redis_share: float = 0.0) -> str:
    """``load generator`` when the client was near full and busier than the servers,
    ``Redis`` when its one core was near full, ``servers`` when they were near full, else
    ``neither`` (a fixed rate below every limit)."""
    if loadgen_level >= BUSY and server_share < loadgen_level:
        return "load generator"
    if redis_share >= BUSY and server_share < redis_share:
        return "Redis"
    if server_share >= BUSY:
        return "servers"
    return "neither"
