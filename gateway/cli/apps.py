"""``--app MODULE:ATTR``: the application's `Gateway`, imported as uvicorn imports an app,
with the command's own options applied to the settings it was built with."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from gateway.extend import Gateway
from gateway.settings import ConfigError, Settings, with_overrides


def load_gateway(spec: str) -> Gateway:
    """The `Gateway` named by ``MODULE:ATTR`` (``ATTR`` may be dotted), importing
    ``MODULE`` with the current directory on the import path.

    Raises:
        ConfigError: the form is wrong, the module or attribute is missing, or the
            attribute is no `Gateway`; the message says which.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"--app takes MODULE:ATTR (a Gateway object), not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigError(f"--app {spec}: no module named {exc.name!r}") from None
        raise
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigError(
                f"--app {spec}: module {module_name!r} has no {attribute!r}"
            ) from None
    if not isinstance(value, Gateway):
        raise ConfigError(
            f"--app {spec}: {attribute} is a {type(value).__name__}, not a gateway.Gateway"
        )
    return value


def configured(gateway: Gateway, config: str | None, **overrides: Any) -> Settings:
    """Apply a command's options to ``gateway``'s settings: the keys of the ``config`` file,
    then ``overrides`` (those given, not None). Returns the settings it serves with.

    Raises:
        ConfigError: the settings are invalid, or they would change for a gateway whose
            application was built already (at import).
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    if config is None and not given:
        return gateway.settings
    settings = with_overrides(gateway.settings, config, **given)
    if settings != gateway.settings:
        try:
            gateway.configure(settings)
        except RuntimeError as exc:
            raise ConfigError(f"--app: {exc}") from None
    return gateway.settings
