"""``gateway sub`` and ``gateway pub``: the asyncio client (`gateway_client`) for operators
and scripts.

This is client-side code: it reads ``GATEWAY_URL`` as the default ``--url`` (the one
environment variable read outside `gateway.settings`, which configures servers only).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson

if TYPE_CHECKING:
    from gateway_client import GatewayClient, GatewayClientError

DEFAULT_URL = "ws://127.0.0.1:8000/ws"
PUBLISH_TIMEOUT = 10.0
PUBLISH_ATTEMPTS = 3


def default_url() -> str:
    """``--url`` when not given: ``GATEWAY_URL``, else the local default replica."""
    return os.environ.get("GATEWAY_URL") or DEFAULT_URL


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sub`` and ``pub`` on the ``gateway`` command's subparsers."""
    sub = commands.add_parser(
        "sub", help="print each message of CHANNEL... as one JSON line, until interrupted"
    )
    sub.add_argument("channels", nargs="+", metavar="CHANNEL")
    _connection_options(sub)
    sub.set_defaults(run=run_sub)

    pub = commands.add_parser("pub", help="publish DATA (JSON, else a string) to CHANNEL")
    pub.add_argument("channel", metavar="CHANNEL")
    pub.add_argument("data", metavar="DATA")
    _connection_options(pub)
    pub.set_defaults(run=run_pub)


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help=f"gateway WebSocket URL (default: $GATEWAY_URL, else {DEFAULT_URL})"
    )
    parser.add_argument("--token", default=None, help="connection JWT")


def parse_data(text: str) -> Any:
    """DATA as JSON when it parses, else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def run_sub(args: argparse.Namespace) -> int:
    url = _checked_url(args, "sub")
    if url is None:
        return 2
    return asyncio.run(subscribe(url, args.channels, args.token))


def run_pub(args: argparse.Namespace) -> int:
    url = _checked_url(args, "pub")
    if url is None:
        return 2
    return asyncio.run(publish(url, args.channel, parse_data(args.data), args.token))


def _checked_url(args: argparse.Namespace, command: str) -> str | None:
    """The URL to connect to, or None (after saying why on stderr) when it is no WebSocket
    URL: the caller exits with status 2, as for any other bad argument."""
    from gateway_client import check_url

    url: str = args.url or default_url()
    try:
        check_url(url)
    except ValueError as error:
        source = "--url" if args.url else "GATEWAY_URL"
        print(f"gateway {command}: {source}: {error}", file=sys.stderr)
        scheme, _, rest = url.partition("://")
        if scheme.lower() in _WS_SCHEMES and rest:
            suggestion = f"{_WS_SCHEMES[scheme.lower()]}://{rest}"
            print(f"gateway {command}: did you mean {suggestion}?", file=sys.stderr)
        return None
    return url


_WS_SCHEMES = {"http": "ws", "https": "wss"}


def refusal_hint(url: str, error: GatewayClientError) -> str | None:
    """What to try instead when ``url`` is no protocol endpoint (`refused`), if we can tell."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/websocket"):
        endpoint = path.removesuffix("/websocket") + "/ws"
        suggestion = urlunsplit(parts._replace(path=endpoint, query=""))
        return (
            "/websocket is the plain-text endpoint (one text frame per message); gateway pub"
            f" and sub speak the protocol at /ws: {suggestion}"
        )
    if path.endswith("/ws"):
        return None
    if error.status in (None, 403, 404):
        guess = urlunsplit(parts._replace(path="/ws"))
        return f"the gateway's protocol endpoint is /ws (under its mount prefix, if any): {guess}"
    return None


async def subscribe(url: str, channels: list[str], token: str | None) -> int:
    """Print every message as a JSON line; reconnect and recover until interrupted.

    Returns 1 when the client stops for good (a close code that forbids reconnecting) or
    every subscription was refused.
    """
    from gateway_client import GatewayClient, GatewayClientError

    async with GatewayClient(url, token=token) as client:
        _report_connection(client)
        closing: set[asyncio.Task[None]] = set()

        def refused(channel: str, error: GatewayClientError) -> None:
            _warn(f"{channel}: {error}")
            if not client.subscriptions:
                closing.add(asyncio.create_task(client.close()))

        for channel in channels:
            subscription = client.subscribe(channel)
            subscription.on("subscribed", _report_subscribed)
            subscription.on("unrecovered", _report_unrecovered)
            subscription.on("error", functools.partial(refused, channel))
        try:
            async for message in client.messages():
                sys.stdout.write(orjson.dumps(message.frame).decode() + "\n")
                sys.stdout.flush()
        except GatewayClientError as error:
            _fail("sub", url, error)
            return 1
        if not client.subscriptions:
            _warn("every subscription was refused")
            return 1
    return 0


async def publish(url: str, channel: str, data: Any, token: str | None) -> int:
    """Publish once; 0 after `published`, 1 with the error code on stderr otherwise."""
    from gateway_client import GatewayClient, GatewayClientError

    client = GatewayClient(
        url, token=token, request_timeout=PUBLISH_TIMEOUT, max_attempts=PUBLISH_ATTEMPTS
    )
    async with client:
        try:
            reply = await client.publish(channel, data)
        except GatewayClientError as error:
            _fail("pub", url, error)
            return 1
    sys.stdout.write(orjson.dumps(reply).decode() + "\n")
    return 0


def _report_connection(client: GatewayClient) -> None:
    client.on(
        "connected", lambda welcome: _warn(f"connected to {welcome['node']} ({welcome['url']})")
    )

    def disconnected(event: dict[str, Any]) -> None:
        if event["reconnect"]:
            _warn(f"disconnected ({event['code']} {event['reason']}); reconnecting")

    client.on("disconnected", disconnected)


def _report_subscribed(event: dict[str, Any]) -> None:
    if not event["resubscribed"]:
        _warn(f"subscribed to {event['channel']}")
    elif event["recovered"]:
        _warn(f"resubscribed to {event['channel']}, {event['missed']} missed messages recovered")
    else:
        _warn(f"resubscribed to {event['channel']}")


def _report_unrecovered(event: dict[str, Any]) -> None:
    _warn(f"{event['channel']}: messages may be missing ({event['reason']})")


def _fail(command: str, url: str, error: GatewayClientError) -> None:
    from gateway_client import ClientErrorCode

    print(f"gateway {command}: {error}", file=sys.stderr, flush=True)
    hint = refusal_hint(url, error) if error.code == ClientErrorCode.REFUSED else None
    if hint:
        print(f"gateway {command}: hint: {hint}", file=sys.stderr, flush=True)


def _warn(text: str) -> None:
    print(f"gateway sub: {text}", file=sys.stderr, flush=True)
