"""The public and the internal port: which paths each serves, and the sockets of ``gateway serve``.

With ``internal_port`` set, the operator's endpoints (the server API, metrics, the dashboard
and the API docs) are served only on that port, which a deployment keeps off the load
balancer; the public port answers 404 for them, exactly as for a path that does not exist.
The internal port serves everything the public one does as well, the probes included.

Mounted into another application the gateway owns no socket: the check then uses the port
the host's server accepted the request on (the ASGI ``server`` of the scope), so with
``internal_port`` set those paths answer only requests that arrived on that port of the
host's server, and 404 on any other.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

INTERNAL_PATHS = ("/api", "/metrics", "/admin", "/docs", "/redoc", "/openapi.json")
"""Served only on the internal port when there is one: each path and everything below it."""


def is_internal(path: str) -> bool:
    """Whether ``path`` (relative to where the gateway is mounted) is an internal endpoint."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in INTERNAL_PATHS)


class InternalPaths:
    """ASGI middleware: internal paths answer 404 unless the request came in on ``port``."""

    def __init__(self, app: ASGIApp, port: int | None) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.port is not None
            and scope["type"] == "http"
            and is_internal(route_path(scope))
            and _local_port(scope) != self.port
        ):
            await _NOT_FOUND(scope, receive, send)
            return
        await self.app(scope, receive, send)


_NOT_FOUND = JSONResponse({"detail": "Not Found"}, status_code=404)


def route_path(scope: Scope) -> str:
    """The request's path below the application's mount point."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _local_port(scope: Scope) -> int | None:
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else None


INTERNAL_PORT_OPTION = "--internal-port (or GATEWAY_INTERNAL_PORT)"


class PortUnavailable(Exception):
    """A port could not be bound; the message names it, says which it is and why."""


@dataclass
class Listeners:
    """The bound sockets of ``gateway serve``: the public one first."""

    host: str
    public: socket.socket
    internal: socket.socket | None = None

    @property
    def sockets(self) -> list[socket.socket]:
        return [self.public] if self.internal is None else [self.public, self.internal]

    def describe(self) -> str:
        """``public=http://HOST:PORT internal=http://HOST:PORT`` for the start-up log."""
        parts = [f"public={_url(self.public)}"]
        if self.internal is not None:
            parts.append(f"internal={_url(self.internal)}")
        return " ".join(parts)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def bind(host: str, port: int, internal_port: int | None) -> Listeners:
    """Bind the public port and, when set, the internal one, on ``host``.

    Raises:
        PortUnavailable: a port is taken or cannot be bound; nothing stays bound.
    """
    public = _bind_one(host, port, "public", "--port")
    if internal_port is None:
        return Listeners(host, public)
    try:
        internal = _bind_one(host, internal_port, "internal", INTERNAL_PORT_OPTION)
    except PortUnavailable:
        public.close()
        raise
    return Listeners(host, public, internal)


def _bind_one(host: str, port: int, which: str, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"{which} port {port} on {host} is already in use; "
                f"stop what listens there or choose another with {flag}"
            ) from None
        raise PortUnavailable(
            f"cannot listen on {which} port {port} on {host}: {exc.strerror or exc}"
        ) from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
