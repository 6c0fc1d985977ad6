"""Speed of gateway.wire.centrifugo.fossil on 1 KiB, 10 KiB and 60 KiB JSON payloads.

    python -m bench.fossil_delta [--repeat N]

Per size, two cases: "similar" (an order book whose levels change a few at a time, what
delta subscriptions are for) and "unrelated" (the target shares nothing with the source,
the encoder's worst case: it hashes every byte of the target and finds nothing). Prints
the median time of ``create`` and ``apply`` and the delta's size. Bounded: a few hundred
calls in all, well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable

from gateway.wire.centrifugo import fossil

SIZES = {"1 KiB": 1024, "10 KiB": 10 * 1024, "60 KiB": 60 * 1024}


def order_book(size: int, rng: random.Random) -> list[list[str]]:
    levels = []
    while len(json.dumps(levels)) < size:
        levels.append([str(600000 - len(levels) * 10), f"{rng.uniform(1, 5000):.2f}"])
    return levels


def similar(size: int, rng: random.Random) -> tuple[bytes, bytes]:
    book = order_book(size, rng)
    source = json.dumps(book).encode()
    for level in rng.sample(book, max(1, len(book) // 40)):
        level[1] = f"{rng.uniform(1, 5000):.2f}"
    return source, json.dumps(book).encode()


def unrelated(size: int, rng: random.Random) -> tuple[bytes, bytes]:
    return os.urandom(size).hex()[:size].encode(), os.urandom(size).hex()[:size].encode()


def median_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(1)
    print("| payload | case | create ms | apply ms | target bytes | delta bytes |")
    print("|---|---|---|---|---|---|")
    for label, size in SIZES.items():
        for case, make in (("similar", similar), ("unrelated", unrelated)):
            source, target = make(size, rng)
            delta = fossil.create(source, target)
            assert fossil.apply(source, delta) == target
            create = median_ms(lambda s=source, t=target: fossil.create(s, t), args.repeat)
            apply = median_ms(lambda s=source, d=delta: fossil.apply(s, d), args.repeat)
            print(
                f"| {label} | {case} | {create:.2f} | {apply:.3f} | {len(target)} | {len(delta)} |"
            )


if __name__ == "__main__":
    main()
