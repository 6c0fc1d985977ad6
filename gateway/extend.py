"""The `Gateway` object: one replica with the application's own Python code inside it
(``shared/EXTENDING.md``, docs/extending.md).

It wraps the composition root (`gateway.replica.Replica`) and its FastAPI application
(`gateway.http.app.create_app`) and adds what an application needs around them: decorators
that register hooks (`gateway.services.hooks`), the lifespan that starts and stops the
replica, mounting into the application's own FastAPI app, and the server API in process.

The application is built on first use (``gw.app``, the first request to a mounted gateway,
or the lifespan's start), so that ``gateway serve --app`` can still apply its own options
to the settings of a gateway that a module only declared and mounted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from gateway.broker import Broker
from gateway.http.app import chain_lifespans
from gateway.http.app import create_app as build_app
from gateway.replica import Replica
from gateway.services.hooks import Hooks, json_value
from gateway.settings import Settings, load_settings
from gateway.wire.channels import valid_channel
from gateway.wire.protocol import StreamPosition

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)

START_POLL_SECONDS = 0.01
"""How often the lifespan looks whether the replica is ready yet, at start."""


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """A channel's messages, as ``GET /api/history`` answers: its latest ``position``,
    the `message` frames (decoded, oldest first), and whether ``more`` matched than fit in
    ``history_reply_bytes``."""

    channel: str
    position: StreamPosition
    messages: list[dict[str, Any]]
    more: bool


class Gateway:
    """One replica's gateway, with the application's hooks; settings as for ``gateway serve``
    (default: the environment and the config file)."""

    def __init__(self, settings: Settings | None = None, *, broker: Broker | None = None) -> None:
        self._settings = settings if settings is not None else load_settings()
        self._broker = broker
        self.hooks = Hooks(self._settings.hook_timeout)
        """The registered hooks; the decorators below fill it."""
        self._app: FastAPI | None = None
        self._entered = 0

    # The application

    @property
    def settings(self) -> Settings:
        return self._settings

    def configure(self, settings: Settings) -> None:
        """Use ``settings`` instead (``gateway serve --app`` applies its options so).

        Raises:
            RuntimeError: the application was built already (``gw.app`` was used).
        """
        if self._app is not None:
            raise RuntimeError(
                "the gateway's application was built already (gw.app was used at import), "
                "so its settings can no longer change: give them to Gateway(...) instead"
            )
        self._settings = settings
        self.hooks.timeout = settings.hook_timeout

    @property
    def built(self) -> bool:
        """Whether the application (and its replica) exists yet."""
        return self._app is not None

    @property
    def app(self) -> FastAPI:
        """The ASGI application: every route of the protocol (``/ws``, ``/websocket``, the
        server API, ``/healthz``, ...), with `lifespan` as its lifespan."""
        if self._app is None:
            app = build_app(self._settings, broker=self._broker, hooks=self.hooks)
            app.router.lifespan_context = self.lifespan
            app.state.gateway = self
            self._app = app
        return self._app

    @property
    def replica(self) -> Replica:
        """The replica behind the application (its services; for the CLI and tests)."""
        replica: Replica = self.app.state.replica
        return replica

    def lifespan(self, app: Any = None) -> AbstractAsyncContextManager[None]:
        """Start the replica on entry and stop it on exit: ``FastAPI(lifespan=gw.lifespan)``,
        or ``async with gw.lifespan(app):`` inside the application's own lifespan (then
        ``await gw.ready()`` before publishing there). Nested entries (a mounted gateway
        whose app also names it) start and stop it once."""
        return self._running()

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        replica = self.replica
        if self._entered == 0:
            await replica.start()
        self._entered += 1
        try:
            yield
        finally:
            self._entered -= 1
            if self._entered == 0:
                await replica.stop()

    async def ready(self, seconds: float | None = None) -> bool:
        """Wait until the started replica is ready (`/readyz`: its broker reached, its
        control channel and registry entry live), at most ``seconds`` (default
        ``broker_timeout``); whether it is. A replica that is not goes on reaching its
        broker in the background (publications meanwhile: `unavailable`)."""
        replica = self.replica
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._settings.broker_timeout if seconds is None else seconds)
        while not replica.readiness()[0]:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(START_POLL_SECONDS)
        return True

    @asynccontextmanager
    async def _mounted(self) -> AsyncIterator[None]:
        """The lifespan of a mounted gateway: the application's own start-up, which runs
        next, finds it ready (or `ready` timed out, logged)."""
        async with self.lifespan():
            if not await self.ready():
                log.warning("gateway.not_ready_at_start reason=%s", self.replica.readiness()[1])
            yield

    def mount(self, app: Starlette, prefix: str) -> None:
        """Mount the gateway at ``prefix`` of ``app`` (WebSocket at ``{prefix}/ws``) and run
        its lifespan around ``app``'s own, which keeps running: the gateway starts before
        it (once ready, or after ``broker_timeout``) and stops after it, so that lifespan may
        publish at either end. Call it before ``app`` starts serving."""
        app.mount(prefix, self._asgi)
        app.router.lifespan_context = chain_lifespans(
            lambda _: self._mounted(), None, app.router.lifespan_context
        )

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    # Hooks

    def on_connect(self, function: F) -> F:
        """Register the hook that decides who a new client is (`ConnectRequest` in; a
        `Principal`, None, or `Reject` out)."""
        return self.hooks.add_connect(function)

    def on_subscribe(self, namespace: str | None = None) -> Callable[[F], F]:
        """Register a hook run on each subscription to ``namespace`` (None: every one
        without its own) after the built-in permission checks (`SubscribeRequest` in)."""
        return lambda function: self.hooks.add_subscribe(namespace, function)

    def on_publish(
        self, namespace: str | None = None, *, model: Any | None = None
    ) -> Callable[[F], F]:
        """Register a hook run on each client publication to ``namespace`` (None: every one
        without its own), after validating ``data`` against ``model`` when given
        (`PublishRequest` in; None, or what to publish instead, out)."""
        return lambda function: self.hooks.add_publish(namespace, function, model)

    def rpc(self, method: str) -> Callable[[F], F]:
        """Register the function answering a client's ``rpc`` of ``method`` (`RpcRequest`
        in; the reply's data out)."""
        return lambda function: self.hooks.add_rpc(method, function)

    def on_disconnect(self, function: F) -> F:
        """Register the hook told that a connection ended (`DisconnectEvent`); best effort."""
        return self.hooks.add_disconnect(function)

    # The server API, in process

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> StreamPosition | None:
        """Publish ``data`` as the server does (no ``from``; no hook, no validation); its
        position where the namespace keeps history, else None. An ``idempotency_key``
        accepted on the channel within ``idempotency_window`` seconds publishes nothing
        again and returns the first publication's position.

        Raises:
            GatewayError: `bad_request` for a channel name, data JSON cannot hold or an
                ``idempotency_key`` that is not 1-64 characters; `unknown_namespace`,
                `too_large`, `unavailable`.
        """
        return await self.replica.publisher.publish(
            valid_channel(channel), json_value(data), idempotency_key=idempotency_key
        )

    async def broadcast(
        self, channels: Iterable[str], data: Any, *, idempotency_key: str | None = None
    ) -> dict[str, int]:
        """Publish ``data`` to each channel as the server; the offsets of those with history.
        The ``idempotency_key`` is checked on each channel on its own.

        Raises:
            GatewayError: as `publish`; nothing is published when a namespace is unknown.
        """
        names = list(dict.fromkeys(valid_channel(channel) for channel in channels))
        return await self.replica.publisher.broadcast(
            names, json_value(data), idempotency_key=idempotency_key
        )

    async def disconnect(self, user: str) -> None:
        """Close every connection of ``user``, on every replica, with 4003.

        Raises:
            GatewayError: `unavailable`.
        """
        await self.replica.control.disconnect_user(user)

    async def presence(self, channel: str) -> dict[str, Any]:
        """Everyone subscribed to ``channel`` on any replica: ``{client: {user, info}}``.

        Raises:
            GatewayError: `bad_request` where presence is off, `unknown_namespace`,
                `unavailable`.
        """
        channels = self.replica.channels
        return await channels.presence(channel, channels.namespaces.of(valid_channel(channel)))

    async def history(
        self, channel: str, since: StreamPosition | None = None, limit: int | None = None
    ) -> ChannelHistory:
        """The messages after ``since``, else the latest ones, oldest first: at most
        ``limit`` and at most ``history_reply_bytes`` of them.

        Raises:
            GatewayError: `bad_request` where history is off or ``since`` is not in this
                history, `unknown_namespace`, `unavailable`.
        """
        channels = self.replica.channels
        found = await channels.history(
            channel, channels.namespaces.of(valid_channel(channel)), since, limit
        )
        messages = [orjson.loads(frame) for _, frame in found.messages]
        return ChannelHistory(channel, found.position, messages, found.more)


def create_app(settings: Settings | None = None, *, broker: Broker | None = None) -> FastAPI:
    """One replica's application without hooks: ``Gateway(settings).app``."""
    return Gateway(settings, broker=broker).app
