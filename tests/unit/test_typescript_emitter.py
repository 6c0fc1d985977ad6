"""The TypeScript emitter of ``gateway types`` (gateway/cli/typescript.py), schema by schema.
tests/integration/test_typescript.py compiles its output with tsc."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cli.typescript import declarations


def channels(schema: dict[str, Any], definitions: dict[str, Any] | None = None) -> str:
    document: dict[str, Any] = {"title": "Channels", "type": "object"}
    document["properties"] = {"ns": schema}
    document["required"] = ["ns"]
    if definitions:
        document["$defs"] = definitions
    text = declarations(document)
    return (
        text.split("export type Channels = ", 1)[1].split("\n", 2)[1].strip().removeprefix("ns: ")
    )


@pytest.mark.parametrize(
    ("schema", "typescript"),
    [
        ({"type": "string", "format": "date-time"}, "string;"),
        ({"type": "integer", "minimum": 0}, "number;"),
        ({"type": ["string", "null"]}, "string | null;"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "string | null;"),
        (
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "(string | null)[];",
        ),
        ({"type": "array"}, "unknown[];"),
        ({"enum": ["a", 1, None]}, '"a" | 1 | null;'),
        ({"const": "fixed"}, '"fixed";'),
        (
            {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
            "[string, number];",
        ),
        (
            {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "number"}},
            "[string, ...number[]];",
        ),
        ({}, "unknown;"),
        ({"anyOf": [{"type": "string"}, {}]}, "unknown;"),
        ({"not": {"type": "string"}}, "unknown;"),
        ({"$ref": "#/$defs/Missing"}, "unknown;"),
    ],
)
def test_a_schema_becomes_its_typescript(schema: dict[str, Any], typescript: str) -> None:
    assert channels(schema) == typescript


def test_objects_keep_required_optional_and_extra_keys() -> None:
    text = declarations(
        {
            "title": "Channels",
            "type": "object",
            "properties": {"ns": {"$ref": "#/$defs/class"}},
            "required": ["ns"],
            "$defs": {
                "class": {
                    "type": "object",
                    "description": "Has */ in it",
                    "properties": {
                        "id": {"type": "integer"},
                        "odd-name": {"type": "string", "description": "quoted"},
                    },
                    "required": ["id"],
                    "additionalProperties": True,
                },
            },
        }
    )
    assert "/** Has *\\/ in it */\nexport interface _class {\n" in text
    assert (
        '  id: number;\n  /** quoted */\n  "odd-name"?: string;\n  [key: string]: unknown;\n}'
        in text
    )
    assert "export type Channels = {\n  ns: _class;\n};" in text


def test_a_dictionary_and_an_intersection() -> None:
    assert channels({"type": "object", "additionalProperties": {"type": "boolean"}}).startswith("{")
    text = declarations(
        {
            "title": "Channels",
            "allOf": [{"$ref": "#/$defs/A"}, {"type": "object", "properties": {}}],
            "$defs": {"A": {"type": "object", "properties": {"a": {"type": "string"}}}},
        }
    )
    assert "export type Channels = A & { [key: string]: unknown };" in text
