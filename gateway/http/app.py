"""The FastAPI application: routes and lifespan wired to a `Replica`. No logic of its own.

Run on its own (``gateway serve``), or mounted into an existing app, whose own lifespan
keeps running::

    app = FastAPI(lifespan=my_lifespan)
    realtime = mount(app, "/realtime", create_app(settings))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Lifespan

from gateway.broker import Broker
from gateway.http.api import api_router
from gateway.http.api_docs import documented_app
from gateway.http.assets import browser_client, locked_down, static_text, with_base
from gateway.http.centrifugo_api import CentrifugoApi, CentrifugoApiRoute
from gateway.http.publish import publish_router
from gateway.replica import Replica
from gateway.services.hooks import Hooks
from gateway.settings import Settings, load_settings
from gateway.transport.ports import InternalPaths
from gateway.version import __version__


def create_app(
    settings: Settings | None = None, *, broker: Broker | None = None, hooks: Hooks | None = None
) -> FastAPI:
    """Build one replica's application; settings default to the environment and config file.

    ``hooks`` are the application's (`gateway.Gateway`, whose ``app`` this is, passes its own).
    """
    replica = Replica(settings if settings is not None else load_settings(), broker, hooks)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await replica.start()
        try:
            yield
        finally:
            await replica.stop()

    app = documented_app(
        title="pubsub gateway",
        version=__version__,
        summary="WebSocket pub/sub across replicas through Redis",
        lifespan=lifespan,
    )
    centrifugo_api = CentrifugoApi(
        replica.publisher,
        replica.channels,
        replica.control,
        replica.registry,
        replica.hub,
        replica.settings.history_reply_bytes,
    )
    app.add_middleware(CentrifugoApiRoute, api=centrifugo_api, api_key=replica.settings.api_key)
    app.add_middleware(InternalPaths, port=replica.settings.internal_port)
    app.state.replica = replica
    app.router.add_websocket_route("/ws", replica.serve_protocol)
    app.router.add_websocket_route("/websocket", replica.serve_plain_text)
    app.router.add_websocket_route("/connection/websocket", replica.serve_centrifugo)
    app.router.routes.append(Route("/sse", replica.serve_sse, include_in_schema=False))
    app.include_router(publish_router(replica.http_publishing, replica.origins))
    app.include_router(
        api_router(
            replica.settings.api_key,
            replica.publisher,
            replica.channels,
            replica.control,
            replica.registry,
        )
    )
    demo_page = static_text("index.html")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo(request: Request) -> HTMLResponse:
        return HTMLResponse(with_base(demo_page, request.scope.get("root_path", "")))

    admin_page = static_text("admin.html")
    admin_headers = locked_down(admin_page)

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    async def admin(request: Request) -> HTMLResponse:
        """The live dashboard; it asks for the API key and reads ``/api/info`` with it."""
        html = with_base(admin_page, request.scope.get("root_path", ""))
        return HTMLResponse(html, headers=admin_headers)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics of this replica."""
        return PlainTextResponse(replica.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    theme = static_text("theme.css")

    @app.get("/theme.css", include_in_schema=False)
    async def theme_css() -> Response:
        return Response(theme, media_type="text/css", headers={"Cache-Control": "no-cache"})

    icon = static_text("favicon.svg")

    @app.get("/favicon.svg", include_in_schema=False)
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        """The pages' icon (``/favicon.ico`` too, for browsers that ask for it unprompted)."""
        cached = {"Cache-Control": "public, max-age=86400"}
        return Response(icon, media_type="image/svg+xml", headers=cached)

    client_script = browser_client()

    @app.get("/client/gateway.js", include_in_schema=False)
    async def client_js() -> Response:
        no_cache = {"Cache-Control": "no-cache"}
        return Response(client_script, media_type="text/javascript", headers=no_cache)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok", "node": replica.settings.node_id}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """200 when accepting clients; 503 while the broker is unreachable or the replica drains."""
        ready, reason = replica.readiness()
        body = {"status": "ready" if ready else "unavailable", "reason": reason}
        return JSONResponse(body, status_code=200 if ready else 503)

    return app


def mount(app: Starlette, prefix: str, gateway: Starlette | None = None) -> Starlette:
    """Mount ``gateway`` (default: ``create_app()``) at ``prefix`` of ``app``, and run its
    lifespan around ``app``'s own; returns ``gateway``.

    Starlette runs the lifespan of the outermost app only, so a mounted gateway would
    otherwise never start. Order: the gateway starts before ``app``'s lifespan begins and
    stops after it ends, so that lifespan may publish at either end. Call it before ``app``
    starts serving.
    """
    gateway = gateway if gateway is not None else create_app()
    app.mount(prefix, gateway)
    app.router.lifespan_context = chain_lifespans(
        gateway.router.lifespan_context, gateway, app.router.lifespan_context
    )
    return gateway


def chain_lifespans(outer: Lifespan[Any], outer_app: Any, inner: Lifespan[Any]) -> Lifespan[Any]:
    """A lifespan that runs ``outer(outer_app)`` around ``inner(app)``: ``inner`` starts only
    once ``outer`` has, and ends before ``outer`` does. State either yields is merged."""

    @asynccontextmanager
    async def chained(app: Any) -> AsyncIterator[Mapping[str, Any] | None]:
        async with outer(outer_app) as outer_state, inner(app) as inner_state:
            if outer_state is None and inner_state is None:
                yield None
            else:
                yield {**(outer_state or {}), **(inner_state or {})}

    return cast("Lifespan[Any]", chained)
