"""Issuing gateway tokens in your application's backend (see docs/security.md).

Your backend knows who the user is; it signs a short-lived token the browser hands to the
gateway. Only the backend and the gateways know the secret.
"""

from __future__ import annotations

import time
from typing import Any

import jwt  # pip install "pyjwt[crypto]"

TOKEN_LIFETIME = 600
"""Seconds; the client asks for a new token (and sends `refresh`) before it runs out."""


def connection_token(
    secret: str,
    user_id: str,
    *,
    channels: list[str] | None = None,
    publish: list[str] | None = None,
    info: dict[str, Any] | None = None,
) -> str:
    """A connection token: who the user is, and optionally where they may go."""
    claims: dict[str, Any] = {"sub": user_id, "exp": int(time.time()) + TOKEN_LIFETIME}
    if channels is not None:
        claims["channels"] = channels  # globs: the channels the user may subscribe to
    if publish is not None:
        claims["publish"] = publish  # globs: the channels the user may publish to
    if info is not None:
        claims["info"] = info  # shown to others in presence
    return jwt.encode(claims, secret, algorithm="HS256")


def subscription_token(secret: str, user_id: str, channel: str) -> str:
    """A subscription token: lets ``user_id`` subscribe to one private channel."""
    claims = {"sub": user_id, "channel": channel, "exp": int(time.time()) + TOKEN_LIFETIME}
    return jwt.encode(claims, secret, algorithm="HS256")


if __name__ == "__main__":
    import os

    secret = os.environ["GATEWAY_JWT_SECRET"]
    print(connection_token(secret, "alice", channels=["chat:*", "$user:alice"]))
