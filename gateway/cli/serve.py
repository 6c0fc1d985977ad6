"""``gateway serve``: uvicorn configured for one replica, and its server, which turns SIGTERM
into a graceful drain."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from gateway import redaction
from gateway.cli.apps import configured, load_gateway
from gateway.extend import Gateway
from gateway.ops import logs
from gateway.ops.collector import settle_after_start
from gateway.replica import Replica
from gateway.settings import ConfigError, Settings, load_settings, warn_unknown_variables
from gateway.transport import ports
from gateway.transport.http import http_protocol, keep_alive_seconds
from gateway.transport.lane import WebSocketLane
from gateway.transport.websocket import GatewayWebSocketProtocol

log = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    """On SIGTERM: not ready at once, clients told to reconnect (1012) over the drain
    window, then uvicorn's usual shutdown and exit status 0. SIGINT, or a second SIGTERM,
    stops at once as uvicorn does."""

    def __init__(
        self, config: uvicorn.Config, replica: Replica, listening: str | None = None
    ) -> None:
        """``listening`` describes the sockets given to `run` (uvicorn logs only those it
        binds itself), for the start-up log."""
        super().__init__(config)
        self._replica = replica
        self._listening = listening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started:
            settle_after_start()
        if self.started and self._listening:
            log.info("server.listening %s", self._listening)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain is None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin_drain)
            return
        super().handle_exit(sig, frame)

    def _begin_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._replica.drain()
        finally:
            self.should_exit = True


def serve_command(args: argparse.Namespace) -> int:
    """``gateway serve``: bind the ports, build the replica's app and run it under uvicorn.

    With ``--app MODULE:ATTR`` it serves that `Gateway` (its hooks, and the settings it was
    built with, under the command's own options) instead of one without hooks.
    """
    overrides = {
        "internal_port": args.internal_port,
        "redis_url": args.redis_url,
        "node_id": args.node_id,
    }
    if args.app is not None:
        gateway = load_gateway(args.app)
        settings = configured(gateway, args.config, **overrides)
    else:
        given = {name: value for name, value in overrides.items() if value is not None}
        settings = load_settings(args.config, **given)
        gateway = Gateway(settings)
    if settings.internal_port == args.port:
        raise ConfigError(f"the internal port must differ from the public port ({args.port})")
    try:
        listeners = ports.bind(args.host, args.port, settings.internal_port)
    except ports.PortUnavailable as exc:
        print(f"gateway serve: {exc}", file=sys.stderr)
        return 1
    logs.configure(args.log_level, settings.node_id, args.log_format)
    warn_unknown_variables()
    redaction.install()
    app = gateway.app
    config = uvicorn_config(app, settings, args.host, args.port, args.log_level)
    GatewayServer(config, app.state.replica, listeners.describe()).run(listeners.sockets)
    return 0


def uvicorn_config(
    app: FastAPI, settings: Settings, host: str, port: int, log_level: str
) -> uvicorn.Config:
    """uvicorn settings for one replica: the gateway's HTTP and WebSocket protocols, pings,
    limits and trusted proxies."""
    replica = app.state.replica
    lane = WebSocketLane(
        app,
        {"/ws": replica.serve_protocol, "/websocket": replica.serve_plain_text},
        {"/sse": replica.serve_sse},
    )
    return uvicorn.Config(
        lane,
        host=host,
        port=port,
        http=http_protocol(replica.admission, settings.handshake_timeout),
        ws=GatewayWebSocketProtocol,
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=settings.ping_seconds,
        ws_ping_timeout=2 * settings.ping_seconds,
        ws_per_message_deflate=settings.permessage_deflate,
        lifespan="on",
        log_config=None,
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=keep_alive_seconds(settings.handshake_timeout),
        timeout_graceful_shutdown=int(settings.drain_seconds) + 5,
    )
