"""Upcasters: old records decode as current events; versions without a path are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from events import upcast as upcast_module
from events.codec import DecodeError, decode
from events.upcast import UPCASTERS, register, upcast
from tests.samples import OMIT, sample


@pytest.fixture
def registry() -> Iterator[dict[tuple[str, int], Any]]:
    """The production registry, restored after the test so synthetic versions never leak."""
    saved = dict(UPCASTERS)
    try:
        yield UPCASTERS
    finally:
        UPCASTERS.clear()
        UPCASTERS.update(saved)


def v0_remedy(**data: Any) -> dict[str, Any]:
    """A hypothetical v0 remedy.requested, when money was integer cents."""
    return sample("remedy.requested", schema_version=0, amount=OMIT, **data)


def register_cents_upcaster() -> None:
    @register("remedy.requested", 0)
    def cents_to_decimal_string(obj: dict[str, Any]) -> dict[str, Any]:
        cents = obj["data"].pop("amount_cents")
        if type(cents) is not int:
            raise ValueError(f"amount_cents must be an integer, not {cents!r}")
        obj["data"]["amount"] = str(Decimal(cents).scaleb(-2))
        return obj


def test_v0_record_decodes_as_the_current_model(registry: object) -> None:
    register_cents_upcaster()

    old = decode(json.dumps(v0_remedy(amount_cents=1250)).encode())
    current = decode(json.dumps(sample("remedy.requested", amount="12.50")).encode())

    assert old == current
    assert old.schema_version == 1
    assert old.data.amount == Decimal("12.50")  # type: ignore[attr-defined]


def test_without_an_upcaster_v0_is_unsupported() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(json.dumps(v0_remedy(amount_cents=1250)).encode())

    err = caught.value
    assert (err.reason, err.field) == ("unsupported_schema_version", "schema_version")
    assert "only version 1" in err.detail


def test_versions_below_the_oldest_path_name_the_supported_range(registry: object) -> None:
    register_cents_upcaster()

    with pytest.raises(DecodeError) as caught:
        decode(json.dumps(sample("remedy.requested", schema_version=-1)).encode())

    assert caught.value.reason == "unsupported_schema_version"
    assert "versions 0 to 1" in caught.value.detail


def test_newer_version_is_unsupported() -> None:
    with pytest.raises(DecodeError) as caught:
        upcast(sample("remedy.requested", schema_version=2))

    assert caught.value.reason == "unsupported_schema_version"
    assert "newer" in caught.value.detail


def test_an_upcaster_that_fails_dead_letters_the_record(registry: object) -> None:
    register_cents_upcaster()

    with pytest.raises(DecodeError) as caught:
        decode(json.dumps(v0_remedy(amount_cents="12.50")).encode())

    err = caught.value
    assert err.reason == "schema_invalid"
    assert "remedy.requested v0 record could not be upgraded to v1" in err.detail
    assert "amount_cents must be an integer" in err.detail


def test_an_upcaster_must_return_a_dict(registry: object) -> None:
    register("order.placed", 0)(lambda obj: None)  # type: ignore[arg-type,return-value]

    with pytest.raises(DecodeError) as caught:
        upcast(sample("order.placed", schema_version=0))

    assert caught.value.reason == "schema_invalid"
    assert "NoneType" in caught.value.detail


def test_chain_applies_in_order_and_stamps_each_version(
    registry: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upcast_module, "SCHEMA_VERSION", 3)
    seen: list[int] = []

    def step(obj: dict[str, Any]) -> dict[str, Any]:
        seen.append(obj["schema_version"])  # upcast stamps the version, not the upcaster
        obj["data"]["note"] += f"+{obj['schema_version']}"
        return obj

    for version in (0, 1, 2):
        register("contact.transferred", version)(step)

    result = upcast(sample("contact.transferred", schema_version=0, note="v0"))

    assert seen == [0, 1, 2]
    assert result["schema_version"] == 3
    assert result["data"]["note"] == "v0+0+1+2"


def test_current_version_is_returned_untouched() -> None:
    obj = sample("order.placed")
    missing = sample("order.placed", schema_version=OMIT)

    assert upcast(obj) is obj
    assert upcast(missing) is missing  # no schema_version means the current one


@pytest.mark.parametrize("version", [True, "1", 1.0])
def test_non_integer_version_is_schema_invalid(version: object) -> None:
    with pytest.raises(DecodeError) as caught:
        upcast(sample("order.placed", schema_version=version))

    assert (caught.value.reason, caught.value.field) == ("schema_invalid", "schema_version")


@pytest.mark.parametrize(
    ("type_name", "version", "says"),
    [("order.unknown", 0, "unknown event type"), ("order.placed", 1, "from_version")],
)
def test_register_refuses_bad_keys(type_name: str, version: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        register(type_name, version)


def test_register_refuses_a_second_upcaster_for_one_step(registry: object) -> None:
    register_cents_upcaster()

    with pytest.raises(ValueError, match="already registered"):
        register_cents_upcaster()


def test_production_registry_holds_no_synthetic_versions() -> None:
    # Runs in any order relative to the tests above: the fixture must have restored it.
    assert ("remedy.requested", 0) not in UPCASTERS
