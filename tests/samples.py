"""One valid raw event (a JSON-ready dict) for every input type, for any test to build on.

    sample("remedy.requested")                      # the default sample
    sample("remedy.requested", amount="20.00")      # a `data` field changed
    sample("order.placed", event_id="e-2")          # an envelope field changed
    sample("order.placed", currency=OMIT)           # a field removed

All samples tell one story — customer cust-1 ordered ord-1, a part broke, rep-1 helps —
so they can be fed to the engine together. Event ids are fixed (deterministic tests):
override `event_id` when a test needs two distinct events of one type.
"""

from __future__ import annotations

import copy
from typing import Any, Final

OMIT: Final = object()
"""Pass as an override's value to remove that field."""

ENVELOPE_FIELDS = frozenset(
    {"type", "data", "event_id", "occurred_at", "customer_id", "schema_version", "source"}
)

_CUSTOMER = "cust-1"
_PAYLOADS: dict[str, dict[str, Any]] = {
    "order.placed": {
        "order_id": "ord-1",
        "amount": "120.00",
        "currency": "USD",
        "items": [{"sku": "SKU-1", "qty": 2, "unit_price": "60.00"}],
        "channel": "web",
    },
    "order.shipped": {
        "order_id": "ord-1",
        "carrier": "UPS",
        "service_level": "standard",
        "promised_by": "2026-11-26T18:00:00+00:00",
    },
    "shipment.delayed": {"order_id": "ord-1", "new_eta": "2026-11-28T18:00:00+00:00"},
    "shipment.lost": {"order_id": "ord-1", "last_scan": "2026-11-24T08:30:00+00:00"},
    "item.defect_reported": {
        "order_id": "ord-1",
        "sku": "SKU-1",
        "description": "The hinge snapped after a week.",
        "case_id": "case-1",
        "rep_id": "rep-1",
    },
    "contact.opened": {
        "case_id": "case-1",
        "rep_id": "rep-1",
        "channel": "chat",
        "topic": "defect",
        "order_id": "ord-1",
    },
    "contact.transferred": {
        "case_id": "case-1",
        "from_rep": "rep-1",
        "to_team": "team-b",
        "note": "Needs a warehouse check.",
    },
    "remedy.requested": {
        "case_id": "case-1",
        "rep_id": "rep-1",
        "order_id": "ord-1",
        "remedy": "replacement",
        "amount": "60.00",
        "currency": "USD",
    },
    "remedy.fulfilled": {
        "case_id": "case-1",
        "remedy": "replacement",
        "actual_cost": "42.10",
        "currency": "USD",
    },
    "case.resolved": {"case_id": "case-1", "resolution": "replaced", "csat": 5},
    "budget.allocated": {
        "owner": "team-a",
        "budget": "goodwill",
        "amount": "500.00",
        "currency": "USD",
        "period": "2026-11",
    },
    "rep.assigned": {"rep_id": "rep-1", "team": "team-a", "lead": "lead-1"},
    "clock.tick": {},
}
# Budget, staffing and clock events are not about one customer, so they carry no key.
_NO_CUSTOMER = frozenset({"budget.allocated", "rep.assigned", "clock.tick"})


def sample(type_name: str, **overrides: Any) -> dict[str, Any]:
    """A fresh, valid raw event of `type_name`, with `overrides` applied.

    Envelope field names override the envelope (`data=` replaces the whole payload);
    any other name overrides that field of `data`. `OMIT` removes the field.
    """
    if type_name not in _PAYLOADS:
        raise KeyError(f"no sample for {type_name!r}; known: {', '.join(_PAYLOADS)}")
    event: dict[str, Any] = {
        "type": type_name,
        "event_id": f"evt-{type_name}-1",
        "occurred_at": "2026-11-23T10:00:00+00:00",
        "schema_version": 1,
        "source": "tests",
        "data": copy.deepcopy(_PAYLOADS[type_name]),
    }
    if type_name not in _NO_CUSTOMER:
        event["customer_id"] = _CUSTOMER
    for name, value in overrides.items():
        target = event if name in ENVELOPE_FIELDS else event["data"]
        if value is OMIT:
            target.pop(name, None)
        else:
            target[name] = value
    return event


def ana_joins_east() -> dict[str, Any]:
    """Rep ana joins team east, led by lena, on Monday 2 November 2026 at 08:00."""
    return sample(
        "rep.assigned",
        event_id="r1",
        rep_id="ana",
        team="east",
        lead="lena",
        occurred_at="2026-11-02T08:00:00Z",
    )
