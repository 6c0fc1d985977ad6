"""A worker process that publishes through `gateway.Publisher`, as an application's would:
``python -m tests.apps.worker REDIS_URL CHANNEL COUNT [--cluster]`` publishes
``{"worker": n}`` for n in 0..COUNT-1 and prints each position as a JSON line."""

from __future__ import annotations

import asyncio
import json
import sys

from gateway import Publisher, load_settings


async def main(url: str, channel: str, count: int, cluster: bool) -> None:
    settings = load_settings(redis_url=url, redis_cluster=cluster)
    async with Publisher(settings=settings) as publisher:
        for n in range(count):
            position = await publisher.publish(channel, {"worker": n})
            line = (
                None if position is None else {"offset": position.offset, "epoch": position.epoch}
            )
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    url, channel, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(main(url, channel, count, "--cluster" in sys.argv[4:]))
