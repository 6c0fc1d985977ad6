"""The gateway's small vocabulary of failures: error codes, close codes and disconnects."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """Codes carried by `error` frames, exactly as the protocol names them."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_OP = "unknown_op"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    UNKNOWN_NAMESPACE = "unknown_namespace"
    ALREADY_SUBSCRIBED = "already_subscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes the gateway sends (see the close-code table of the protocol)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    SLOW_CONSUMER = 4008
    TOO_MANY_REQUESTS = 4029


class GatewayError(Exception):
    """A command failed; becomes an `error` frame with `code`, `message` and the command's id."""

    def __init__(self, code: ErrorCode, message: str, id: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id

    def with_id(self, id: int | str | None) -> GatewayError:
        """The same error, answering the command with this id."""
        return GatewayError(self.code, self.message, id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GatewayError):
            return NotImplemented
        return (self.code, self.message, self.id) == (other.code, other.message, other.id)

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.id))

    def __repr__(self) -> str:
        return f"GatewayError({self.code.value!r}, {self.message!r}, id={self.id!r})"


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why the server closes a connection: sent as a `disconnect` frame, then as the close code."""

    code: CloseCode
    reason: str
    reconnect: bool


NORMAL = Disconnect(CloseCode.NORMAL, "normal", reconnect=False)
SHUTDOWN = Disconnect(CloseCode.GOING_AWAY, "shutdown", reconnect=True)
DRAIN = Disconnect(CloseCode.SERVICE_RESTART, "replica restarting", reconnect=True)
MESSAGE_TOO_BIG = Disconnect(CloseCode.MESSAGE_TOO_BIG, "frame too large", reconnect=False)
UNSUPPORTED_DATA = Disconnect(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted", False)
INTERNAL_ERROR = Disconnect(CloseCode.INTERNAL_ERROR, "internal error", reconnect=True)
BROKER_UNAVAILABLE = Disconnect(CloseCode.INTERNAL_ERROR, "broker unavailable", reconnect=True)
UNAUTHORIZED = Disconnect(CloseCode.UNAUTHORIZED, "unauthorized", reconnect=True)
TOKEN_EXPIRED = Disconnect(CloseCode.UNAUTHORIZED, "token expired", reconnect=True)
CONNECT_TIMEOUT = Disconnect(CloseCode.UNAUTHORIZED, "no connect command in time", True)
FORBIDDEN = Disconnect(CloseCode.FORBIDDEN, "forbidden", reconnect=False)
DISCONNECTED_BY_SERVER = Disconnect(CloseCode.FORBIDDEN, "disconnected by the server", False)
SLOW_CONSUMER = Disconnect(CloseCode.SLOW_CONSUMER, "slow consumer", reconnect=True)
TOO_MANY_REQUESTS = Disconnect(CloseCode.TOO_MANY_REQUESTS, "too many requests", reconnect=True)
