"""JSON Schema (draft 2020-12) for every input event type, for producers to validate against.

The schemas are generated from `events.models`, so they cannot drift from what `decode`
accepts; they are slightly stricter where the contract has one preferred spelling (money
as a decimal string, `schema_version` as the current version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from events.models import EVENT_CLASSES, SCHEMA_VERSION

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_id(type_name: str) -> str:
    """A stable, network-free identifier: producers must not fetch schemas from a host."""
    return f"urn:goodwill:event:{type_name}:v{SCHEMA_VERSION}"


class _ProducerSchema(GenerateJsonSchema):
    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        # Pydantic offers number-or-string; the contract says money travels as a string
        # (models.Money adds the pattern), because JSON numbers become binary floats.
        return {"type": "string"}


def schemas() -> dict[str, dict[str, Any]]:
    """One schema per input event type, keyed by type name, in catalog order."""
    out: dict[str, dict[str, Any]] = {}
    for type_name, cls in EVENT_CLASSES.items():
        body = cls.model_json_schema(schema_generator=_ProducerSchema)
        # The model may default `type`, but a record is routed by it: producers must send it.
        body["properties"]["type"].pop("default", None)
        body["required"] = ["type", *(name for name in body.get("required", []) if name != "type")]
        body["properties"]["schema_version"] = {
            "type": "integer",
            "const": SCHEMA_VERSION,
            "default": SCHEMA_VERSION,
            "description": "version of this contract; may be omitted",
        }
        out[type_name] = {"$schema": DIALECT, "$id": schema_id(type_name), **body}
    return out


def write_schemas(out_dir: Path) -> list[Path]:
    """Write `<type>.schema.json` per type and an `index.json`; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: list[dict[str, str]] = []
    for type_name, schema in schemas().items():
        path = out_dir / f"{type_name}.schema.json"
        _write_json(path, schema)
        written.append(path)
        index.append({"type": type_name, "$id": schema["$id"], "file": path.name})
    index_path = out_dir / "index.json"
    _write_json(index_path, {"schema_version": SCHEMA_VERSION, "schemas": index})
    written.append(index_path)
    return written


def _write_json(path: Path, value: Any) -> None:
    # Sorted keys and a trailing newline keep the files diff-friendly when committed.
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
