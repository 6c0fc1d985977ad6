"""A ``GET /sse`` test client over httpx: parses the event stream as ``EventSource`` does
(``id``, ``data``, comments ignored) and keeps the last event id, to send back as
``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

Frame = dict[str, Any]


@dataclass
class SseStream:
    """One open stream; `expect` and `messages` wait for frames, keeping the others."""

    response: httpx.Response
    last_event_id: str = ""
    inbox: list[Frame] = field(default_factory=list)
    ended: bool = False
    _lines: AsyncIterator[str] | None = None
    _event_id: str | None = None
    _data: list[str] = field(default_factory=list)

    async def _next_frames(self, deadline: float) -> list[Frame]:
        if self._lines is None:
            self._lines = self.response.aiter_lines()
        frames: list[Frame] = []
        while not frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame; kept: {self.inbox[-5:]}")
            try:
                line = await asyncio.wait_for(anext(self._lines), remaining)
            except StopAsyncIteration:
                self.ended = True
                raise EOFError(f"the stream ended; kept: {self.inbox[-5:]}") from None
            except TimeoutError:
                raise TimeoutError(f"no matching frame; kept: {self.inbox[-5:]}") from None
            if line == "":
                if self._event_id is not None:
                    self.last_event_id = self._event_id
                    self._event_id = None
                if self._data:
                    frames.append(orjson.loads("\n".join(self._data)))
                    self._data = []
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    self._event_id = value
                elif name == "data":
                    self._data.append(value)
        return frames

    async def expect(self, match: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
        for index, frame in enumerate(self.inbox):
            if match(frame):
                return self.inbox.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            self.inbox.extend(await self._next_frames(deadline))
            for index, frame in enumerate(self.inbox):
                if match(frame):
                    return self.inbox.pop(index)

    async def messages(
        self, count: int, channel: str | None = None, timeout: float = 10.0
    ) -> list[Frame]:
        def is_message(frame: Frame) -> bool:
            return frame.get("op") == "message" and (channel is None or frame["channel"] == channel)

        deadline = time.monotonic() + timeout
        return [
            await self.expect(is_message, max(0.0, deadline - time.monotonic()))
            for _ in range(count)
        ]

    async def subscribed(self, channels: list[str], timeout: float = 10.0) -> dict[str, Frame]:
        """The `subscribed` frame of each channel."""
        found: dict[str, Frame] = {}
        for channel in channels:
            found[channel] = await self.expect(
                lambda f, c=channel: f.get("op") in ("subscribed", "error") and f.get("id") == c,
                timeout,
            )
        return found

    async def until_end(self, timeout: float = 10.0) -> list[Frame]:
        """Every frame until the server ends the stream."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(EOFError):
            while True:
                self.inbox.extend(await self._next_frames(deadline))
        return self.inbox


def sse_url(base: str, channels: list[str], **query: str) -> str:
    pairs = [("channel", channel) for channel in channels] + list(query.items())
    return f"{base}/sse?{urlencode(pairs)}"


@contextlib.asynccontextmanager
async def open_stream(
    base: str,
    channels: list[str],
    *,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
    **query: str,
) -> AsyncIterator[SseStream]:
    """Open ``/sse`` on ``base`` (``http://host:port``) for ``channels``; the response must
    be a 200 event stream."""
    sent = dict(headers or {})
    if last_event_id:
        sent["Last-Event-ID"] = last_event_id
    timeout = httpx.Timeout(10.0, read=None)
    async with (
        httpx.AsyncClient(timeout=timeout) as http,
        http.stream("GET", sse_url(base, channels, **query), headers=sent) as response,
    ):
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseStream(response)
