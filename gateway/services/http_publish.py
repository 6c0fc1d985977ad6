"""``POST /publish``: a client's publication without a WebSocket (beside ``GET /sse``).

The request carries the connection token as ``Authorization: Bearer`` (none when auth is
off) and the body ``{"channel", "data", "idempotency_key"?, "client"?}``; ``client`` is the
caller's stream id (the `welcome` of its ``/sse`` stream), shown as the message's
``from.client`` (a fresh id without it). It passes the same checks as `publish` on ``/ws``:
the ``Origin`` allow-list, the token, the command rate (per user, or per client address
without auth), ``max_message_bytes``, the namespace and the publish permission (as for a
client not subscribed to the channel). The application's hooks run as for ``publish`` on
``/ws``: ``on_connect`` says who the caller is (transport ``"http"``; each request is asked
anew, and no ``on_disconnect`` follows), then the channel's model and ``on_publish``. The
answer is the `published` frame, or the `error` frame with the HTTP status of its code.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from gateway.security.auth import ANONYMOUS, Principal
from gateway.security.guard import Security
from gateway.security.origins import OriginPolicy
from gateway.security.ratelimit import TokenBucket
from gateway.services.hooks import Hooks
from gateway.services.http_identity import request_principal
from gateway.services.namespaces import Namespaces
from gateway.services.publisher import Publisher, Sender
from gateway.settings import Settings
from gateway.wire import protocol
from gateway.wire.channels import is_valid_channel
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.protocol import check_idempotency_key

RATE_KEYS = 10_000
"""Callers whose command rate is remembered at once (the least recent are forgotten)."""
FIELDS = frozenset({"channel", "data", "idempotency_key", "client"})
MAX_CLIENT_LENGTH = 64
_CLIENT_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_")


class HttpPublishing:
    """Publications of ``POST /publish`` for one replica."""

    def __init__(
        self,
        settings: Settings,
        security: Security,
        origins: OriginPolicy,
        namespaces: Namespaces,
        publisher: Publisher,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = settings.rate
        self._max_bytes = settings.max_message_bytes
        self._security = security
        self._origins = origins
        self._namespaces = namespaces
        self._publisher = publisher
        self._hooks = hooks if hooks is not None else Hooks()
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def max_body_bytes(self) -> int:
        """The largest body read; a larger one is `too_large` unread."""
        return self._max_bytes

    async def publish(
        self,
        body: bytes,
        *,
        token: str | None,
        address: str | None,
        origin: str | None,
        host: str | None,
        scope: Any,
    ) -> bytes:
        """Check and publish one request's message; the `published` frame. ``scope`` is
        the request's ASGI scope, for ``on_connect``.

        Raises:
            GatewayError: `forbidden` (origin, permission), `unauthorized`, `rate_limited`,
                `too_large`, `bad_request`, `unknown_namespace`, `invalid_data`,
                `unavailable`, or what a hook raised.
        """
        refusal = self._origins.refusal(origin, host)
        if refusal is not None:
            raise GatewayError(ErrorCode.FORBIDDEN, refusal)
        principal = await self._principal(token, scope)
        self._check_rate(principal.user or address or "")
        if len(body) > self._max_bytes:
            raise GatewayError(ErrorCode.TOO_LARGE, f"the body exceeds {self._max_bytes} bytes")
        fields = _fields(body)
        channel = fields["channel"]
        options = self._namespaces.of(channel)
        self._security.access.check_publish(principal, channel, options, False)
        client = fields.get("client") or secrets.token_urlsafe(12)
        key = fields.get("idempotency_key")
        data = fields["data"]
        rule = self._hooks.publishes_through(channel)
        if rule is not None:
            data = await self._hooks.publish(
                rule, channel, data, principal.user, client, principal.info, key
            )
        position = await self._publisher.publish(
            channel,
            data,
            sender=Sender(client, principal.user, principal.info),
            options=options,
            idempotency_key=key,
        )
        if position is None:
            return protocol.reply("published", None, channel=channel)
        return protocol.reply("published", None, channel=channel, offset=position.offset)

    async def _principal(self, token: str | None, scope: Any) -> Principal:
        """Who publishes: the principal ``on_connect`` chose, else the token's (anonymous
        with auth off). A token sent is verified first, for the hook's ``claims``.

        Raises:
            GatewayError: `unauthorized` for a missing or invalid token; a hook's `Reject`.
        """
        principal, _ = await request_principal(self._security, self._hooks, scope, token, "http")
        if principal is not None:
            return principal
        if not self._security.verifier.enabled:
            return ANONYMOUS
        raise GatewayError(ErrorCode.UNAUTHORIZED, "send the connection token as a Bearer")

    def _check_rate(self, caller: str) -> None:
        if not self._rate:
            return
        buckets = self._buckets
        bucket = buckets.get(caller)
        if bucket is None:
            bucket = buckets[caller] = TokenBucket(self._rate, self._rate, self._clock)
            if len(buckets) > RATE_KEYS:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(caller)
        if not bucket.take():
            raise GatewayError(ErrorCode.RATE_LIMITED, "too many publishes; slow down")


def _fields(body: bytes) -> dict[str, Any]:
    """The body's fields, checked.

    Raises:
        GatewayError: `bad_request`.
    """
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(ErrorCode.BAD_REQUEST, f"invalid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise GatewayError(ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise GatewayError(ErrorCode.BAD_REQUEST, f"unknown fields: {', '.join(unknown)[:200]}")
    if not is_valid_channel(fields.get("channel")):
        raise GatewayError(
            ErrorCode.BAD_REQUEST,
            "channel must be 1-255 characters of A-Z a-z 0-9 _ - : . @ / = , $",
        )
    if "data" not in fields:
        raise GatewayError(ErrorCode.BAD_REQUEST, "data is required")
    check_idempotency_key(fields.get("idempotency_key"))
    client = fields.get("client")
    if client is not None and (
        not isinstance(client, str)
        or not 0 < len(client) <= MAX_CLIENT_LENGTH
        or not set(client) <= _CLIENT_CHARACTERS
    ):
        raise GatewayError(
            ErrorCode.BAD_REQUEST, "client must be 1-64 characters of A-Z a-z 0-9 - _"
        )
    return fields
