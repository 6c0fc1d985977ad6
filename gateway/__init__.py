"""A horizontally scalable WebSocket pub/sub gateway: FastAPI + uvicorn replicas over Redis.

The public names load lazily, so that importing a light part of the package (the Python
client imports `gateway.wire`) never pulls in FastAPI or the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.version import __version__

if TYPE_CHECKING:
    from gateway.extend import ChannelHistory, Gateway, create_app
    from gateway.http.app import mount
    from gateway.services.hooks import (
        ConnectRequest,
        DisconnectEvent,
        Principal,
        PublishRequest,
        Reject,
        RpcRequest,
        SubscribeRequest,
    )
    from gateway.settings import Settings, load_settings
    from gateway.wire.errors import GatewayError
    from gateway.wire.protocol import StreamPosition
    from gateway.worker import Publisher

_PUBLIC = {
    "Gateway": "gateway.extend",
    "ChannelHistory": "gateway.extend",
    "create_app": "gateway.extend",
    "mount": "gateway.http.app",
    "Principal": "gateway.services.hooks",
    "Reject": "gateway.services.hooks",
    "ConnectRequest": "gateway.services.hooks",
    "SubscribeRequest": "gateway.services.hooks",
    "PublishRequest": "gateway.services.hooks",
    "RpcRequest": "gateway.services.hooks",
    "DisconnectEvent": "gateway.services.hooks",
    "Publisher": "gateway.worker",
    "GatewayError": "gateway.wire.errors",
    "StreamPosition": "gateway.wire.protocol",
    "Settings": "gateway.settings",
    "load_settings": "gateway.settings",
}

__all__ = [
    "ChannelHistory",
    "ConnectRequest",
    "DisconnectEvent",
    "Gateway",
    "GatewayError",
    "Principal",
    "PublishRequest",
    "Publisher",
    "Reject",
    "RpcRequest",
    "Settings",
    "StreamPosition",
    "SubscribeRequest",
    "__version__",
    "create_app",
    "load_settings",
    "mount",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
