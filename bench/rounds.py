"""Combining repeated rounds of one server's workloads into one set of figures.

On a shared, noisy machine a single run can be unlucky; with ``--rounds N`` each figure
is the median over the rounds, except counts of failures (loss, errors, dropped
connections), which take the worst round so that no loss is ever averaged away.
"""

from __future__ import annotations

import statistics
from typing import Any

WORST = frozenset({"lost", "unexpected", "errors", "dropped_connections", "failed"})


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result shaped like each round's: medians, worst failure counts, last lists."""
    if len(rounds) == 1:
        return rounds[0]
    return _merge(rounds)


def _merge(values: list[Any], key: str = "") -> Any:
    present = [value for value in values if value is not None]
    if not present:
        return None
    if all(isinstance(value, dict) for value in present):
        keys = dict.fromkeys(k for value in present for k in value)
        return {k: _merge([value.get(k) for value in present], k) for k in keys}
    if all(isinstance(value, bool) for value in present):
        return all(present)
    if all(isinstance(value, int | float) for value in present):
        if key in WORST:
            return max(present)
        middle = statistics.median(present)
        return round(middle) if all(isinstance(value, int) for value in present) else middle
    return present[-1]
