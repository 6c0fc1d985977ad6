"""The ``gateway`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gateway.cli import client as client_cli
from gateway.cli.serve import serve_command
from gateway.settings import ConfigError, unknown_variables

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
    serve.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="serve the gateway.Gateway object ATTR of MODULE (its hooks and settings; "
        "the options given here override them)",
    )
    serve.add_argument("--redis-url", help="Redis URL (default: $GATEWAY_REDIS_URL)")
    serve.add_argument("--node-id", help="replica id (default: $GATEWAY_NODE_ID)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    serve.add_argument(
        "--log-format",
        choices=("auto", "json", "text"),
        default="auto",
        help="auto: JSON lines unless stderr is a terminal",
    )
    serve.set_defaults(run=serve_command)

    client_cli.add_commands(commands)

    cluster = commands.add_parser(
        "cluster", help="run redis, N replicas and nginx locally (the compose topology)"
    )
    cluster.add_argument("--replicas", type=_positive, default=3, help="replicas (default 3)")
    cluster.add_argument("--port", type=_port, default=8000, help="nginx port (default 8000)")
    cluster.add_argument("--config", help="TOML config file for every replica")
    cluster.add_argument(
        "--app", metavar="MODULE:ATTR", help="each replica serves this gateway.Gateway object"
    )
    cluster.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    cluster.set_defaults(run=_cluster)

    for name, what in (
        ("schema", "print the JSON Schema of each namespace's payload model"),
        ("types", "print TypeScript declarations of each namespace's payload model"),
    ):
        command = commands.add_parser(name, help=what, description=what + ".")
        command.add_argument(
            "--app", metavar="MODULE:ATTR", required=True, help="the gateway.Gateway object"
        )
        command.set_defaults(run=_schema if name == "schema" else _types)
    return parser


def _schema(args: argparse.Namespace) -> int:
    import json

    from gateway.cli.apps import load_gateway
    from gateway.cli.schema import channel_schema

    print(json.dumps(channel_schema(load_gateway(args.app).hooks), indent=2))
    return 0


def _types(args: argparse.Namespace) -> int:
    from gateway.cli.apps import load_gateway
    from gateway.cli.schema import channel_schema
    from gateway.cli.typescript import declarations

    print(declarations(channel_schema(load_gateway(args.app).hooks)), end="")
    return 0


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
    from gateway.cli.cluster import ClusterError, run_cluster

    for problem in unknown_variables():
        print(f"gateway cluster: warning: {problem}", file=sys.stderr, flush=True)
    try:
        return run_cluster(args.replicas, args.port, args.config, args.log_level, app=args.app)
    except ClusterError as exc:
        print(f"gateway cluster: {exc}", file=sys.stderr)
        return 1
