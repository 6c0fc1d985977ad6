"""The pubsub.v1 dialect (``/ws``): protocol v1 commands in, v1 frames out."""

from __future__ import annotations

import asyncio
import logging

from gateway.core.outbox import Sink
from gateway.security.auth import Principal
from gateway.session.commands import Commands, published
from gateway.session.connection import Connection, Inbound, SessionContext
from gateway.wire import protocol
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.protocol import Publish, StreamPosition

log = logging.getLogger(__name__)

PIPELINED_PUBLISHES = 256
"""Publications of one connection that may be on their way to the broker at once."""


class ProtocolConnection(Connection):
    """A ``/ws`` client speaking protocol v1."""

    __slots__ = ("_batch_open", "_commands", "_pending")

    def __init__(
        self,
        context: SessionContext,
        commands: Commands,
        inbound: Inbound,
        sink: Sink,
        principal: Principal,
    ) -> None:
        super().__init__(context, inbound, sink, principal)
        self._commands = commands
        self._pending: list[bytes | tuple[Publish, asyncio.Future[StreamPosition | None]]] | None
        self._pending = None
        """Replies held back behind publications still on their way to the broker."""
        self._batch_open = False
        """True from queueing a publication until the end of that loop pass: what is
        queued meanwhile leaves for the broker in the same pipeline, after it."""

    def send(self, payload: bytes) -> None:
        pending = self._pending
        if pending is not None:
            pending.append(payload)
        else:
            super().send(payload)

    async def opened(self) -> None:
        if self.guard.open(self._inbound.query_params.get("token"), connect_op=True):
            self._commands.welcome(self)

    async def on_text(self, text: str) -> None:
        """Run the frame's commands in order, replies in the same order.

        Consecutive `publish` commands do not wait for one another: they go to the broker
        together (one round trip) and their replies follow in order; any other command
        first waits for them. A lone `publish` goes at once. A client that sends commands
        faster than it reads the replies is slowed down (its next command waits for room in
        its queue) rather than disconnected, unless it stops reading (see `make_room`).
        """
        commands = self._commands
        counts = self.context.stats.commands
        frame = protocol.parse(text)
        for index, command in enumerate(frame):
            pending = self._pending
            if pending is not None and (
                not isinstance(command, Publish) or len(pending) >= PIPELINED_PUBLISHES
            ):
                await self._settle()
            if not await self.make_room():
                return
            if not self.guard.admit(command):
                continue
            if isinstance(command, GatewayError):
                counts["invalid", command.code.value] += 1
                self.send_error(command)
                continue
            if isinstance(command, Publish) and (
                self._pending is not None
                or (index + 1 < len(frame) and isinstance(frame[index + 1], Publish))
            ):
                await self._publish_later(command)
                continue
            op = protocol.op_of(command)
            try:
                await commands.run(self, command)
                counts[op, "ok"] += 1
            except GatewayError as error:
                counts[op, error.code.value] += 1
                self.send_error(error.with_id(command.id))
            except Exception:
                self._failed(op, command.id)
        await self._settle()

    def _failed(self, op: str, command_id: int | str | None) -> None:
        """Answer a command that failed unexpectedly with `internal`; the connection goes on."""
        log.exception("command.failed client=%s op=%s", self.id, op)
        self.context.stats.commands[op, ErrorCode.INTERNAL.value] += 1
        self.send_error(GatewayError(ErrorCode.INTERNAL, "internal error", command_id))

    async def _publish_later(self, command: Publish) -> None:
        """Queue a pipelined publication behind the earlier ones.

        Publications queued in one loop pass leave in one pipeline, in order. When the
        pass ended before this one is queued (its ``on_publish`` hook waited on something,
        or its client on room in the queue), the earlier ones may still be on their way
        in another pipeline: this one then waits until the broker took them, so that it
        can never overtake them.
        """
        if self._pending is None:
            self._pending = []
        commands = self._commands
        try:
            data, options = await commands.prepare_publication(self, command)
            if not self._batch_open:
                await self._publications_taken()
            future = commands.publish_later(self, command, data, options)
        except GatewayError as error:
            self.context.stats.commands["publish", error.code.value] += 1
            self.send_error(error.with_id(command.id))
        except Exception:
            self._failed("publish", command.id)
        else:
            self._pending.append((command, future))
            if not self._batch_open:
                self._batch_open = True
                asyncio.get_running_loop().call_soon(self._close_batch)

    def _close_batch(self) -> None:
        self._batch_open = False

    async def _publications_taken(self) -> None:
        """Wait until the broker settled every publication queued so far."""
        waiting = [
            item[1]
            for item in self._pending or ()
            if isinstance(item, tuple) and not item[1].done()
        ]
        if waiting:
            await asyncio.wait(waiting)

    async def _settle(self) -> None:
        """Send the held-back replies in order, waiting for each publication's outcome."""
        pending, self._pending = self._pending, None
        counts = self.context.stats.commands
        for item in pending or ():
            if isinstance(item, bytes):
                self.send(item)
                continue
            command, future = item
            try:
                position = await future
            except GatewayError as error:
                counts["publish", error.code.value] += 1
                self.send_error(error.with_id(command.id))
            except Exception:
                self._failed("publish", command.id)
            else:
                counts["publish", "ok"] += 1
                self.send(published(command, position))

    async def on_binary(self, data: bytes) -> None:
        if not self.guard.admit(None):
            return
        self.send_error(
            GatewayError(ErrorCode.BAD_REQUEST, "binary frames are not accepted; send text")
        )
