"""The gateway's version, where every layer can read it without importing the package's face."""

from __future__ import annotations

__version__ = "0.1.0"
