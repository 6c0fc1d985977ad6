"""The plain-text dialect (``/websocket``): every text frame a client sends is published as a
string to one channel, and it receives that channel's messages as bare text.

Hooks apply as on ``/ws``. Without `error` frames to answer with, a refusal (a `Reject` of
``on_subscribe`` or ``on_publish``, `invalid_data`) closes the connection with the close
code of its error code; a hook that fails (`internal`) drops that one line, logged, and
the connection goes on.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.frames import Outgoing
from gateway.core.outbox import Sink
from gateway.security.auth import Principal
from gateway.services.namespaces import history_policy
from gateway.session.connection import Connection, Inbound, SessionContext
from gateway.wire.errors import UNSUPPORTED_DATA, ErrorCode, GatewayError


class PlainText:
    """How a plain-text client sees a publication: a message's `data` as text, nothing of
    any other frame (presence events)."""

    def encode(self, message: Outgoing) -> Outgoing | None:
        frame: Any = orjson.loads(message.payload)
        if frame.get("op") != "message":
            return None
        data = frame.get("data")
        return Outgoing(data.encode() if isinstance(data, str) else orjson.dumps(data))


PLAIN_TEXT = PlainText()


class PlainTextConnection(Connection):
    """A ``/websocket`` client: each text frame it sends is published as a string to one
    channel, and it receives every publication of that channel as bare text."""

    __slots__ = ("_channel",)

    batches = False
    encoding = PLAIN_TEXT

    def __init__(
        self,
        context: SessionContext,
        inbound: Inbound,
        sink: Sink,
        principal: Principal,
        channel: str,
    ) -> None:
        super().__init__(context, inbound, sink, principal)
        self._channel = channel

    async def opened(self) -> None:
        if not self.guard.open(self._inbound.query_params.get("token"), connect_op=False):
            return
        options = self.context.channels.namespaces.of(self._channel)
        self.guard.check_subscribe(self._channel, options, None)
        principal = self.principal
        await self.context.hooks.subscribe(self._channel, principal.user, self.id, principal.info)
        await self.subscribe(self._channel, history_policy(options))
        if options.presence:
            await self.context.presence.join(
                self._channel, self.id, self.user, self.principal.info, options.join_leave
            )

    async def on_text(self, text: str) -> None:
        self.guard.check_rate()
        channel = self._channel
        options = self.context.channels.namespaces.of(channel)
        self.guard.check_publish(channel, options, channel in self.channels)
        data: Any = text
        hooks = self.context.hooks
        rule = hooks.publishes_through(channel)
        if rule is not None:
            principal = self.principal
            try:
                data = await hooks.publish(
                    rule, channel, text, principal.user, self.id, principal.info
                )
            except GatewayError as error:
                if error.code is not ErrorCode.INTERNAL:
                    raise
                return
        await self.context.publisher.publish(channel, data, sender=self.sender, options=options)

    async def on_binary(self, data: bytes) -> None:
        self.close(UNSUPPORTED_DATA)
