"""The gateway mounted in a FastAPI app that keeps its own lifespan, served so that SIGTERM
drains the gateway's clients over ``GATEWAY_DRAIN_SECONDS`` as ``gateway serve`` does.

    python docs/examples/mounted.py --port 8000     # WebSocket at ws://127.0.0.1:8000/realtime/ws

Run by tests/e2e/test_mounted_drain.py.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

import gateway
from gateway.cli.serve import GatewayServer


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    print("app: started", flush=True)  # the gateway has started already
    yield
    print("app: stopping", flush=True)  # the gateway stops after this


app = FastAPI(lifespan=lifespan)
realtime = gateway.mount(app, "/realtime")  # settings from GATEWAY_* and GATEWAY_CONFIG


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    replica = realtime.state.replica
    drain = int(replica.settings.drain_seconds)
    config = uvicorn.Config(app, args.host, args.port, timeout_graceful_shutdown=drain + 5)
    GatewayServer(config, replica).run()
