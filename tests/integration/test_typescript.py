"""TypeScript for the browser client: ``client/js/gateway.d.ts`` compiles and covers what
applications call, ``gateway.js`` type-checks (``checkJs``) against the declarations it
imports, and ``gateway types`` generates declarations that make ``client.publish`` check
its data, agreeing with json-schema-to-typescript on the same JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.gateways import REPO_ROOT
from tests.support.typescript import TYPECHECK_DIR, run_bin, tsc

GENERATED = TYPECHECK_DIR / "generated"


def gateway_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def generated() -> None:
    """generated/channels.ts from ``gateway types``, generated/reference.ts from
    json-schema-to-typescript, both for the models of tests/apps/typed.py."""
    GENERATED.mkdir(exist_ok=True)
    (GENERATED / "channels.ts").write_text(gateway_cli("types", "--app", "tests.apps.typed:gw"))
    schema = GENERATED / "schema.json"
    schema.write_text(gateway_cli("schema", "--app", "tests.apps.typed:gw"))
    status, output = run_bin(
        "json2ts",
        "-i",
        str(schema),
        "-o",
        str(GENERATED / "reference.ts"),
        "--additionalProperties",
        "false",
        "--unreachableDefinitions",
    )
    assert status == 0, output


def test_the_declarations_compile_and_cover_the_usage_samples() -> None:
    status, output = tsc("tsconfig.json")
    assert status == 0, output


def test_gateway_js_type_checks_against_its_declarations() -> None:
    status, output = tsc("tsconfig.checkjs.json")
    assert status == 0, output


def test_a_mistake_in_a_usage_sample_fails_to_compile() -> None:
    broken = TYPECHECK_DIR / "usage.broken.ts"
    broken.write_text(
        'import { GatewayClient } from "../gateway.js";\n'
        'new GatewayClient("ws://h/ws").publish(42, {});\n'
    )
    config = TYPECHECK_DIR / "tsconfig.broken.json"
    config.write_text(
        json.dumps({"extends": "./tsconfig.json", "files": ["../gateway.d.ts", broken.name]})
    )
    try:
        status, output = tsc(config.name)
    finally:
        broken.unlink()
        config.unlink()
    assert status != 0 and "TS2345" in output, output


def test_publish_checks_data_against_the_generated_types(generated: None) -> None:
    status, output = tsc("tsconfig.channels.json")
    assert status == 0, output


def test_data_of_the_wrong_type_fails_to_compile(generated: None) -> None:
    status, output = tsc("tsconfig.bad.json")
    assert status != 0, output
    assert "channels.bad.ts(6," in output and "not assignable to type 'string'" in output, output


def test_the_schema_names_every_namespace_and_its_model(generated: None) -> None:
    document = json.loads((GENERATED / "schema.json").read_text())
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["properties"] == {
        "chat": {"$ref": "#/$defs/ChatMessage"},
        "votes": {"$ref": "#/$defs/Vote"},
        "*": {"$ref": "#/$defs/Note"},
    }
    chat = document["$defs"]["ChatMessage"]
    assert chat["required"] == ["text"] and chat["properties"]["text"]["maxLength"] == 500
    assert set(document["$defs"]) == {"Author", "ChatMessage", "Mood", "Note", "Vote"}
