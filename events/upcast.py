"""Upgrade events written at an older `schema_version` to the one this build decides on.

The log is permanent, so a record written years ago must still decode. When a payload
changes shape, bump `models.SCHEMA_VERSION` and register one upcaster per changed type
that turns the raw dict at version N into the raw dict at N + 1:

    @register("remedy.requested", 1)
    def _amount_to_string(obj: dict[str, Any]) -> dict[str, Any]:
        ...

`upcast` chains them up to the current version. Upcasters work on raw dicts, before
validation, so they never depend on model classes that may have changed since.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from events.models import CATALOG, OUTPUTS, SCHEMA_VERSION

if TYPE_CHECKING:
    from events.codec import Reason

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(type, from_version) → function producing the record at from_version + 1."""


def register(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Decorator: `fn` upgrades `type_name` records from `from_version` to the next one."""
    if type_name not in CATALOG and type_name not in OUTPUTS:
        raise ValueError(f"unknown event type {type_name!r}")
    if not 0 <= from_version < SCHEMA_VERSION:
        # Version 0 is allowed so tests (and a pre-release history) can describe v0 → v1.
        raise ValueError(f"from_version must be in 0..{SCHEMA_VERSION - 1}, not {from_version}")
    key = (type_name, from_version)

    def add(fn: Upcaster) -> Upcaster:
        if key in UPCASTERS:
            raise ValueError(f"an upcaster for {type_name} v{from_version} is already registered")
        UPCASTERS[key] = fn
        return fn

    return add


def upcast(obj: dict[str, Any]) -> dict[str, Any]:
    """Return `obj` at `SCHEMA_VERSION`; a missing `schema_version` means current.

    Takes ownership of `obj` and may change it in place: the codec hands over a freshly
    parsed dict, and copying every old record would only cost time.
    Raises `DecodeError` ("unsupported_schema_version", or "schema_invalid" when the
    version is not an integer or an upcaster rejects the record).
    """
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version.__class__ is not int:  # bool is an int subclass; `true` is not a version
        raise _error(
            "schema_invalid", "schema_version", "schema_version must be an integer, e.g. 1"
        )
    if version == SCHEMA_VERSION:
        return obj
    type_name = obj.get("type")
    if version > SCHEMA_VERSION:
        raise _error(
            "unsupported_schema_version",
            "schema_version",
            f"{type_name} schema_version {version} is newer than this build reads "
            f"({SCHEMA_VERSION}); upgrade goodwill before sending it",
        )
    while version < SCHEMA_VERSION:
        step = UPCASTERS.get((str(type_name), version))
        if step is None:
            raise _error(
                "unsupported_schema_version",
                "schema_version",
                f"{type_name} schema_version {version} is not supported; this build reads "
                + _readable(str(type_name)),
            )
        try:
            obj = step(obj)
            if not isinstance(obj, dict):
                raise TypeError(f"upcaster returned {type(obj).__name__}, not dict")
        except Exception as exc:
            # Upcasters read untrusted old data; a failure dead-letters this record with its
            # cause instead of stopping the engine.
            raise _error(
                "schema_invalid",
                None,
                f"{type_name} v{version} record could not be upgraded to v{version + 1}: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        version += 1
        obj["schema_version"] = version
    return obj


def _readable(type_name: str) -> str:
    oldest = SCHEMA_VERSION
    while (type_name, oldest - 1) in UPCASTERS:
        oldest -= 1
    if oldest == SCHEMA_VERSION:
        return f"only version {SCHEMA_VERSION}"
    return f"versions {oldest} to {SCHEMA_VERSION}"


def _error(reason: Reason, field: str | None, detail: str) -> Exception:
    # Imported here because the codec imports this module; DecodeError lives with the codec.
    from events.codec import DecodeError

    return DecodeError(reason, field, detail)
