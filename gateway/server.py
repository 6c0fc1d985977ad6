"""uvicorn's server for one replica, with SIGTERM turned into a graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from types import FrameType

import uvicorn

from gateway.replica import Replica

log = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    """On SIGTERM: not ready at once, clients told to reconnect (1012) over the drain
    window, then uvicorn's usual shutdown and exit status 0. SIGINT, or a second SIGTERM,
    stops at once as uvicorn does."""

    def __init__(
        self, config: uvicorn.Config, replica: Replica, listening: str | None = None
    ) -> None:
        """``listening`` describes the sockets given to `run` (uvicorn logs only those it
        binds itself), for the start-up log."""
        super().__init__(config)
        self._replica = replica
        self._listening = listening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self._listening:
            log.info("server.listening %s", self._listening)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain is None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin_drain)
            return
        super().handle_exit(sig, frame)

    def _begin_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._replica.drain()
        finally:
            self.should_exit = True
