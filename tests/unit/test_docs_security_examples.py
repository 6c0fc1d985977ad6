"""docs/examples/issue_tokens.py issues tokens the gateway accepts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from gateway.security.auth import TokenVerifier
from gateway.security.permissions import subscribe_refusal
from gateway.settings import NamespaceOptions, Settings
from tests.support.tokens import SECRET

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "issue_tokens.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("issue_tokens", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_issued_tokens_are_accepted() -> None:
    example = load_example()
    verifier = TokenVerifier(Settings(jwt_secret=SECRET, node_id="n"))
    token = example.connection_token(
        SECRET, "alice", channels=["chat:*"], publish=["chat:*"], info={"name": "Alice"}
    )
    principal = verifier.connection(token)
    assert (principal.user, principal.channels, principal.info) == (
        "alice",
        ("chat:*",),
        {"name": "Alice"},
    )
    grant = verifier.subscription(example.subscription_token(SECRET, "bob", "$user:bob"))
    bob = verifier.connection(example.connection_token(SECRET, "bob"))
    assert subscribe_refusal(bob, "$user:bob", NamespaceOptions(), grant) is None
