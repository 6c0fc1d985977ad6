"""The uvicorn internals the transport relies on are where it expects them.

`gateway.transport.websocket` and `gateway.transport.http` subclass uvicorn's protocols and
override or read parts of them that are not uvicorn's public API, and `gateway.cli.serve`
subclasses its server. pyproject.toml pins uvicorn to the range this is tested on; when a
new uvicorn moves one of these, this test says which and what to do, before any connection
breaks in a subtler way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

ADVICE = (
    "uvicorn {version} moved {what}. Read the new uvicorn source, adapt {ours}, run the "
    "transport tests (tests/integration/test_websocket.py, test_limits.py, test_admission.py), "
    "then move the uvicorn range in pyproject.toml."
)

METHODS: list[tuple[type[Any], str, list[str], str]] = [
    # (uvicorn class, method, its parameters, our module that overrides or calls it)
    (
        WebSocketsSansIOProtocol,
        "__init__",
        ["self", "config", "server_state", "app_state"],
        "gateway/transport/websocket.py",
    ),
    (
        WebSocketsSansIOProtocol,
        "handle_connect",
        ["self", "event"],
        "gateway/transport/websocket.py",
    ),
    (WebSocketsSansIOProtocol, "handle_close", ["self", "event"], "gateway/transport/websocket.py"),
    (
        WebSocketsSansIOProtocol,
        "handle_parser_exception",
        ["self"],
        "gateway/transport/websocket.py",
    ),
    (WebSocketsSansIOProtocol, "send", ["self", "message"], "gateway/transport/websocket.py"),
    (WebSocketsSansIOProtocol, "keepalive_timeout", ["self"], "gateway/transport/websocket.py"),
    (WebSocketsSansIOProtocol, "shutdown", ["self"], "gateway/transport/websocket.py"),
    (WebSocketsSansIOProtocol, "run_asgi", ["self"], "gateway/transport/websocket.py"),
    (
        WebSocketsSansIOProtocol,
        "connection_lost",
        ["self", "exc"],
        "gateway/transport/websocket.py",
    ),
    (WebSocketsSansIOProtocol, "pause_writing", ["self"], "gateway/transport/websocket.py"),
    (WebSocketsSansIOProtocol, "resume_writing", ["self"], "gateway/transport/websocket.py"),
    (
        HttpToolsProtocol,
        "__init__",
        ["self", "config", "server_state", "app_state"],
        "gateway/transport/http.py",
    ),
    (HttpToolsProtocol, "connection_made", ["self", "transport"], "gateway/transport/http.py"),
    (HttpToolsProtocol, "connection_lost", ["self", "exc"], "gateway/transport/http.py"),
    (HttpToolsProtocol, "on_message_begin", ["self"], "gateway/transport/http.py"),
    (HttpToolsProtocol, "on_headers_complete", ["self"], "gateway/transport/http.py"),
    (HttpToolsProtocol, "on_message_complete", ["self"], "gateway/transport/http.py"),
    (HttpToolsProtocol, "handle_websocket_upgrade", ["self"], "gateway/transport/http.py"),
    (uvicorn.Server, "startup", ["self", "sockets"], "gateway/cli/serve.py"),
    (uvicorn.Server, "handle_exit", ["self", "sig", "frame"], "gateway/cli/serve.py"),
]

ATTRIBUTES: list[tuple[type[Any], str, str]] = (
    [
        # (uvicorn class, an attribute its code sets on self, our module that reads or sets it)
        (WebSocketsSansIOProtocol, name, "gateway/transport/websocket.py")
        for name in (
            "queue",
            "writable",
            "ping_interval",
            "conn",
            "scope",
            "request",
            "response",
            "handshake_complete",
            "close_timer",
            "close_sent",
            "disconnected",
            "read_paused",
            "transport",
            "loop",
        )
    ]
    + [
        (HttpToolsProtocol, name, "gateway/transport/http.py")
        for name in ("client", "loop", "transport")
    ]
    + [(uvicorn.Server, name, "gateway/cli/serve.py") for name in ("should_exit", "started")]
)


def _parameters(function: Callable[..., Any]) -> list[str]:
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _advice(what: str, ours: str) -> str:
    return ADVICE.format(version=uvicorn.__version__, what=what, ours=ours)


@pytest.mark.parametrize(
    ("cls", "name", "parameters", "ours"),
    METHODS,
    ids=[f"{c.__name__}.{n}" for c, n, _, _ in METHODS],
)
def test_the_methods_we_override_keep_their_signature(
    cls: type[Any], name: str, parameters: list[str], ours: str
) -> None:
    method = getattr(cls, name, None)
    assert callable(method), _advice(f"{cls.__qualname__}.{name} (it is gone)", ours)
    found = _parameters(method)
    assert found[: len(parameters)] == parameters, _advice(
        f"the parameters of {cls.__qualname__}.{name}: {parameters} are now {found}", ours
    )


@pytest.mark.parametrize(
    ("cls", "name", "ours"), ATTRIBUTES, ids=[f"{c.__name__}.{n}" for c, n, _ in ATTRIBUTES]
)
def test_the_attributes_we_read_are_still_set(cls: type[Any], name: str, ours: str) -> None:
    source = "".join(
        inspect.getsource(klass)
        for klass in cls.__mro__
        if klass is not object and klass.__module__.startswith("uvicorn")
    )
    assert f"self.{name} =" in source or f"self.{name}:" in source, _advice(
        f"{cls.__qualname__}.{name} (no uvicorn code sets it any more)", ours
    )


def test_the_installed_uvicorn_is_in_the_tested_range() -> None:
    major, minor = (int(part) for part in uvicorn.__version__.split(".")[:2])
    assert (0, 35) <= (major, minor) < (0, 55), (
        f"uvicorn {uvicorn.__version__} is outside the range pyproject.toml pins"
    )
