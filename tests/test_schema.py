"""Exported JSON Schemas: one per input type, matching the models, accepting the samples.

The `jsonschema` package is not a dependency, so `check` below implements the keywords
these schemas use and fails on any other keyword, rather than silently ignoring it.
"""

from __future__ import annotations

import json
import operator
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from events.codec import DecodeError, decode
from events.models import CATALOG, EVENT_CLASSES, SCHEMA_VERSION
from events.schema import DIALECT, schemas, write_schemas
from tests.samples import OMIT, sample

MONEY = {"type": "string", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,2})?$(?!\n)", "maxLength": 18}
ANNOTATIONS = {"title", "description", "default", "format", "$schema", "$id", "$defs"}
BOUNDS = {
    "minimum": operator.ge,
    "maximum": operator.le,
    "exclusiveMinimum": operator.gt,
    "exclusiveMaximum": operator.lt,
}
JSON_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "null": type(None),
    "boolean": bool,
}


def check(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "") -> list[str]:
    """Errors of `value` against the subset of draft 2020-12 that pydantic emits."""
    if "$ref" in schema:
        schema = {**root["$defs"][schema["$ref"].removeprefix("#/$defs/")], **schema}
        del schema["$ref"]
    return [
        e
        for keyword, rule in schema.items()
        for e in _errors(keyword, rule, value, schema, root, path)
    ]


def _errors(
    keyword: str, rule: Any, value: Any, schema: dict[str, Any], root: dict[str, Any], path: str
) -> list[str]:
    if keyword in ("properties", "items", "anyOf"):  # these recurse and name their own paths
        return _violates(keyword, rule, value, schema, root, path)
    return [
        f"{path or '/'}: {message}"
        for message in _violates(keyword, rule, value, schema, root, path)
    ]


def _violates(
    keyword: str, rule: Any, value: Any, schema: dict[str, Any], root: dict[str, Any], path: str
) -> list[str]:
    if keyword in ANNOTATIONS:
        return []
    is_object, is_string = isinstance(value, dict), isinstance(value, str)
    if keyword == "type":
        # JSON booleans are not numbers, although Python's bool is an int.
        ok = isinstance(value, JSON_TYPES[rule])
        ok = ok and (rule == "boolean" or not isinstance(value, bool))
        return [] if ok else [rule]
    if keyword == "const":
        return [] if value == rule else [f"const {rule!r}"]
    if keyword == "enum":
        return [] if value in rule else ["enum"]
    if keyword == "pattern":
        return [] if not is_string or re.search(rule, value) else ["pattern"]
    if keyword in ("minLength", "maxLength"):
        if not is_string:
            return []
        ok = len(value) >= rule if keyword == "minLength" else len(value) <= rule
        return [] if ok else [keyword]
    if keyword in BOUNDS:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return [keyword] if numeric and not BOUNDS[keyword](value, rule) else []
    if keyword == "required":
        return [f"missing {name}" for name in rule if is_object and name not in value]
    if keyword == "properties":
        items = value.items() if is_object else ()
        return [e for k, v in items if k in rule for e in check(v, rule[k], root, f"{path}/{k}")]
    if keyword == "additionalProperties":
        extra = set(value) - set(schema.get("properties", {})) if is_object else set()
        return [f"unexpected {sorted(extra)}"] if rule is False and extra else []
    if keyword == "items":
        if not isinstance(value, list):
            return []
        return [e for i, v in enumerate(value) for e in check(v, rule, root, f"{path}/{i}")]
    if keyword == "anyOf":
        matched = any(not check(value, option, root, path) for option in rule)
        return [] if matched else [f"{path or '/'}: anyOf"]
    raise AssertionError(f"schema keyword {keyword!r} is not understood by this test")


@pytest.fixture(scope="module")
def all_schemas() -> dict[str, dict[str, Any]]:
    return schemas()


def test_one_schema_per_input_type_with_a_urn_id(all_schemas: dict[str, Any]) -> None:
    assert list(all_schemas) == list(CATALOG)
    for type_name, schema in all_schemas.items():
        assert schema["$schema"] == DIALECT
        assert schema["$id"] == f"urn:goodwill:event:{type_name}:v{SCHEMA_VERSION}"
        assert schema["properties"]["type"]["const"] == type_name


@pytest.mark.parametrize("type_name", list(CATALOG))
def test_required_fields_match_the_models(type_name: str, all_schemas: dict[str, Any]) -> None:
    schema = all_schemas[type_name]
    envelope = EVENT_CLASSES[type_name]
    payload = CATALOG[type_name][0]
    data_schema = schema["$defs"][payload.__name__]

    assert set(schema["required"]) == _required(envelope) | {"type"}  # the codec routes by it
    assert set(data_schema.get("required", [])) == _required(payload)


def _required(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items() if field.is_required()}


def test_money_fields_are_strings_with_the_pattern(all_schemas: dict[str, Any]) -> None:
    money_fields: set[str] = set()
    for schema in all_schemas.values():
        for name, definition in schema["$defs"].items():
            model = _model_named(name)
            for field, spec in definition["properties"].items():
                if model.model_fields[field].annotation is Decimal:
                    money_fields.add(f"{name}.{field}")
                    assert {k: spec[k] for k in MONEY} == MONEY, f"{name}.{field}"
                    assert "anyOf" not in spec
    assert money_fields >= {  # the walk really reached the money fields
        "OrderPlaced.amount",
        "LineItem.unit_price",
        "RemedyRequested.amount",
        "RemedyFulfilled.actual_cost",
        "BudgetAllocated.amount",
    }


def _model_named(name: str) -> type[BaseModel]:
    import events.models as models

    found = getattr(models, name)
    assert isinstance(found, type) and issubclass(found, BaseModel)
    return found


@pytest.mark.parametrize("type_name", list(CATALOG))
def test_every_schema_accepts_its_sample(type_name: str, all_schemas: dict[str, Any]) -> None:
    schema = all_schemas[type_name]

    assert check(sample(type_name), schema, schema) == []


@pytest.mark.parametrize(
    ("type_name", "overrides", "complaint"),
    [
        ("remedy.requested", {"amount": 12.5}, "/data/amount: string"),
        ("remedy.requested", {"amount": "12.505"}, "/data/amount: pattern"),
        ("remedy.requested", {"refund_to": "card"}, "/data: unexpected ['refund_to']"),
        ("remedy.requested", {"case_id": OMIT}, "/data: missing case_id"),
        ("remedy.requested", {"order_id": 7}, "/data/order_id: anyOf"),
        ("remedy.requested", {"schema_version": 2}, "/schema_version: const 1"),
        ("remedy.requested", {"type": "remedy.fulfilled"}, "/type: const 'remedy.requested'"),
        ("remedy.requested", {"type": OMIT}, "/: missing type"),
        ("case.resolved", {"csat": 6}, "/data/csat: anyOf"),
        ("order.shipped", {"service_level": "fast"}, "/data/service_level: enum"),
        (
            "order.placed",
            {"items": [{"sku": "S", "qty": 0, "unit_price": "1"}]},
            "/data/items/0/qty: exclusiveMinimum",
        ),
        ("order.placed", {"order_id": ""}, "/data/order_id: minLength"),
        ("order.placed", {"amount": "1000000000000000"}, "/data/amount: pattern"),
        ("order.placed", {"currency": "USD\n"}, "/data/currency: maxLength"),
        ("clock.tick", {"occurred_at": "2026-11-02T08:00:00"}, "/occurred_at: pattern"),
        ("clock.tick", {"occurred_at": "2026-11-02"}, "/occurred_at: pattern"),
        ("clock.tick", {"occurred_at": "2026-11-02T23:59:60Z"}, "/occurred_at: pattern"),
        ("shipment.delayed", {"new_eta": "2026-11-02T24:00:00Z"}, "/data/new_eta: pattern"),
        # Python's \d takes any script's digits and its $ a final newline; ECMA-262's do not
        ("clock.tick", {"occurred_at": "٢٠٢٦-11-02T08:00:00Z"}, "/occurred_at: pattern"),
        ("clock.tick", {"occurred_at": "2026-11-02T08:00:00Z\n"}, "/occurred_at: pattern"),
        ("budget.allocated", {"period": "2026-11\n"}, "/data/period: pattern"),
        ("budget.allocated", {"period": "2026-13"}, "/data/period: pattern"),
        ("budget.allocated", {"period": "2026-W00"}, "/data/period: pattern"),
        ("budget.allocated", {"period": "2026-W54"}, "/data/period: pattern"),
        ("budget.allocated", {"period": "2026-11-32"}, "/data/period: pattern"),
    ],
)
def test_schemas_reject_what_the_codec_rejects(
    type_name: str, overrides: dict[str, Any], complaint: str, all_schemas: dict[str, Any]
) -> None:
    schema = all_schemas[type_name]
    event = sample(type_name, **overrides)

    errors = check(event, schema, schema)

    assert errors == [complaint]
    with pytest.raises(DecodeError):  # a producer validating with the schema loses nothing
        decode(json.dumps(event).encode())


@pytest.mark.parametrize(
    ("type_name", "overrides"),
    [
        # RFC 3339 allows any number of fractional digits (.NET writes 7, Java up to 9);
        # the codec keeps microseconds
        ("clock.tick", {"occurred_at": "2026-11-02T08:00:00.1234567Z"}),
        ("clock.tick", {"occurred_at": "2026-11-02T08:00:00.123456789+01:00"}),
        ("budget.allocated", {"period": "2026-W53"}),
        ("budget.allocated", {"period": "2026-12-31"}),
    ],
)
def test_schemas_accept_what_the_codec_accepts(
    type_name: str, overrides: dict[str, Any], all_schemas: dict[str, Any]
) -> None:
    schema = all_schemas[type_name]
    event = sample(type_name, **overrides)

    assert check(event, schema, schema) == []
    decode(json.dumps(event).encode())


def test_write_schemas_writes_sorted_files_and_an_index(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "schemas")

    names = [path.name for path in written]
    assert names == [f"{t}.schema.json" for t in CATALOG] + ["index.json"]
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    index = json.loads((tmp_path / "schemas" / "index.json").read_text())
    assert [entry["file"] for entry in index["schemas"]] == names[:-1]
    assert json.loads(written[0].read_text()) == schemas()[next(iter(CATALOG))]
