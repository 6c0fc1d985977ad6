"""Brokers carry publications between replicas: in one process (memory) or across many (Redis)."""

from __future__ import annotations

from gateway.broker.base import Broker, BrokerHandler
from gateway.settings import Settings


def create_broker(settings: Settings) -> Broker:
    """The broker the settings ask for; Redis is imported only when configured."""
    if settings.redis_url is None:
        from gateway.broker.memory import MemoryBroker

        return MemoryBroker(idempotency_window=settings.idempotency_window)
    from gateway.broker.redis import RedisBroker

    return RedisBroker(
        settings.redis_url,
        prefix=settings.redis_prefix,
        timeout=settings.broker_timeout,
        cluster=settings.redis_cluster,
        idempotency_window=settings.idempotency_window,
    )


__all__ = ["Broker", "BrokerHandler", "create_broker"]
