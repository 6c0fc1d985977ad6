"""The gateway's small vocabulary of failures, and the one table of what each code means.

`ERRORS` and `CLOSES` are the only place that says what an error code or a close code
means and what a client does about it. Everything else is derived from them or tested
against them: the tables of docs/protocol.md (`markdown_tables`), the reconnect policy of
both clients (the Python client reads `close_action` and `RETRYABLE_SUBSCRIBE_ERRORS`; the
browser client is compared with `as_json` by its node tests), a `Disconnect`'s
``reconnect``, the close an endpoint without `error` frames uses for an error
(`ErrorRule.closes_with`) and the HTTP status of the server API (`ErrorRule.status`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Literal

ClientAction = Literal["stop", "refresh", "now", "backoff"]
"""What a client does after a close: stop; get a new token, then reconnect; reconnect at
once (to the next URL); or reconnect after a backoff delay."""


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
    UNKNOWN_METHOD = "unknown_method"
    INVALID_DATA = "invalid_data"


class CloseCode(IntEnum):
    """WebSocket close codes the gateway sends."""

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


@dataclass(frozen=True, slots=True)
class CloseRule:
    """What a close code means and what a client does after it (``advice`` says it in words)."""

    meaning: str
    action: ClientAction
    advice: str

    @property
    def reconnect(self) -> bool:
        """Whether a client may connect again after this close."""
        return self.action != "stop"


CLOSES: dict[CloseCode, CloseRule] = {
    CloseCode.NORMAL: CloseRule("normal closure", "stop", "stop"),
    CloseCode.GOING_AWAY: CloseRule(
        "replica shutting down", "now", "reconnect at once, recovering"
    ),
    CloseCode.UNSUPPORTED_DATA: CloseRule(
        "binary frame, or data the channel's model refuses, on `/websocket`", "stop", "stop"
    ),
    CloseCode.MESSAGE_TOO_BIG: CloseRule(
        "frame larger than `max_message_bytes`", "stop", "stop; fix the sender"
    ),
    CloseCode.INTERNAL_ERROR: CloseRule(
        "internal error, or broker unreachable on `/websocket`",
        "backoff",
        "reconnect with backoff",
    ),
    CloseCode.SERVICE_RESTART: CloseRule(
        "replica restarting (drain)", "now", "reconnect at once, recovering"
    ),
    CloseCode.UNAUTHORIZED: CloseRule(
        "bad, missing or expired token", "refresh", "refresh the token, then reconnect"
    ),
    CloseCode.FORBIDDEN: CloseRule(
        "forbidden (for instance disconnected through the server API)", "stop", "stop"
    ),
    CloseCode.SLOW_CONSUMER: CloseRule(
        "slow consumer: its outbound queue overflowed", "backoff", "reconnect, recovering"
    ),
    CloseCode.TOO_MANY_REQUESTS: CloseRule(
        "too many errors or requests", "backoff", "reconnect with backoff"
    ),
}

UNLISTED_CLOSE_ACTION: ClientAction = "backoff"
"""What a client does after a close code the table does not list (1006: the connection
dropped without a close frame, and any code of a proxy in between)."""


MAX_CLOSE_REASON_BYTES = 123
"""The most a WebSocket close frame's reason holds (RFC 6455: 125 bytes with the code)."""


def close_reason(message: str) -> str:
    """``message`` cut to what a close frame's reason holds, on a character boundary."""
    return message.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why the server closes a connection: sent as a `disconnect` frame, then as the close code.

    Whether the client may reconnect follows from the code (`CLOSES`).
    """

    code: CloseCode
    reason: str

    @property
    def reconnect(self) -> bool:
        return CLOSES[self.code].reconnect


NORMAL = Disconnect(CloseCode.NORMAL, "normal")
SHUTDOWN = Disconnect(CloseCode.GOING_AWAY, "shutdown")
DRAIN = Disconnect(CloseCode.SERVICE_RESTART, "replica restarting")
MESSAGE_TOO_BIG = Disconnect(CloseCode.MESSAGE_TOO_BIG, "frame too large")
UNSUPPORTED_DATA = Disconnect(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
INVALID_DATA = Disconnect(CloseCode.UNSUPPORTED_DATA, "data the channel does not accept")
INTERNAL_ERROR = Disconnect(CloseCode.INTERNAL_ERROR, "internal error")
BROKER_UNAVAILABLE = Disconnect(CloseCode.INTERNAL_ERROR, "broker unavailable")
UNAUTHORIZED = Disconnect(CloseCode.UNAUTHORIZED, "unauthorized")
TOKEN_EXPIRED = Disconnect(CloseCode.UNAUTHORIZED, "token expired")
CONNECT_TIMEOUT = Disconnect(CloseCode.UNAUTHORIZED, "no connect command in time")
FORBIDDEN = Disconnect(CloseCode.FORBIDDEN, "forbidden")
DISCONNECTED_BY_SERVER = Disconnect(CloseCode.FORBIDDEN, "disconnected by the server")
SLOW_CONSUMER = Disconnect(CloseCode.SLOW_CONSUMER, "slow consumer")
TOO_MANY_REQUESTS = Disconnect(CloseCode.TOO_MANY_REQUESTS, "too many requests")


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """What an error code means, and what follows from it.

    ``retry``: a client retries a refused `subscribe` with backoff (else the subscription
    fails). ``status``: the HTTP status for it (the server API, ``POST /publish``).
    ``closes_with``: how an endpoint that cannot send `error` frames (``/websocket``)
    closes on it.
    """

    meaning: str
    retry: bool = False
    status: int = 500
    closes_with: Disconnect = INTERNAL_ERROR


ERRORS: dict[ErrorCode, ErrorRule] = {
    ErrorCode.BAD_REQUEST: ErrorRule("unparseable or invalid command", status=400),
    ErrorCode.UNKNOWN_OP: ErrorRule("the `op` is not one of the protocol's"),
    ErrorCode.UNAUTHORIZED: ErrorRule(
        "no valid connection token yet", status=401, closes_with=UNAUTHORIZED
    ),
    ErrorCode.FORBIDDEN: ErrorRule(
        "not allowed for this user, channel or namespace", status=403, closes_with=FORBIDDEN
    ),
    ErrorCode.UNKNOWN_NAMESPACE: ErrorRule(
        "strict namespaces and the channel's namespace is not configured", status=404
    ),
    ErrorCode.ALREADY_SUBSCRIBED: ErrorRule("the connection already holds this channel"),
    ErrorCode.NOT_SUBSCRIBED: ErrorRule(
        "unsubscribing from a channel the connection does not hold"
    ),
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: ErrorRule("over `max_subscriptions`"),
    ErrorCode.RATE_LIMITED: ErrorRule(
        "over the connection's command rate",
        retry=True,
        status=429,
        closes_with=TOO_MANY_REQUESTS,
    ),
    ErrorCode.TOO_LARGE: ErrorRule(
        "the resulting message would exceed `max_message_bytes`",
        status=413,
        closes_with=MESSAGE_TOO_BIG,
    ),
    ErrorCode.UNAVAILABLE: ErrorRule(
        "the broker is unreachable; retry later",
        retry=True,
        status=503,
        closes_with=BROKER_UNAVAILABLE,
    ),
    ErrorCode.INTERNAL: ErrorRule("a bug; the connection stays open", retry=True),
    ErrorCode.UNKNOWN_METHOD: ErrorRule("`rpc` names a method the application does not serve"),
    ErrorCode.INVALID_DATA: ErrorRule(
        "`data` does not validate against the channel's model; `details` says where",
        status=422,
        closes_with=INVALID_DATA,
    ),
}

RETRYABLE_SUBSCRIBE_ERRORS = frozenset(code.value for code, rule in ERRORS.items() if rule.retry)
"""Error codes after which a client retries a `subscribe` with backoff."""


def close_action(code: int, reconnect: bool | None = None) -> ClientAction:
    """What a client does after the server closed with ``code``.

    ``reconnect`` is the server's own word, from the `disconnect` frame that came before
    the close (None when there was none): False stops the client whatever the code; True
    never lets a code stop it.
    """
    rule = CLOSES.get(code)  # type: ignore[call-overload]
    action = rule.action if rule is not None else UNLISTED_CLOSE_ACTION
    if reconnect is False:
        return "stop"
    if reconnect is True and action == "stop":
        return UNLISTED_CLOSE_ACTION
    return action


class GatewayError(Exception):
    """A command failed; becomes an `error` frame with `code`, `message` and the command's id."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        id: int | str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id
        self.details = details
        """What exactly was wrong (`invalid_data`: pydantic's errors), sent as ``details``."""

    def with_id(self, id: int | str | None) -> GatewayError:
        """The same error, answering the command with this id."""
        return GatewayError(self.code, self.message, id, details=self.details)

    @property
    def closes_with(self) -> Disconnect:
        """How a connection that cannot answer with an `error` frame closes on this error."""
        return ERRORS[self.code].closes_with

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GatewayError):
            return NotImplemented
        return (self.code, self.message, self.id) == (other.code, other.message, other.id)

    def __hash__(self) -> int:
        return hash((self.code, self.message, self.id))

    def __repr__(self) -> str:
        return f"GatewayError({self.code.value!r}, {self.message!r}, id={self.id!r})"


BROKER_UNREACHABLE = "the broker is unreachable; retry later"


def unavailable(message: str = BROKER_UNREACHABLE) -> GatewayError:
    """The error of a broker that cannot be reached (or did not answer): `unavailable`."""
    return GatewayError(ErrorCode.UNAVAILABLE, message)


def markdown_tables() -> tuple[str, str]:
    """The error-code and close-code tables of docs/protocol.md, as Markdown."""
    errors = ["| code | meaning |", "|---|---|"]
    errors += [f"| `{code.value}` | {rule.meaning} |" for code, rule in ERRORS.items()]
    closes = ["| code | meaning | the client should |", "|---|---|---|"]
    closes += [f"| {int(code)} | {rule.meaning} | {rule.advice} |" for code, rule in CLOSES.items()]
    return "\n".join(errors), "\n".join(closes)


def as_json() -> dict[str, Any]:
    """The table as JSON values, for the browser client's tests."""
    return {
        "errors": {
            code.value: {"meaning": rule.meaning, "retry": rule.retry}
            for code, rule in ERRORS.items()
        },
        "closes": {
            str(int(code)): {"meaning": rule.meaning, "action": rule.action}
            for code, rule in CLOSES.items()
        },
        "unlisted_close_action": UNLISTED_CLOSE_ACTION,
    }


if __name__ == "__main__":  # python -m gateway.wire.errors [--json]: the tables, for docs/
    import sys

    print(
        json.dumps(as_json(), indent=2) if "--json" in sys.argv else "\n\n".join(markdown_tables())
    )
