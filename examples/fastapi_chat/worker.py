"""Publish to the lobby from another process, as a background job would:

    python -m examples.fastapi_chat.worker "the nightly build passed"

It writes to Redis exactly as the gateway does, so every open page shows it (and a page
that reconnects later recovers it). Needs the same Redis as the app (GATEWAY_REDIS_URL).
"""

from __future__ import annotations

import asyncio
import sys

from examples.fastapi_chat.app import HERE
from gateway import Publisher, load_settings


async def main(text: str) -> None:
    async with Publisher(settings=load_settings(HERE / "gateway.toml")) as publisher:
        position = await publisher.publish("chat:lobby", {"text": text, "by": "worker"})
        print(f"published at offset {position.offset if position else '-'}")


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "hello from a worker"))
