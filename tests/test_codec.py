"""The codec: every accepted event round-trips; every rejected record says why, precisely."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.codec import MAX_EVENT_BYTES, DecodeError, Reason, _decode_checked, decode, encode
from events.models import (
    CATALOG,
    EVENT_CLASSES,
    ClockTick,
    Envelope,
    PolicyFile,
    PolicySetActivated,
    make_output,
)
from tests.samples import OMIT, sample

REASONS = set(get_args(Reason))


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def rejected(data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(data)
    err = caught.value
    assert str(err) == f"{err.reason}: {err.detail}"
    return err


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("type_name", list(CATALOG))
def test_every_catalog_type_round_trips(type_name: str) -> None:
    event = decode(raw(sample(type_name)))

    assert type(event) is EVENT_CLASSES[type_name]
    assert decode(encode(event)) == event
    assert encode(decode(encode(event))) == encode(event)


def test_encode_is_compact_utf8_in_contract_order() -> None:
    event = decode(raw(sample("item.defect_reported", description="Scharnier kaputt — ßü")))
    data = encode(event)

    assert data.startswith(b'{"type":"item.defect_reported","data":{')
    assert "Scharnier kaputt — ßü".encode() in data  # not \u-escaped
    compact = json.dumps(json.loads(data), separators=(",", ":"), ensure_ascii=False)
    assert data == compact.encode("utf-8")


def test_encode_is_deterministic_for_equal_events() -> None:
    first = decode(raw(sample("order.placed")))
    # The same event, spelled differently by the producer: key order, whitespace.
    spelled = json.dumps(sample("order.placed"), indent=3, sort_keys=True).encode()

    assert encode(decode(spelled)) == encode(first)


def test_money_is_encoded_as_a_decimal_string() -> None:
    event = decode(raw(sample("remedy.requested", amount=12)))

    assert json.loads(encode(event))["data"]["amount"] == "12"
    assert event.data.amount == Decimal("12")  # type: ignore[attr-defined]


def test_encode_keeps_a_payload_held_by_the_base_envelope() -> None:
    typed = decode(raw(sample("remedy.requested")))
    loose = Envelope(
        type="remedy.requested", data=typed.data, event_id="e", occurred_at=typed.occurred_at
    )

    assert json.loads(encode(loose))["data"]["amount"] == "60.00"


def test_engine_outputs_round_trip_with_outputs_flag() -> None:
    when = datetime(2026, 11, 23, 10, tzinfo=UTC)
    files = (PolicyFile(path="p.yaml", policy="p", version=1, hash="h"),)
    data = PolicySetActivated(policy_set="abc", files=files)
    event = make_output("policy_set.activated", "ps-1", when, data, None)

    assert decode(encode(event), outputs=True) == event
    err = rejected(encode(event))
    assert (err.reason, err.field) == ("unknown_type", "type")
    assert "engine output" in err.detail


def test_clock_tick_needs_no_data() -> None:
    event = decode(raw(sample("clock.tick", data=OMIT)))

    assert event.data == ClockTick()


# ---------------------------------------------------------------- each reason, in check order


def test_oversized_is_checked_before_parsing() -> None:
    padded = raw(sample("order.placed")) + b" " * MAX_EVENT_BYTES  # valid JSON, too big

    err = rejected(padded)

    assert (err.reason, err.field) == ("oversized", None)
    assert str(len(padded)) in err.detail and str(MAX_EVENT_BYTES) in err.detail


def test_exactly_max_size_is_not_oversized() -> None:
    event = raw(sample("order.placed"))
    err = rejected(event + b"x" * (MAX_EVENT_BYTES - len(event)))

    assert err.reason == "invalid_json"


def test_not_utf8_names_the_byte() -> None:
    data = b'{"type": "order.placed", "source": "caf\xe9"}'
    err = rejected(data)

    assert (err.reason, err.field) == ("not_utf8", None)
    assert f"byte {data.index(0xE9)} " in err.detail


@pytest.mark.parametrize(
    ("data", "where", "says"),
    [
        (b'{"type": "order.placed",}', "line 1, column 25", "a trailing comma before '}'"),
        (b'[{"type": "order.placed"},\n]', "line 2, column 1", "a trailing comma before ']'"),
        (b'{"a": 1,\n  \n}', "line 3, column 1", "JSON allows none"),
        (b'{"a": ,}', "line 1, column 7", "Expecting value"),  # no comma before the value
        (b'{"a": }', "line 1, column 7", "Expecting value"),  # a '}' with no comma before it
        (b'\xef\xbb\xbf{"type": "order.placed"}', "line 1, column 1", "byte order mark"),
        (b'{\n  "type": "order.placed"\n  "x": 1}', "line 3, column 3", "delimiter"),
        (b"", "line 1, column 1", "empty"),
        (b'{"a": 1} {"b": 2}', "line 1, column 10", "one event per record"),
    ],
)
def test_invalid_json_gives_line_and_column(data: bytes, where: str, says: str) -> None:
    err = rejected(data)

    assert (err.reason, err.field) == ("invalid_json", None)
    assert where in err.detail and says in err.detail


@pytest.mark.parametrize(
    "data", [b'{"a": NaN}', b'{"a": -Infinity}', b"[" * 100_000, b'{"a": ' + b"1" * 5000 + b"}"]
)
def test_json_python_would_accept_or_choke_on_is_invalid_json(data: bytes) -> None:
    assert rejected(data).reason == "invalid_json"


@pytest.mark.parametrize(
    ("data", "kind"), [(b"[1]", "array"), (b'"x"', "string"), (b"7", "number")]
)
def test_not_an_object(data: bytes, kind: str) -> None:
    err = rejected(data)

    assert (err.reason, err.field) == ("not_an_object", None)
    assert kind in err.detail


def test_missing_type_lists_the_known_types() -> None:
    err = rejected(raw(sample("order.placed", type=OMIT)))

    assert (err.reason, err.field) == ("unknown_type", "type")
    assert all(name in err.detail for name in CATALOG)


def test_misspelled_type_suggests_the_closest() -> None:
    err = rejected(raw(sample("order.placed", type="order.place")))

    assert (err.reason, err.field) == ("unknown_type", "type")
    assert 'did you mean "order.placed"?' in err.detail


def test_non_string_type_is_unknown_type() -> None:
    err = rejected(raw(sample("order.placed", type=["order.placed"])))

    assert (err.reason, err.field) == ("unknown_type", "type")
    assert "must be a string" in err.detail


@pytest.mark.parametrize(("version", "says"), [(2, "newer"), (0, "only version 1"), (-1, "1")])
def test_unsupported_schema_version(version: int, says: str) -> None:
    err = rejected(raw(sample("order.placed", schema_version=version)))

    assert (err.reason, err.field) == ("unsupported_schema_version", "schema_version")
    assert says in err.detail


def test_schema_version_must_be_an_integer() -> None:
    err = rejected(raw(sample("order.placed", schema_version="1")))

    assert (err.reason, err.field) == ("schema_invalid", "schema_version")


def test_float_money_is_refused_with_the_field_and_the_fix() -> None:
    err = rejected(raw(sample("remedy.requested", amount=12.5)))

    assert (err.reason, err.field) == ("schema_invalid", "data.amount")
    assert err.detail == 'data.amount: money must be a decimal string such as "12.50", not a float'
    assert err.errors == [("data.amount", err.detail)]


@pytest.mark.parametrize(
    ("type_name", "overrides", "field"),
    [
        ("case.resolved", {"csat": True}, "data.csat"),
        (
            "order.placed",
            {"items": [{"sku": "S", "qty": True, "unit_price": "1"}]},
            "data.items.0.qty",
        ),
    ],
)
def test_true_is_not_a_number(type_name: str, overrides: dict[str, Any], field: str) -> None:
    err = rejected(raw(sample(type_name, **overrides)))

    assert (err.reason, err.field) == ("schema_invalid", field)
    assert err.detail == f"{field}: must be a whole number, not true or false"


def test_missing_field() -> None:
    err = rejected(raw(sample("remedy.requested", case_id=OMIT)))

    assert (err.field, err.detail) == ("data.case_id", "data.case_id: required field is missing")


def test_unknown_field_suggests_the_right_name() -> None:
    item = {"sku": "S", "qty": 1, "unit_price": "1", "unit_prices": "2"}
    err = rejected(raw(sample("order.placed", items=[item])))

    assert err.field == "data.items.0.unit_prices"  # the union tag `order.placed` is not a field
    assert 'did you mean "unit_price"?' in err.detail


def test_pydantic_messages_are_rephrased_and_show_the_input() -> None:
    err = rejected(raw(sample("order.shipped", service_level="fast")))

    assert err.detail == (
        "data.service_level: must be 'standard', 'expedited' or 'overnight' (got 'fast')"
    )


def test_several_errors_report_the_first_and_count_the_rest() -> None:
    err = rejected(raw(sample("remedy.requested", amount=1.5, currency="usd", remedy="hug")))

    assert err.field == "data.remedy"  # pydantic reports fields in model order
    assert err.detail.endswith("(+2 more)")
    assert [field for field, _ in err.errors] == ["data.remedy", "data.amount", "data.currency"]
    assert all(message.startswith(f"{field}: ") for field, message in err.errors)


def test_customer_events_need_a_customer_id() -> None:
    err = rejected(raw(sample("order.placed", customer_id=OMIT)))

    assert (err.reason, err.field) == ("schema_invalid", "customer_id")


def test_money_beyond_the_matcher_range_is_refused() -> None:
    err = rejected(raw(sample("remedy.requested", amount="1E+999999999")))

    assert (err.reason, err.field) == ("schema_invalid", "data.amount")


def test_a_quantity_beyond_the_matcher_range_is_refused() -> None:
    event = sample("order.placed")
    event["data"]["items"][0]["qty"] = 10**20
    err = rejected(raw(event))

    assert (err.reason, err.field) == ("schema_invalid", "data.items.0.qty")


def test_hostile_text_in_errors_is_printable_and_bounded() -> None:
    event = sample("order.placed")
    event["data"]["\ud800" + "x" * 100_000] = 1

    err = rejected(json.dumps(event).encode())  # ASCII JSON, with the escape "\ud800"

    assert err.field is not None and len(err.field) < 100
    str(err).encode("utf-8")  # would raise on a lone surrogate
    assert len(err.detail) <= 600


def test_decode_error_pickles() -> None:
    err = rejected(raw(sample("remedy.requested", amount=1.5, currency="usd")))

    copy = pickle.loads(pickle.dumps(err))

    assert (copy.reason, copy.field, copy.detail, copy.errors) == (
        err.reason,
        err.field,
        err.detail,
        err.errors,
    )


# ---------------------------------------------------------------- fuzz: only DecodeError escapes

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _accepted_or_explained(data: bytes) -> None:
    # decode() tries pydantic's one-pass parser first and falls back to the checked path;
    # both must agree on every input: the same event, or the same error.
    try:
        checked: Envelope | DecodeError = _decode_checked(data, False)
    except DecodeError as err:
        checked = err
    try:
        event = decode(data)
    except DecodeError as err:
        assert err.reason in REASONS
        str(err).encode("utf-8")
        assert isinstance(checked, DecodeError)
        assert (err.reason, err.field, err.detail) == (
            checked.reason,
            checked.field,
            checked.detail,
        )
        return
    assert isinstance(event, Envelope)
    assert checked == event
    assert decode(encode(event)) == event


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _accepted_or_explained(data)


@settings(max_examples=300)
@given(JSON)
def test_fuzz_arbitrary_json(value: Any) -> None:
    _accepted_or_explained(json.dumps(value).encode())


VALUES = JSON | st.text() | st.sampled_from(["12.50", "1e3", "-1", "2026-11-23T10:00:00Z"])
PAYLOAD_FIELDS = sorted({name for payload, _ in CATALOG.values() for name in payload.model_fields})
ENVELOPE_FIELDS = ["type", "event_id", "occurred_at", "customer_id", "schema_version", "data"]


@settings(max_examples=500)
@given(
    st.sampled_from(list(CATALOG)),
    st.dictionaries(st.sampled_from(PAYLOAD_FIELDS), VALUES, max_size=3),
    st.dictionaries(st.sampled_from(ENVELOPE_FIELDS), VALUES, max_size=2),
)
def test_fuzz_near_valid_events(
    type_name: str, payload: dict[str, Any], envelope: dict[str, Any]
) -> None:
    # Valid events with a few fields replaced reach the validators, where the
    # interesting failures (and accidental acceptances) live.
    event = sample(type_name, **payload)
    event.update(envelope)
    _accepted_or_explained(raw(event))


def test_read_events_reports_a_broken_document_once_and_a_lone_surrogate_as_not_utf8() -> None:
    from events.producer import read_events

    pretty = b'[\n  {"event_id": "a",\n   "type": "clock.tick",},\n]\n'
    [(where, error)] = read_events(pretty, "pretty.json")
    assert where == "pretty.json" and isinstance(error, DecodeError)
    assert error.detail.startswith("not valid JSON at line 3, column 25")
    # an array item with a lone surrogate escape: refused, and the valid item still read
    tick = {"type": "clock.tick", "occurred_at": "2026-11-02T08:00:00Z", "data": {}}
    items = [{**tick, "event_id": "s\ud800"}, {**tick, "event_id": "ok"}]
    (first, bad), (_, good) = read_events(json.dumps(items).encode(), "a.json")
    assert first == "a.json[0]" and isinstance(bad, DecodeError) and bad.reason == "not_utf8"
    assert not isinstance(good, DecodeError) and good.event_id == "ok"
    # JSON lines whose first line is bad are still read line by line
    lines = b'{"broken\n' + json.dumps({**tick, "event_id": "x"}).encode() + b"\n"
    found = read_events(lines, "l.jsonl")
    assert [w for w, _ in found] == ["l.jsonl:1", "l.jsonl:2"]
    assert not isinstance(found[1][1], DecodeError)


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"period": "2026-13"}, "2026-13 is not a month, ISO week or day on the calendar"),
        ({"period": "2026-W99"}, "2026-W99 is not a month, ISO week or day on the calendar"),
        ({"period": "2026-02-31"}, "2026-02-31 is not a month, ISO week or day on the calendar"),
        ({"period": "٢٠٢٦-11"}, "must match pattern"),
        ({"occurred_at": "9999-12-31T23:59:59-01:00"}, "within the years 1 to 9999 in UTC"),
        # read as milliseconds or seconds since 1970, by their size, were they taken
        ({"occurred_at": "1700000000000"}, "must be an RFC 3339 time with an offset"),
        ({"occurred_at": "1.7e9"}, "must be an RFC 3339 time with an offset"),
    ],
)
def test_times_and_periods_that_do_not_exist_are_refused(
    overrides: dict[str, str], detail: str
) -> None:
    from tests.samples import sample

    with pytest.raises(DecodeError) as refused:
        decode(json.dumps(sample("budget.allocated", **overrides)).encode())
    assert refused.value.reason == "schema_invalid" and detail in refused.value.detail
    for fine in ("2026-11", "2026-W53", "2026-11-30"):
        assert decode(json.dumps(sample("budget.allocated", period=fine)).encode())


def test_minus_zero_money_is_zero_and_owner_events_are_keyed_by_owner() -> None:
    from events.producer import event_key
    from tests.samples import sample

    zero = decode(json.dumps(sample("remedy.requested", amount="-0.00")).encode())
    assert json.loads(encode(zero))["data"]["amount"] == "0.00"  # what the schema allows
    # a customer_id on an owner's event does not move it off the owner's partition
    owners = sample("budget.allocated", customer_id="c-9")
    assert event_key(decode(json.dumps(owners).encode())) == owners["data"]["owner"].encode()
    remedy = sample("remedy.requested")
    assert event_key(decode(json.dumps(remedy).encode())) == remedy["customer_id"].encode()


@pytest.mark.parametrize("number", [1700000000, 1700000000000, 0, 1.5])
def test_a_time_sent_as_a_number_is_refused(number: float) -> None:
    from tests.samples import sample

    with pytest.raises(DecodeError) as refused:
        decode(json.dumps(sample("order.shipped", promised_by=number)).encode())
    assert refused.value.reason == "schema_invalid"
    assert "RFC 3339" in refused.value.detail
