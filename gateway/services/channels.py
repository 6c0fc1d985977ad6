"""Reads of a channel shared by the protocol's ops and the server HTTP API: its history and
its presence, within what its namespace allows."""

from __future__ import annotations

from typing import Any

from gateway.broker.base import HistoryStore
from gateway.services.history import HistoryReader, HistorySlice
from gateway.services.namespaces import Namespaces, history_policy
from gateway.services.presence import Presence
from gateway.settings import NamespaceOptions
from gateway.wire.channels import namespace_of
from gateway.wire.errors import ErrorCode, GatewayError
from gateway.wire.protocol import StreamPosition


class Channels:
    """History and presence of the channels of one replica."""

    def __init__(
        self,
        namespaces: Namespaces,
        history: HistoryStore,
        presence: Presence,
        *,
        max_message_bytes: int,
        history_reply_bytes: int,
    ) -> None:
        self.namespaces = namespaces
        self._history = history
        self.history_reader = HistoryReader(history, max_message_bytes)
        """Bounded reads of a history, page by page (recovery reads with it too)."""
        self._presence = presence
        self._reply_bytes = history_reply_bytes

    async def history(
        self,
        channel: str,
        options: NamespaceOptions,
        since: StreamPosition | None,
        limit: int | None,
    ) -> HistorySlice:
        """The messages after ``since``, else the latest; at most ``limit``, oldest first.

        Matching messages beyond ``history_reply_bytes`` are left for the next request:
        the slice then says ``more``.

        Raises:
            GatewayError: `bad_request` where history is off or ``since`` is not in this
                history, `unavailable`.
        """
        policy = history_policy(options)
        if policy is None:
            raise GatewayError(
                ErrorCode.BAD_REQUEST, f"history is off in namespace {namespace_of(channel)!r}"
            )
        limit = policy.size if limit is None else min(limit, policy.size)
        after = None if since is None else since.offset
        page = await self.history_reader.read(
            channel, policy, after=after, count=limit, max_bytes=self._reply_bytes
        )
        if since is None:
            return page
        if page.position.epoch != since.epoch:
            raise GatewayError(
                ErrorCode.BAD_REQUEST,
                f"since.epoch {since.epoch!r} is not the channel's epoch {page.position.epoch!r}: "
                "that history was lost; re-sync",
            )
        if since.offset > page.position.offset:
            raise GatewayError(
                ErrorCode.BAD_REQUEST,
                f"since.offset {since.offset} is beyond the channel's latest offset "
                f"{page.position.offset}",
            )
        return page

    async def remove_history(self, channel: str, options: NamespaceOptions) -> None:
        """Drop the channel's retained messages (its epoch and offset stay).

        Raises:
            GatewayError: `bad_request` where history is off, `unavailable`.
        """
        if history_policy(options) is None:
            raise GatewayError(
                ErrorCode.BAD_REQUEST, f"history is off in namespace {namespace_of(channel)!r}"
            )
        await self._history.remove_history(channel)

    async def presence(self, channel: str, options: NamespaceOptions) -> dict[str, Any]:
        """Everyone subscribed to ``channel``, on any replica: ``{client: {user, info}}``.

        Raises:
            GatewayError: `bad_request` where presence is off, `unavailable`.
        """
        if not options.presence:
            raise GatewayError(
                ErrorCode.BAD_REQUEST, f"presence is off in namespace {namespace_of(channel)!r}"
            )
        return await self._presence.members(channel, options.join_leave)
