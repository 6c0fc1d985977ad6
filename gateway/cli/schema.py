"""``gateway schema``: one JSON Schema document of every namespace's payload model.

The document is an object schema whose properties are the namespaces (``"*"`` for the
catch-all model of ``on_publish(model=...)`` without a namespace), each referring to its
model under ``$defs``: what a client may publish to that namespace's channels. pydantic
generates every model's schema (validation mode: what a client sends), with one shared
``$defs`` so models used by several namespaces appear once.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import TypeAdapter

from gateway.services.hooks import Hooks

DIALECT = "https://json-schema.org/draft/2020-12/schema"
CATCH_ALL = "*"
"""The key of the model of every namespace without one of its own."""


def channel_schema(hooks: Hooks) -> dict[str, Any]:
    """The JSON Schema document of the payload models registered in ``hooks``."""
    models = {
        CATCH_ALL if namespace is None else namespace: model
        for namespace, model in sorted(
            hooks.models().items(), key=lambda item: (item[0] is None, item[0] or "")
        )
    }
    validation: Literal["validation"] = "validation"
    inputs = [(name, validation, TypeAdapter(model)) for name, model in models.items()]
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template="#/$defs/{model}")
    document: dict[str, Any] = {
        "$schema": DIALECT,
        "title": "Channels",
        "description": "What a client may publish to each namespace's channels ('*': every "
        "namespace without a model of its own).",
        "type": "object",
        "properties": {name: schemas[name, "validation"] for name in models},
        "required": list(models),
        "additionalProperties": False,
    }
    if definitions.get("$defs"):
        document["$defs"] = definitions["$defs"]
    return document
