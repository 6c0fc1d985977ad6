"""What Centrifugo's server API asks of the connections of a user on every replica:
subscribe them to a channel, unsubscribe them, disconnect them with a code of its choosing.

Each handler runs on every replica for a command of the control channel
(`gateway.control.channel.ControlChannel.handlers`, wired by the replica) and acts on the
connections of ``user`` here (one of them with ``client``). Subscribing and unsubscribing
applies to Centrifugo connections only; a disconnect closes ``/ws`` connections too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.services.connections import Client, ConnectionRegistry
from gateway.session.centrifugo import CentrifugoConnection
from gateway.wire.centrifugo.codes import FORCE_DISCONNECT, CentrifugoClose
from gateway.wire.errors import DISCONNECTED_BY_SERVER

SUBSCRIBE, UNSUBSCRIBE, DISCONNECT = (
    "centrifugo.subscribe",
    "centrifugo.unsubscribe",
    "centrifugo.disconnect",
)


class ServerSideCommands:
    """The control channel's Centrifugo commands, for the connections of one replica."""

    def __init__(self, connections: ConnectionRegistry) -> None:
        self._connections = connections

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        return {
            SUBSCRIBE: self.subscribe,
            UNSUBSCRIBE: self.unsubscribe,
            DISCONNECT: self.disconnect,
        }

    def subscribe(self, command: dict[str, Any]) -> None:
        channel = command.get("channel")
        if isinstance(channel, str):
            for connection in self._targets(command):
                if isinstance(connection, CentrifugoConnection):
                    connection.server_subscribe(channel)

    def unsubscribe(self, command: dict[str, Any]) -> None:
        channel = command.get("channel")
        if isinstance(channel, str):
            for connection in self._targets(command):
                if isinstance(connection, CentrifugoConnection):
                    connection.server_unsubscribe(channel)

    def disconnect(self, command: dict[str, Any]) -> None:
        code, reason = command.get("code"), command.get("reason")
        close = FORCE_DISCONNECT
        if isinstance(code, int) and 3000 <= code <= 4999:
            close = CentrifugoClose(code, reason if isinstance(reason, str) else "")
        for connection in self._targets(command):
            if isinstance(connection, CentrifugoConnection):
                connection.disconnect_with(close)
            else:
                connection.close(DISCONNECTED_BY_SERVER)

    def _targets(self, command: dict[str, Any]) -> list[Client]:
        user, client = command.get("user"), command.get("client")
        if not isinstance(user, str):
            return []
        found = self._connections.of_user(user)
        if isinstance(client, str) and client:
            found = [connection for connection in found if connection.id == client]
        return found
