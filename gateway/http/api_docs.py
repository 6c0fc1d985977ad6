"""The FastAPI application with API docs that work offline.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from the gateway itself:
the files the ``fastapi-offline`` package ships, served under ``/docs/assets``. Nothing on
those pages reaches another host: they are served with a Content-Security-Policy that keeps
every request on the gateway's own origin (ReDoc's sidebar links a logo from its CDN; the
policy stops the browser from fetching it, and ReDoc then leaves it out).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.transport.ports import route_path

DOCS_ASSETS = "/docs/assets"
"""Where Swagger UI's and ReDoc's scripts and styles are served (internal, like the docs)."""
DOCS_PAGES = ("/docs", "/redoc")

DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def documented_app(**options: Any) -> FastAPI:
    """``FastAPI(**options)`` whose docs pages use the packaged assets and the policy above."""
    app = FastAPIOffline(static_url=DOCS_ASSETS, **options)
    app.add_middleware(_DocsPolicy)
    return app


class _DocsPolicy:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) not in DOCS_PAGES:
            await self.app(scope, receive, send)
            return

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Content-Security-Policy"] = DOCS_POLICY
            await send(message)

        await self.app(scope, receive, with_policy)
