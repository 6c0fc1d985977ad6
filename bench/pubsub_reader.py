"""What reading one pub/sub message costs a replica in redis-py, with and without hiredis.

``python -m bench.pubsub_reader`` starts a throwaway redis-server, subscribes with
redis-py's asyncio ``PubSub`` as the gateway's listener does (``get_message(timeout=None)``
in a loop), has a second connection publish ``--messages`` envelopes of ``--size`` bytes
in pipelined batches, and reports the reader's CPU time per message: with the hiredis
parser (redis-py's default when hiredis is installed) and with redis-py's pure-Python
parser, ``--repeat`` times each, interleaved. The publisher runs in another process, so
the figure is the reader's alone. Bounded: each run waits at most `RUN_TIMEOUT` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.processes import RedisProcess

CHANNEL = "gw:{bench}"
RUN_TIMEOUT = 120.0
BATCH = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pubsub_reader", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    redis = RedisProcess(None)
    try:
        results: dict[str, list[float]] = {"hiredis": [], "python": []}
        parsers: dict[str, str] = {}
        for _ in range(args.repeat):
            for parser_name in results:
                command = [
                    sys.executable,
                    "-m",
                    "bench.pubsub_reader",
                    "--child",
                    parser_name,
                    redis.url,
                    str(args.messages),
                    str(args.size),
                ]
                output = subprocess.run(
                    command, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=True
                ).stdout
                run = json.loads(output)
                results[parser_name].append(run["us_per_message"])
                parsers[parser_name] = run["parser"]
    finally:
        redis.stop()
    summary = {
        name: {
            "parser": parsers[name],
            "median_us_per_message": statistics.median(values),
            "runs": values,
        }
        for name, values in results.items()
    }
    print(json.dumps(summary, indent=2))
    return 0


async def read(url: str, messages: int, size: int, parser_name: str) -> dict[str, Any]:
    from redis.asyncio import Redis
    from redis.asyncio.connection import ConnectionPool

    options: dict[str, Any] = {}
    if parser_name == "python":
        from redis._parsers import _AsyncRESP2Parser

        options["parser_class"] = _AsyncRESP2Parser
    pool = ConnectionPool.from_url(url, **options)
    client = Redis(connection_pool=pool)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    while (await pubsub.get_message(timeout=1.0)) is None:
        pass
    parser_used = type(pubsub.connection._parser).__name__  # type: ignore[union-attr]
    publisher = subprocess.Popen(  # noqa: ASYNC220 (it runs on its own, not awaited)
        [sys.executable, "-m", "bench.pubsub_reader", "--publish", url, str(messages), str(size)]
    )
    received = 0
    started = None
    async with asyncio.timeout(RUN_TIMEOUT):
        while received < messages:
            message = await pubsub.get_message(timeout=None)
            if message is None or message["type"] != "message":
                continue
            if started is None:
                started = time.thread_time()
            received += 1
    used = time.thread_time() - (started or 0.0)
    publisher.wait(RUN_TIMEOUT)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()
    return {
        "parser": parser_used,
        "messages": received,
        "us_per_message": used / max(1, received - 1) * 1e6,
    }


def publish(url: str, messages: int, size: int) -> None:
    import redis

    client = redis.Redis.from_url(url)
    envelope = b"!1234567890123456\n" + b"x" * max(0, size - 19)
    for start in range(0, messages, BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, messages - start)):
            pipe.publish(CHANNEL, envelope)
        pipe.execute()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        import uvloop

        result = uvloop.run(read(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[2]))
        print(json.dumps(result))
    elif len(sys.argv) > 1 and sys.argv[1] == "--publish":
        publish(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
