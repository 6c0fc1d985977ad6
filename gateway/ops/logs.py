"""Structured logs: JSON lines when stderr is not a terminal, readable text when it is.

Every record carries the replica (``node``) and, inside a connection's task, the client id
and user, taken from context variables rather than passed around.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

import orjson

client_id: ContextVar[str | None] = ContextVar("client_id", default=None)
user_id: ContextVar[str | None] = ContextVar("user_id", default=None)

LogFormat = Literal["auto", "json", "text"]


class _Context(logging.Filter):
    """Adds node, client and user to every record."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self._node = node

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self._node
        record.client = client_id.get()
        record.user = user_id.get()
        return True


class _QuietConnections(logging.Filter):
    """Drops uvicorn's per-connection lines ("connection open", "[accepted]") below DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("uvicorn"):
            return True
        message = record.getMessage()
        return not (message.startswith("connection ") or message.endswith("[accepted]"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event, message and context."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": _event_of(message, record.name),
            "message": message,
            "node": getattr(record, "node", None),
        }
        for key in ("client", "user"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def _event_of(message: str, logger: str) -> str:
    """Our messages start with an event name such as ``broker.connected``; others don't."""
    head = message.split(" ", 1)[0]
    return head if "." in head and head.replace(".", "").replace("_", "").isalnum() else logger


class TextFormatter(logging.Formatter):
    """``time level logger message [client=.. user=..]`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s%(context)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{key}={value}"
            for key in ("client", "user")
            if (value := getattr(record, key, None)) is not None
        ]
        record.context = f"  [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def configure(
    level: str, node: str, log_format: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Route every log record (ours and uvicorn's) to ``stream`` (stderr) in the format."""
    stream = stream if stream is not None else sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(_Context(node))
    if level != "debug":
        handler.addFilter(_QuietConnections())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
