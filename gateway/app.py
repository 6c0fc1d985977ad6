"""The FastAPI application: routes and lifespan wired to a `Replica`. No logic of its own.

Run on its own (``gateway serve``), or mounted into an existing app::

    realtime = create_app(settings)
    app = FastAPI(lifespan=realtime.router.lifespan_context)
    app.mount("/realtime", realtime)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import __version__
from gateway.api import api_router
from gateway.api_docs import documented_app
from gateway.assets import browser_client, locked_down, static_text, with_base
from gateway.broker import Broker
from gateway.ports import InternalPaths
from gateway.replica import Replica
from gateway.settings import Settings, load_settings


def create_app(settings: Settings | None = None, *, broker: Broker | None = None) -> FastAPI:
    """Build one replica's application; settings default to the environment and config file."""
    replica = Replica(settings if settings is not None else load_settings(), broker)

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
    app.add_middleware(InternalPaths, port=replica.settings.internal_port)
    app.state.replica = replica
    app.router.add_websocket_route("/ws", replica.serve_protocol)
    app.router.add_websocket_route("/websocket", replica.serve_plain_text)
    app.include_router(api_router(replica))
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
