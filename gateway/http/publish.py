"""``POST /publish`` (beside ``GET /sse``): a client publishes with its connection token,
without a WebSocket. The route reads a bounded body and answers what
`gateway.services.http_publish.HttpPublishing` says: the `published` frame, or the `error`
frame with its code's HTTP status. Browsers on another allowed origin get CORS headers,
their preflight included."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.security.origins import OriginPolicy
from gateway.services.admission import client_address
from gateway.services.http_identity import bearer_token
from gateway.services.http_publish import HttpPublishing
from gateway.wire import protocol
from gateway.wire.errors import ERRORS, ErrorCode, GatewayError

JSON = "application/json"


def publish_router(publishing: HttpPublishing, origins: OriginPolicy) -> APIRouter:
    """The ``/publish`` routes of one replica."""
    router = APIRouter(tags=["clients"])

    @router.post("/publish", response_class=Response)
    async def publish(request: Request) -> Response:
        """Publish as a client (the connection token as `Authorization: Bearer`): body
        `{"channel", "data", "idempotency_key"?, "client"?}`; the answer is the
        `published` frame, or the `error` frame with its code's HTTP status."""
        headers = request.headers
        cors = _cors(origins, headers.get("origin"), headers.get("host"))
        try:
            body = await _bounded_body(request, publishing.max_body_bytes)
            reply = await publishing.publish(
                body,
                token=bearer_token(headers.get("authorization")),
                address=client_address(request.scope),
                origin=headers.get("origin"),
                host=headers.get("host"),
                scope=request.scope,
            )
        except GatewayError as error:
            return Response(protocol.error(error), ERRORS[error.code].status, cors, media_type=JSON)
        return Response(reply, 200, cors, media_type=JSON)

    @router.options("/publish", include_in_schema=False)
    async def preflight(request: Request) -> Response:
        headers = request.headers
        cors = _cors(origins, headers.get("origin"), headers.get("host"))
        if not cors:
            return Response(status_code=403)
        cors.update(
            {
                "access-control-allow-methods": "POST",
                "access-control-allow-headers": "authorization, content-type",
                "access-control-max-age": "600",
            }
        )
        return Response(status_code=204, headers=cors)

    return router


def _cors(origins: OriginPolicy, origin: str | None, host: str | None) -> dict[str, str]:
    """The CORS headers for a request from ``origin``: none for a refused or absent one."""
    if origin is None or origins.refusal(origin, host) is not None:
        return {}
    return {"access-control-allow-origin": origin, "vary": "origin"}


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request's body, read no further than ``limit`` bytes.

    Raises:
        GatewayError: `too_large` past it.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(ErrorCode.TOO_LARGE, f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(ErrorCode.TOO_LARGE, f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
