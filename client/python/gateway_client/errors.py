"""How a client command fails: the protocol's error codes, plus a few of the client's own."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ClientErrorCode(StrEnum):
    """Codes the client produces itself; the server's are the protocol's error codes."""

    DISCONNECTED = "disconnected"
    """The connection closed after the command was sent, before its reply."""
    CLOSED = "closed"
    """The client was closed, or stopped on a close code that forbids reconnecting."""
    TIMEOUT = "timeout"
    """No reply within the client's request timeout."""
    OVERFLOW = "overflow"
    """``max_unacknowledged`` publishes already wait for their reply."""
    UNREACHABLE = "unreachable"
    """No connection could be made within the allowed attempts."""
    REFUSED = "refused"
    """The URL is no protocol endpoint, and retrying will not change that: the handshake
    was refused with an HTTP status such as 403 or 404 (``status``), or accepted without
    the ``pubsub.v1`` subprotocol that the gateway's ``/ws`` always agrees to."""


class GatewayClientError(Exception):
    """A command failed; ``code`` is the protocol's error code or a `ClientErrorCode`.

    ``frame`` is the server's `error` frame, if any, and ``details`` what it says exactly
    was wrong (`invalid_data`: the validation errors); ``status`` the HTTP status that
    refused the handshake (`ClientErrorCode.REFUSED`), if any.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        frame: dict[str, Any] | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = str(code)
        self.message = message
        self.frame = frame
        self.details: list[dict[str, Any]] | None = frame.get("details") if frame else None
        self.status = status
