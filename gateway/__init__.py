"""A horizontally scalable WebSocket pub/sub gateway: FastAPI + uvicorn replicas over Redis.

The public names load lazily, so that importing a light part of the package (the Python
client imports `gateway.wire`) never pulls in FastAPI or the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.version import __version__

if TYPE_CHECKING:
    from gateway.http.app import create_app, mount
    from gateway.settings import Settings, load_settings

_PUBLIC = {
    "create_app": "gateway.http.app",
    "mount": "gateway.http.app",
    "Settings": "gateway.settings",
    "load_settings": "gateway.settings",
}

__all__ = ["Settings", "__version__", "create_app", "load_settings", "mount"]


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
