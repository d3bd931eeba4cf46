"""Bytes ⇄ event, with errors a producer can act on.

`decode` checks a record in a fixed order — size, UTF-8, JSON, object, `type`,
`schema_version`, then the typed model — and reports the first failure as a
`DecodeError` with a stable `reason` code, so a dead-letter record says exactly
what to fix. No other exception escapes `decode`, whatever the bytes.
"""

from __future__ import annotations

import difflib
import json
import reprlib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from events.models import (
    EVENT_ADAPTER,
    EVENT_CLASSES,
    OUTPUT_ADAPTER,
    OUTPUT_CLASSES,
    SCHEMA_VERSION,
    Envelope,
)
from events.upcast import upcast

MAX_EVENT_BYTES = 1_048_576
"""Largest record `decode` accepts, checked before parsing so a huge record costs nothing."""

Reason = Literal[
    "oversized",
    "not_utf8",
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "unsupported_schema_version",
    "schema_invalid",
]
REASONS: tuple[str, ...] = typing.get_args(Reason)
"""Every reason `decode` may refuse a record for."""

# User-controlled text (field names, values) is cut so one hostile record cannot
# produce a megabyte of error message in the dead-letter topic.
_MAX_NAME = 64
_MAX_DETAIL = 600
_HINTED = 20
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 2, 4, 4, 4
_REPR.maxstring = _REPR.maxother = 40


class DecodeError(Exception):
    """A record that is not a valid event; `str(err)` is `"<reason>: <detail>"`."""

    reason: Reason
    field: str | None
    detail: str
    errors: list[tuple[str | None, str]]

    def __init__(
        self,
        reason: Reason,
        field: str | None,
        detail: str,
        errors: Sequence[tuple[str | None, str]] = (),
    ) -> None:
        detail = _printable(detail)
        if len(detail) > _MAX_DETAIL:
            detail = detail[: _MAX_DETAIL - 1] + "…"
        field = None if field is None else _printable(field)
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.field = field
        self.detail = detail
        self.errors = [(f, _printable(m)) for f, m in errors] or [(field, detail)]

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickling replays `args`; ours are not the constructor's arguments.
        return (DecodeError, (self.reason, self.field, self.detail, self.errors))


def decode(raw: bytes, *, outputs: bool = False) -> Envelope:
    """Parse and validate one input event (or, with `outputs=True`, one engine output).

    Raises `DecodeError` and nothing else, for any bytes.
    """
    if len(raw) > MAX_EVENT_BYTES:
        _fail("oversized", None, f"record is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    # Fast path: pydantic parses and validates the bytes in one pass (~40% cheaper than
    # json.loads + validate_python). Any record it does not accept as a current-version
    # event takes the checked path below, which finds the precise reason (and upcasts).
    try:
        event = (OUTPUT_ADAPTER if outputs else EVENT_ADAPTER).validate_json(raw)
    except ValueError:  # ValidationError is a ValueError
        pass
    else:
        if event.schema_version == SCHEMA_VERSION:
            return event
    return _decode_checked(raw, outputs)


def _decode_checked(raw: bytes, outputs: bool) -> Envelope:
    """`decode` step by step, so the first failure names its reason (and old versions are
    upcast). It accepts exactly what the fast path accepts; a test checks both agree."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 4]
        _fail("not_utf8", None, f"byte {exc.start} starts {bad!r}, which is not UTF-8; send UTF-8")
    try:
        obj = _parse_json(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        _fail("invalid_json", None, f"not valid JSON at {where}: {_json_hint(text, exc)}")
    except RecursionError:
        _fail("invalid_json", None, "JSON is nested too deeply to be an event")
    except ValueError as exc:  # NaN/Infinity, or an integer longer than Python will parse
        _fail("invalid_json", None, f"not valid JSON: {exc}")
    if not isinstance(obj, dict):
        _fail("not_an_object", None, f"an event is a JSON object, not {_json_kind(obj)}")

    classes = OUTPUT_CLASSES if outputs else EVENT_CLASSES
    type_name = obj.get("type")
    if type_name.__class__ is not str or type_name not in classes:
        _unknown_type(type_name, classes, outputs)
    obj = upcast(obj)
    try:
        return (OUTPUT_ADAPTER if outputs else EVENT_ADAPTER).validate_python(obj)
    except ValidationError as exc:
        raise _schema_invalid(exc.errors(include_url=False), type_name, classes) from None


def encode(event: Envelope) -> bytes:
    """Canonical bytes for an event: compact UTF-8 JSON, fields in contract order.

    The same event always gives the same bytes, and `decode(encode(e)) == e`.
    """
    # serialize_as_any: a payload held in a field typed as the `Payload` base class
    # would otherwise serialize as `{}` and lose the data.
    return event.model_dump_json(serialize_as_any=True).encode("utf-8")


def _fail(reason: Reason, field: str | None, detail: str) -> NoReturn:
    raise DecodeError(reason, field, detail) from None


def _printable(text: str) -> str:
    # Lone surrogates from JSON escapes ("\ud800") cannot be written back out as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


_JSON_HINTS = {"Extra data": "more data after the first JSON value; send one event per record"}


def _json_hint(text: str, exc: json.JSONDecodeError) -> str:
    """What is wrong, in the words of the mistake where one is common: Python's own
    message for a trailing comma is "Expecting property name", and for a BOM "Expecting
    value" at 1:1."""
    if not text.strip():
        return "the record is empty"
    if text.startswith("\ufeff"):
        return "the record starts with a byte order mark (U+FEFF); send UTF-8 without one"
    closing = text[exc.pos : exc.pos + 1]
    if closing in ("}", "]") and text[: exc.pos].rstrip().endswith(","):
        return f"a trailing comma before '{closing}': JSON allows none; remove the comma"
    return _JSON_HINTS.get(exc.msg, exc.msg)


# Built once: json.loads with a hook would build a new decoder for every record.
_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def _parse_json(text: str) -> Any:
    try:
        # raw_decode skips decode()'s whitespace regexes; the common record has none.
        value, end = _JSON.raw_decode(text)
        if end == len(text) or text[end:].isspace():
            return value
    except json.JSONDecodeError:
        pass
    return _JSON.decode(text)  # leading whitespace, or a real error with its position


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _unknown_type(type_name: object, classes: dict[str, type[Envelope]], outputs: bool) -> NoReturn:
    known = ", ".join(classes)
    if type_name is None:
        _fail("unknown_type", "type", f'the record has no "type"; expected one of: {known}')
    if not isinstance(type_name, str):
        _fail("unknown_type", "type", f'"type" must be a string, not {_json_kind(type_name)}')
    shown = json.dumps(type_name[:_MAX_NAME])
    other = EVENT_CLASSES if outputs else OUTPUT_CLASSES
    if type_name in other:
        role = "an input event" if outputs else "an engine output"
        _fail("unknown_type", "type", f"{shown} is {role}, not expected here")
    close = difflib.get_close_matches(type_name, list(classes), n=1)
    hint = f'did you mean "{close[0]}"?' if close else f"expected one of: {known}"
    _fail("unknown_type", "type", f"unknown event type {shown}; {hint}")


def _schema_invalid(
    details: list[ErrorDetails], type_name: str, classes: dict[str, type[Envelope]]
) -> DecodeError:
    model = classes[type_name]
    # "Did you mean" costs a difflib search; a record with thousands of errors gets it
    # only for the first few, so a hostile record cannot stall the consumer.
    errors = [_describe(error, type_name, model, i < _HINTED) for i, error in enumerate(details)]
    field, message = errors[0]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return DecodeError("schema_invalid", field, message + more, errors)


def _describe(
    error: ErrorDetails, type_name: str, model: type[BaseModel], hint: bool
) -> tuple[str | None, str]:
    loc = error["loc"]
    if loc and loc[0] == type_name:  # the discriminated union's tag, not a field
        loc = loc[1:]
    field = ".".join(_cut(str(part)) for part in loc) or None
    kind = error["type"]
    if kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = f"is not a field of {type_name}"
        if hint:
            message += _suggest(str(loc[-1]), _fields(model, loc))
    elif kind == "value_error":
        # Our own validators' messages are whole sentences (see events.models).
        message = error["msg"].removeprefix("Value error, ")
    else:
        message = _must(error["msg"]) + f" (got {_REPR.repr(error.get('input'))})"
    return field, f"{field}: {message}" if field else message


def _must(msg: str) -> str:
    # "Input should be a valid string" → "must be a valid string": reads after a field name.
    head, sep, rest = msg.partition(" should ")
    return f"must {rest}" if sep and " " not in head else msg[:1].lower() + msg[1:]


def _cut(name: str) -> str:
    return name if len(name) <= _MAX_NAME else name[: _MAX_NAME - 1] + "…"


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


def _fields(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model that holds `loc[-1]`, for "did you mean" hints."""
    target: type[BaseModel] | None = model
    for part in loc[:-1]:
        if isinstance(part, int):  # an index into a tuple: the element model is already found
            continue
        if target is None or part not in target.model_fields:
            return []
        target = _model_in(target.model_fields[part].annotation)
    return list(target.model_fields) if target is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
