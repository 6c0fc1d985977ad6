"""The ``gateway`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from gateway import client_cli, logs, ports, redaction
from gateway.app import create_app
from gateway.http_protocol import http_protocol, keep_alive_seconds
from gateway.server import GatewayServer
from gateway.settings import (
    ConfigError,
    Settings,
    load_settings,
    unknown_variables,
    warn_unknown_variables,
)
from gateway.transport import GatewayWebSocketProtocol, WebSocketLane

log = logging.getLogger("gateway")

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="WebSocket pub/sub gateway (protocol v1)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run one replica under uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--internal-port",
        type=_port,
        help="serve /api, /metrics, /admin and the API docs only on this port "
        "(default: $GATEWAY_INTERNAL_PORT, else one port serves everything)",
    )
    serve.add_argument("--config", help="TOML config file (default: $GATEWAY_CONFIG)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    serve.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default="auto",
        help="auto: JSON lines unless stderr is a terminal",
    )
    serve.set_defaults(run=_serve)

    client_cli.add_commands(commands)

    cluster = commands.add_parser(
        "cluster", help="run redis, N replicas and nginx locally (the compose topology)"
    )
    cluster.add_argument("--replicas", type=_positive, default=3, help="replicas (default 3)")
    cluster.add_argument("--port", type=_port, default=8000, help="nginx port (default 8000)")
    cluster.add_argument("--config", help="TOML config file for every replica")
    cluster.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    cluster.set_defaults(run=_cluster)
    return parser


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), not {value}")
    return value


def _cluster(args: argparse.Namespace) -> int:
    from gateway.cluster import ClusterError, run_cluster

    for problem in unknown_variables():
        print(f"gateway cluster: warning: {problem}", file=sys.stderr, flush=True)
    try:
        return run_cluster(args.replicas, args.port, args.config, args.log_level)
    except ClusterError as exc:
        print(f"gateway cluster: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace) -> int:
    overrides = {} if args.internal_port is None else {"internal_port": args.internal_port}
    settings = load_settings(args.config, **overrides)
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
    app = create_app(settings)
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
        app, {"/ws": replica.serve_protocol, "/websocket": replica.serve_plain_text}
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
