"""The cost of an ``on_publish`` hook on publish throughput: the same replica, the same
session, channels with and without a hook.

Starts a throwaway redis-server and one replica serving `bench.hook_app` (``gateway serve
--app``): ``plain`` channels have no hook; ``hooked`` an ``async def`` hook that returns
None; ``typed`` the same with a pydantic model to validate against; ``threaded`` a plain
``def`` hook (run in the thread pool). P publisher connections each publish M messages
(NDJSON batches, so publishes are pipelined) to a channel of one kind while one subscriber
receives them all; the kinds alternate R times, and the run reports the median publishes/s
and the server's CPU time per publish of each, and each hooked kind's extra CPU per publish
over ``plain``. Bounded in count and time.

    python -m bench.hook_cost [--publishers 8] [--messages 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

from bench.history_cost import one_round, replica_on_redis

KINDS = ("plain", "hooked", "typed", "threaded")


async def measure(
    url: str, pid: int, publishers: int, messages: int, rounds: int
) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    await one_round(url, pid, "plain:warmup", publishers, messages)
    for index in range(rounds):
        for kind in KINDS:
            runs[kind].append(
                await one_round(url, pid, f"{kind}:bench{index}", publishers, messages)
            )
    medians = {
        kind: {key: round(statistics.median(run[key] for run in results), 2) for key in results[0]}
        for kind, results in runs.items()
    }
    base = medians["plain"]
    for kind in KINDS[1:]:
        medians[kind]["extra_cpu_us_per_publish"] = round(
            medians[kind]["server_cpu_us_per_publish"] - base["server_cpu_us_per_publish"], 2
        )
        medians[kind]["throughput_ratio"] = round(
            medians[kind]["publishes_per_second"] / base["publishes_per_second"], 3
        )
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=8)
    parser.add_argument("--messages", type=int, default=500, help="per publisher and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with replica_on_redis({}, "--app", "bench.hook_app:gw") as (url, pid, _redis_pid):
        result = asyncio.run(measure(url, pid, args.publishers, args.messages, args.rounds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
