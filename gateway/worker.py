"""`Publisher`: publishing to a gateway's channels from another process (a worker, a script,
a cron job), straight into Redis, without HTTP and without running a replica.

It publishes exactly as a replica does, because it is a replica's publish path: the same
publication service (`gateway.services.publisher`, which builds the `message` frame and
checks its size) over the same Redis broker (`gateway.broker.redis`: the same script,
keys, offsets, history and envelope), only without pub/sub listeners. Subscribers on every
replica receive what it publishes, offsets stay consecutive beside the clients' own
publications, and clients recover it from history like any other message. Namespace
options (history size and TTL, strict namespaces) come from the same settings as the
replicas'.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from gateway.broker.redis import RedisBroker
from gateway.core.stats import Stats
from gateway.services.hooks import json_value
from gateway.services.namespaces import Namespaces
from gateway.services.publisher import Publisher as PublishService
from gateway.settings import ConfigError, Settings, load_settings
from gateway.wire.channels import valid_channel
from gateway.wire.protocol import StreamPosition


class Publisher:
    """Publishes as the server API does (no ``from``), from any process that reaches Redis::

        async with Publisher("redis://127.0.0.1:6379/0") as publisher:
            position = await publisher.publish("chat:lobby", {"text": "build finished"})

    ``url`` overrides the settings' ``redis_url``; ``settings`` default to the environment
    and config file, as the replicas read them (namespaces, ``redis_prefix``,
    ``redis_cluster``, ``max_message_bytes``, ``idempotency_window``).

    Raises:
        ConfigError: no Redis URL is given or configured.
    """

    def __init__(self, url: str | None = None, *, settings: Settings | None = None) -> None:
        if settings is None:
            settings = load_settings(**({"redis_url": url} if url is not None else {}))
        elif url is not None:
            settings = settings.model_copy(update={"redis_url": url})
        if settings.redis_url is None:
            raise ConfigError(
                "Publisher needs Redis: pass its URL, or set redis_url (GATEWAY_REDIS_URL)"
            )
        self.settings = settings
        self._broker = RedisBroker(
            settings.redis_url,
            prefix=settings.redis_prefix,
            timeout=settings.broker_timeout,
            cluster=settings.redis_cluster,
            idempotency_window=settings.idempotency_window,
        )
        self._service = PublishService(
            self._broker, Namespaces(settings), Stats(), settings.max_message_bytes
        )
        self._started = False

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect to Redis (``async with`` does it).

        Raises:
            GatewayError: `unavailable` when Redis does not answer within ``broker_timeout``.
        """
        if not self._started:
            await self._broker.start_publishing()
            self._started = True

    async def close(self) -> None:
        """Close the connections to Redis."""
        if self._started:
            self._started = False
            await self._broker.close()

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> StreamPosition | None:
        """Publish ``data`` (a JSON value or a pydantic model) to ``channel``; its position
        where the namespace keeps history, else None. No hook and no validation run: the
        publisher is trusted, as the server API is. An ``idempotency_key`` accepted on the
        channel within ``idempotency_window`` seconds (by this publisher, a replica or any
        other) publishes nothing again and returns the first publication's position.

        Raises:
            GatewayError: `bad_request` for a channel name, data JSON cannot hold or an
                ``idempotency_key`` that is not 1-64 characters; `unknown_namespace`,
                `too_large`, `unavailable`.
            RuntimeError: the publisher was not started.
        """
        return await self._running().publish(
            valid_channel(channel), json_value(data), idempotency_key=idempotency_key
        )

    async def broadcast(
        self, channels: Iterable[str], data: Any, *, idempotency_key: str | None = None
    ) -> dict[str, int]:
        """Publish ``data`` to each channel; the offsets of those with history. The
        ``idempotency_key`` is checked on each channel on its own.

        Raises:
            GatewayError: as `publish`.
            RuntimeError: the publisher was not started.
        """
        names = list(dict.fromkeys(valid_channel(channel) for channel in channels))
        return await self._running().broadcast(
            names, json_value(data), idempotency_key=idempotency_key
        )

    def _running(self) -> PublishService:
        if not self._started:
            raise RuntimeError("start the Publisher first: async with Publisher(...) as p")
        return self._service
