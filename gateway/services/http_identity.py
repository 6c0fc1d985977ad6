"""Who an HTTP request of a client is (a ``GET /sse`` stream, a ``POST /publish``): what
``on_connect`` says, asked with the verified claims of the token the request carried, else
that token's principal. One rule for both, as `gateway.session.handshake.identify` is for
WebSocket handshakes."""

from __future__ import annotations

from typing import Any

from gateway.security.auth import Principal, TokenError
from gateway.security.guard import Security
from gateway.services.hooks import ConnectRequest, Hooks
from gateway.wire.errors import ErrorCode, GatewayError


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header; None for any other."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.partition(" ")
    return (credentials.strip() or None) if scheme.lower() == "bearer" else None


async def request_principal(
    security: Security, hooks: Hooks, scope: Any, token: str | None, transport: str
) -> tuple[Principal | None, bool]:
    """The request's principal, and whether ``on_connect`` chose it (then it needs no
    token); ``(None, False)`` when neither the hook nor a token names anyone (with auth
    off, or without a token).

    Raises:
        GatewayError: `unauthorized` for an invalid token (before the hook runs); what the
            hook raised (its `Reject`, `internal`).
    """
    verifier = security.verifier
    verified = None
    if token is not None and verifier.enabled:
        try:
            verified = verifier.connection(token)
        except TokenError as error:
            raise GatewayError(ErrorCode.UNAUTHORIZED, error.message) from None
    if hooks.on_connect is not None:
        claims = verified.claims if verified is not None else None
        chosen = await hooks.connect(ConnectRequest.from_scope(scope, claims, transport))
        if chosen is not None:
            return chosen, True
    return verified, False
