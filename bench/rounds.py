"""Combining repeated rounds of one server's workloads into one set of figures.

On a shared, noisy machine a single run can be unlucky; with ``--rounds N`` each figure
is the median over the rounds, except counts of failures (loss, errors, dropped
connections), which take the worst round so that no loss is ever averaged away. Lists
(the saturation timeline) come from the round whose deliveries/s are the median.
"""

from __future__ import annotations

import statistics
from typing import Any

WORST = frozenset(
    {"lost", "unexpected", "errors", "dropped_connections", "failed", "failed_connections"}
)


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result shaped like each round's: medians, worst failure counts, median lists."""
    if len(rounds) == 1:
        return rounds[0]
    workloads = dict.fromkeys(key for result in rounds for key in result)
    return {
        workload: _merge(
            [result[workload] for result in rounds if workload in result],
            representative=_median_round([r[workload] for r in rounds if workload in r]),
        )
        for workload in workloads
    }


def _median_round(results: list[dict[str, Any]]) -> int:
    rates = [result.get("deliveries_per_s") for result in results]
    if any(not isinstance(rate, int | float) for rate in rates):
        return len(results) - 1
    middle = statistics.median(rates)
    return min(range(len(rates)), key=lambda index: abs(rates[index] - middle))


def _merge(values: list[Any], key: str = "", representative: int = -1) -> Any:
    if all(isinstance(value, dict) for value in values):
        keys = dict.fromkeys(k for value in values for k in value)
        return {k: _merge([value.get(k) for value in values], k, representative) for k in keys}
    present = [value for value in values if value is not None]
    if not present:
        return None
    if all(isinstance(value, bool) for value in present):
        return all(present)
    if all(isinstance(value, int | float) for value in present):
        if key in WORST:
            return max(present)
        middle = statistics.median(present)
        return round(middle) if all(isinstance(value, int) for value in present) else middle
    chosen = values[representative]
    return chosen if chosen is not None else present[-1]
