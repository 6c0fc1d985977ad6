"""Every Redis key and pub/sub channel name the gateway uses, built from one prefix.

A channel's names all carry the channel as a hash tag (``{chat:room1}``), so on a Redis
Cluster its pub/sub topic, history and presence live on the same shard.
"""

from __future__ import annotations

from gateway.wire.channels import CONTROL_CHANNEL


class KeySpace:
    """Redis names for one deployment (one prefix)."""

    __slots__ = ("_prefix", "_topic_head")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._topic_head = f"{prefix}:{{"

    def topic(self, channel: str) -> str:
        """The Redis pub/sub channel carrying a gateway channel's publications."""
        return f"{self._topic_head}{channel}}}"

    def meta(self, channel: str) -> str:
        """Hash of a channel's history state: ``epoch`` and ``top`` (the latest offset)."""
        return f"{self._topic_head}{channel}}}:meta"

    def stream(self, channel: str) -> str:
        """Stream of a channel's retained messages; entry ids are ``<offset>-0``."""
        return f"{self._topic_head}{channel}}}:hist"

    def once(self, channel: str, idempotency_key: str) -> str:
        """A publication's idempotency key on a channel, kept for the idempotency window:
        the first publication's ``<offset>:<epoch>`` (empty on channels without history)."""
        return f"{self._topic_head}{channel}}}:once:{idempotency_key}"

    def presence(self, channel: str) -> str:
        """Hash ``client -> {user, info}`` of a channel's subscribers."""
        return f"{self._topic_head}{channel}}}:presence"

    def presence_expiry(self, channel: str) -> str:
        """Sorted set ``client -> expiry (ms)`` beside `presence`."""
        return f"{self._topic_head}{channel}}}:presence:exp"

    def nodes(self) -> str:
        """The set of replica ids that announced themselves (the registry of ``/api/info``).

        Its hash tag, ``{#nodes}``, can never be a channel's, as ``#`` is not allowed in
        channel names; every registry key shares it, so they live on one Cluster shard.
        """
        return f"{self._prefix}:{{#nodes}}"

    def node(self, node: str) -> str:
        """The state of one replica, expiring unless its heartbeat refreshes it."""
        return f"{self._prefix}:{{#nodes}}:{node}"

    def control_topic(self) -> str:
        """The pub/sub channel of cross-replica commands (`CONTROL_CHANNEL`'s topic)."""
        return self.topic(CONTROL_CHANNEL)

    def channel_of(self, topic: str) -> str | None:
        """The gateway channel of a pub/sub topic, or None for a name that is not a topic."""
        if topic.startswith(self._topic_head) and topic.endswith("}"):
            return topic[len(self._topic_head) : -1]
        return None
