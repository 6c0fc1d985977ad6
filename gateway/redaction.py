"""Keeps secrets out of the logs.

uvicorn logs each WebSocket handshake with its path and query string, so a token passed as
``?token=`` would land in the log; at debug level the ``websockets`` library logs frames,
``connect`` and ``refresh`` commands with their tokens included. `RedactSecrets`
rewrites both before a record is written. ``gateway serve`` installs it on every log handler;
an application that mounts the gateway should install it on its own handlers.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

_PATTERNS = (
    (re.compile(r"(?i)([?&](?:token|access_token|api_key)=)[^&\s\"']+"), r"\g<1>***"),
    (re.compile(r"(?i)(\"token\"\s*:\s*\")[^\"]*"), r"\g<1>***"),
    (re.compile(r"(?i)(authorization:\s*\w+\s+)\S+"), r"\g<1>***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "***"),
)
_HINTS = ("=", "eyJ", "token", "uthorization")


def redact(text: str) -> str:
    """``text`` without secrets: ``?token=`` and ``api_key`` query parameters, ``"token"``
    fields of logged frames, ``Authorization`` header values, and anything shaped like a JWT.
    """
    if not any(hint in text for hint in _HINTS):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """``url`` with the password of its user info (``redis://user:password@host``) hidden."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    if not password:
        return url
    scheme, sep, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}"


class RedactSecrets(logging.Filter):
    """A log filter that redacts each record's message once formatted (see `redact`).

    Arguments are often objects (a frame, a URL) formatted only when the record is written,
    so the filter formats the message itself and keeps the redacted text if it changed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it would
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add `RedactSecrets` to every handler of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(existing, RedactSecrets) for existing in handler.filters):
            handler.addFilter(RedactSecrets())
