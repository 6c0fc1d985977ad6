"""The gateway's error and close codes as Centrifugo's client protocol speaks them.

Every `ErrorCode` of `gateway.wire.errors.ERRORS` maps to one of Centrifugo's error codes
(100-113), and every `Disconnect` the gateway sends maps to one of its close codes
(3000-3999): Centrifugo's SDKs reconnect after 3000-3499 and stop after 3500-3999, so a
close of ours must land on the side of that line its own rule (`CLOSES`) puts it on.
Named disconnects are mapped one by one (4001 means a bad token, an expired one or a
missing `connect`, which Centrifugo tells apart); any other falls back on its close code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from gateway.wire import errors
from gateway.wire.errors import CloseCode, Disconnect, ErrorCode


class CentrifugoError(IntEnum):
    """Centrifugo's error codes (the ``code`` of a reply's ``error``)."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112
    CONCURRENT_PAGINATION = 113


TEMPORARY = frozenset(
    {
        CentrifugoError.INTERNAL,
        CentrifugoError.TOO_MANY_REQUESTS,
        CentrifugoError.CONCURRENT_PAGINATION,
    }
)
"""Errors Centrifugo marks ``temporary``: the SDK may retry the same command."""

ERROR_MESSAGES = {
    CentrifugoError.INTERNAL: "internal server error",
    CentrifugoError.UNAUTHORIZED: "unauthorized",
    CentrifugoError.UNKNOWN_CHANNEL: "unknown channel",
    CentrifugoError.PERMISSION_DENIED: "permission denied",
    CentrifugoError.METHOD_NOT_FOUND: "method not found",
    CentrifugoError.ALREADY_SUBSCRIBED: "already subscribed",
    CentrifugoError.LIMIT_EXCEEDED: "limit exceeded",
    CentrifugoError.BAD_REQUEST: "bad request",
    CentrifugoError.NOT_AVAILABLE: "not available",
    CentrifugoError.TOKEN_EXPIRED: "token expired",
    CentrifugoError.EXPIRED: "expired",
    CentrifugoError.TOO_MANY_REQUESTS: "too many requests",
    CentrifugoError.UNRECOVERABLE_POSITION: "unrecoverable position",
    CentrifugoError.CONCURRENT_PAGINATION: "concurrent pagination",
}

ERROR_CODES: dict[ErrorCode, CentrifugoError] = {
    ErrorCode.BAD_REQUEST: CentrifugoError.BAD_REQUEST,
    ErrorCode.UNKNOWN_OP: CentrifugoError.METHOD_NOT_FOUND,
    ErrorCode.UNKNOWN_METHOD: CentrifugoError.METHOD_NOT_FOUND,
    ErrorCode.INVALID_DATA: CentrifugoError.BAD_REQUEST,
    ErrorCode.UNAUTHORIZED: CentrifugoError.UNAUTHORIZED,
    ErrorCode.FORBIDDEN: CentrifugoError.PERMISSION_DENIED,
    ErrorCode.UNKNOWN_NAMESPACE: CentrifugoError.UNKNOWN_CHANNEL,
    ErrorCode.ALREADY_SUBSCRIBED: CentrifugoError.ALREADY_SUBSCRIBED,
    ErrorCode.NOT_SUBSCRIBED: CentrifugoError.BAD_REQUEST,
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: CentrifugoError.LIMIT_EXCEEDED,
    ErrorCode.RATE_LIMITED: CentrifugoError.TOO_MANY_REQUESTS,
    ErrorCode.TOO_LARGE: CentrifugoError.LIMIT_EXCEEDED,
    ErrorCode.UNAVAILABLE: CentrifugoError.INTERNAL,
    ErrorCode.INTERNAL: CentrifugoError.INTERNAL,
}
"""Each of our error codes as Centrifugo's (a test checks that none is missing)."""


@dataclass(frozen=True, slots=True)
class CentrifugoClose:
    """A close as Centrifugo sends it: the WebSocket close code and its reason."""

    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        """Whether Centrifugo's SDKs connect again after it."""
        return self.code < 3500 or self.code >= 5000 or 4000 <= self.code < 4500


CONNECTION_CLOSED = CentrifugoClose(3000, "connection closed")
SHUTDOWN = CentrifugoClose(3001, "shutdown")
SERVER_ERROR = CentrifugoClose(3004, "internal server error")
EXPIRED = CentrifugoClose(3005, "connection expired")
SLOW = CentrifugoClose(3008, "slow")
INSUFFICIENT_STATE = CentrifugoClose(3010, "insufficient state")
FORCE_RECONNECT = CentrifugoClose(3011, "force reconnect")
NO_PONG = CentrifugoClose(3012, "no pong")
TOO_MANY_REQUESTS = CentrifugoClose(3013, "too many requests")
INVALID_TOKEN = CentrifugoClose(3500, "invalid token")
BAD_REQUEST = CentrifugoClose(3501, "bad request")
FORCE_DISCONNECT = CentrifugoClose(3503, "force disconnect")
CONNECTION_LIMIT = CentrifugoClose(3504, "connection limit")
CHANNEL_LIMIT = CentrifugoClose(3505, "channel limit")
PERMISSION_DENIED = CentrifugoClose(3507, "permission denied")

CLOSES_BY_CODE: dict[CloseCode, CentrifugoClose] = {
    CloseCode.NORMAL: CONNECTION_CLOSED,
    CloseCode.GOING_AWAY: SHUTDOWN,
    CloseCode.UNSUPPORTED_DATA: BAD_REQUEST,
    CloseCode.MESSAGE_TOO_BIG: BAD_REQUEST,
    CloseCode.INTERNAL_ERROR: SERVER_ERROR,
    CloseCode.SERVICE_RESTART: FORCE_RECONNECT,
    CloseCode.UNAUTHORIZED: INVALID_TOKEN,
    CloseCode.FORBIDDEN: PERMISSION_DENIED,
    CloseCode.SLOW_CONSUMER: SLOW,
    CloseCode.TOO_MANY_REQUESTS: TOO_MANY_REQUESTS,
}
"""Each close code of ours (`gateway.wire.errors.CLOSES`) as Centrifugo's, for the
disconnects not named in `CLOSES_BY_DISCONNECT`."""

# Closes only this protocol has, as `Disconnect` values of ours (counted under their code).
BAD_FRAME = Disconnect(CloseCode.UNSUPPORTED_DATA, "bad request")
PONG_MISSING = Disconnect(CloseCode.INTERNAL_ERROR, "no pong")
TOO_MANY_CHANNELS = Disconnect(CloseCode.FORBIDDEN, "channel limit")
STATE_LOST = Disconnect(CloseCode.SLOW_CONSUMER, "insufficient state")

CLOSES_BY_DISCONNECT: dict[Disconnect, CentrifugoClose] = {
    errors.TOKEN_EXPIRED: EXPIRED,
    errors.CONNECT_TIMEOUT: NO_PONG,
    errors.DISCONNECTED_BY_SERVER: FORCE_DISCONNECT,
    PONG_MISSING: NO_PONG,
    TOO_MANY_CHANNELS: CHANNEL_LIMIT,
    STATE_LOST: INSUFFICIENT_STATE,
}
"""Disconnects that share a close code of ours but not Centrifugo's."""


def close_for(reason: Disconnect) -> CentrifugoClose:
    """How a connection of Centrifugo's protocol is closed for ``reason``."""
    return CLOSES_BY_DISCONNECT.get(reason) or CLOSES_BY_CODE[reason.code]
