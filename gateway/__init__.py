"""A horizontally scalable WebSocket pub/sub gateway: FastAPI + uvicorn replicas over Redis."""

from __future__ import annotations

__version__ = "0.1.0"

from gateway.app import create_app, mount
from gateway.settings import Settings, load_settings

__all__ = ["Settings", "__version__", "create_app", "load_settings", "mount"]
