"""Knowing whether Redis can be reached, and saying so in the log.

A replica reaches Redis over two kinds of link: the command link (a pool of connections for
publish, history, presence and the registry) and one pub/sub link per listener. Each kind
learns of an outage its own way, but both retry with the same backoff
(`gateway.aio.backoff.Backoff`) and log an outage the same way through `Outage`: a warning
naming the Redis address at each failed attempt (with the delay before the next one) and at
the reconnection.

`CommandLink` holds the command link's state. Commands are not sent on a timer: when a
command fails for want of a connection (not when Redis answers with an error), a probe pings
Redis at once; if that fails too the link is down, and the probe goes on with backoff until
Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import ResponseError

from gateway.aio.backoff import Backoff

log = logging.getLogger(__name__)


def describe(error: BaseException) -> str:
    """An exception as a log field: its type and its message (redis-py's ``repr`` has
    only the type)."""
    text = str(error)
    return f"{type(error).__name__}({text})" if text else type(error).__name__


def is_connection_failure(error: BaseException) -> bool:
    """True when ``error`` says nothing reached Redis or nothing came back from it, rather
    than Redis answering with an error."""
    return not isinstance(error, ResponseError)


def stop_if_cancelled(error: Exception) -> None:
    """Raise `asyncio.CancelledError` if the current task is being cancelled: redis-py
    can turn a cancellation into a timeout or connection error.

    Raises:
        asyncio.CancelledError: when the task is being cancelled.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error


class Outage:
    """The log lines of one link's attempts to reach Redis at ``address``."""

    def __init__(self, link: str, address: str) -> None:
        self.link = link
        self.address = address
        self.attempts = 0
        """Failed attempts since the link was last up."""
        self._since: float | None = None

    @property
    def down(self) -> bool:
        """True after a failed attempt, until the next success."""
        return self.attempts > 0

    def lost(self, error: BaseException) -> None:
        """A link that was up failed."""
        log.warning(
            "broker.disconnected link=%s address=%s error=%s",
            self.link,
            self.address,
            describe(error),
        )
        self._since = time.monotonic()

    def failed(self, error: BaseException, retry_in: float) -> None:
        """An attempt to (re)connect failed; the next is in ``retry_in`` seconds."""
        self.attempts += 1
        if self._since is None:
            self._since = time.monotonic()
        log.warning(
            "broker.unreachable link=%s address=%s attempt=%d retry_in=%.2fs error=%s",
            self.link,
            self.address,
            self.attempts,
            retry_in,
            describe(error),
        )

    def connected(self) -> None:
        """The link is up: a warning after an outage, else a plain note."""
        if self._since is None:
            log.info("broker.connected link=%s address=%s", self.link, self.address)
        else:
            log.warning(
                "broker.reconnected link=%s address=%s failed_attempts=%d down_for=%.2fs",
                self.link,
                self.address,
                self.attempts,
                time.monotonic() - self._since,
            )
        self.attempts = 0
        self._since = None


class CommandLink:
    """Whether commands reach Redis; see the module docstring.

    ``probe`` is one attempt to reach Redis (it raises when Redis cannot be reached);
    ``restored`` is called when the link is up again after having been lost.
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        restored: Callable[[], None],
        *,
        address: str,
        timeout: float,
        backoff: tuple[float, float],
    ) -> None:
        self._probe = probe
        self._restored = restored
        self._timeout = timeout
        self._backoff = Backoff(*backoff)
        self._outage = Outage("commands", address)
        self._up = False
        self._was_up = False
        self._probing: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """False from start until Redis first answered, and from a failed probe until one
        succeeds."""
        return self._up

    def start(self) -> None:
        """Reach Redis for the first time, in the background."""
        self._start_probe()

    async def open(self) -> None:
        """Reach Redis for the first time, now: the link is up when this returns.

        Raises:
            Exception: what the probe raised (`TimeoutError` after ``timeout``).
        """
        async with asyncio.timeout(self._timeout):
            await self._probe()
        self._up = self._was_up = True
        self._outage.connected()

    async def close(self) -> None:
        probing, self._probing = self._probing, None
        if probing is not None:
            probing.cancel()
            await asyncio.gather(probing, return_exceptions=True)
        self._up = False

    def failed(self, error: BaseException) -> None:
        """A command failed with ``error``. When nothing could reach Redis, an immediate
        probe tells one dropped connection (the link stays up) from Redis out of reach
        (the link is down until a probe succeeds)."""
        if self._up and is_connection_failure(error):
            self._start_probe(error)

    def _start_probe(self, error: BaseException | None = None) -> None:
        if self._probing is None or self._probing.done():
            self._probing = asyncio.get_running_loop().create_task(
                self._probe_until_up(error), name="redis-command-link"
            )

    async def _probe_until_up(self, error: BaseException | None) -> None:
        """Probe until Redis answers. After a command's ``error``, the link stays up
        unless the first probe fails too."""
        self._backoff.reset()
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._probe()
                break
            except Exception as exc:  # any failure is one more failed attempt
                stop_if_cancelled(exc)
                if self._up:
                    self._up = False
                    self._outage.lost(error or exc)
                delay = self._backoff.delay()
                self._outage.failed(exc, delay)
                await asyncio.sleep(delay)
        if self._up:
            return
        self._up = True
        self._outage.connected()
        if self._was_up:
            self._restored()
        self._was_up = True
