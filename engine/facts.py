"""The fact vocabulary: every dotted path a condition may read, with its type.

A *fact* is the flat record the matcher sees for one event: the event's own scalar
fields under `event.`, plus state folded from the log under `customer.`, `order.`,
`case.`, `rep.`, `sku.` and (for policies that name a budget) `budget.`. Every path
is always present — an entity the log has not seen yet reads as its zero value with
`<context>.known == false` — so durable_rules and the reference evaluator never
disagree about a missing property.

Inside the matcher money is an integer number of minor units (cents); text is str;
numbers are int; flags are bool. Nothing else ever reaches durable_rules.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Literal

from events.models import CATALOG, Envelope, Payload

FieldType = Literal["money", "number", "text", "bool"]
Scalar = int | str | bool

ZERO: dict[FieldType, Scalar] = {"money": 0, "number": 0, "text": "", "bool": False}


@dataclass(frozen=True)
class Field:
    path: str
    type: FieldType
    doc: str

    @property
    def key(self) -> str:
        """The property name in the flat fact posted to durable_rules."""
        return fact_key(self.path)


def fact_key(path: str) -> str:
    # durable_rules reads dots in property names as nesting; keep facts flat.
    return path.replace(".", "__")


def _fields(context: str, spec: list[tuple[str, FieldType, str]]) -> dict[str, Field]:
    return {f"{context}.{name}": Field(f"{context}.{name}", t, doc) for name, t, doc in spec}


STATE_FIELDS: dict[str, Field] = {
    **_fields(
        "customer",
        [
            ("id", "text", "the customer id (the event's customer_id)"),
            ("known", "bool", "the log has seen an order from this customer"),
            ("lifetime_value", "money", "sum of orders placed, net of fulfilled refunds"),
            ("order_count", "number", "orders placed"),
            (
                "remedies_90d",
                "number",
                "remedies fulfilled (remedy.fulfilled) in the 90 days before this event",
            ),
            ("tier", "text", "standard, silver (lifetime value >= 500) or gold (>= 2000)"),
            ("open_cases", "number", "cases opened and not yet resolved"),
            ("tenure_days", "number", "whole days since the customer's first order"),
        ],
    ),
    **_fields(
        "order",
        [
            ("id", "text", "the order the event is about (event or case), or empty"),
            ("known", "bool", "the log has seen this order placed"),
            ("amount", "money", "order total"),
            ("age_days", "number", "whole days from order placed to this event"),
            ("channel", "text", "web, phone, store, …"),
            ("item_count", "number", "units in the order"),
            ("service_level", "text", "standard, expedited or overnight; empty before shipping"),
            ("shipped", "bool", "order.shipped seen"),
            ("delayed", "bool", "shipment.delayed seen"),
            ("lost", "bool", "shipment.lost seen"),
            ("delay_days", "number", "whole days the latest new_eta is past promised_by"),
            (
                "delay_reports",
                "number",
                "shipment.delayed reports for this order so far, this event included",
            ),
            (
                "lost_reports",
                "number",
                "shipment.lost reports for this order so far, this event included",
            ),
        ],
    ),
    **_fields(
        "case",
        [
            ("id", "text", "the case the event is about, or empty"),
            ("known", "bool", "contact.opened seen for this case"),
            ("status", "text", "open or resolved; empty when unknown"),
            ("rep", "text", "the rep who owns the case"),
            ("topic", "text", "the topic it was opened with"),
            ("channel", "text", "chat, phone, email, …"),
            ("transfers", "number", "times the case was transferred"),
            ("age_hours", "number", "whole hours since the case was opened"),
            ("remedies", "number", "remedies fulfilled on this case"),
        ],
    ),
    **_fields(
        "rep",
        [
            ("id", "text", "the rep acting (event rep_id, else the case's rep)"),
            ("known", "bool", "rep.assigned seen for this rep"),
            ("team", "text", "the rep's team"),
            ("lead", "text", "the rep's team lead"),
        ],
    ),
    **_fields(
        "sku",
        [
            ("id", "text", "the sku the event is about, or empty"),
            ("reports_7d", "number", "defect reports for this sku in the 7 days up to this event"),
        ],
    ),
}

BUDGET_FIELDS: dict[str, Field] = _fields(
    "budget",
    [
        ("name", "text", "the budget the policy charges"),
        ("owner", "text", "the rep or team whose budget it is"),
        ("period", "text", "the period in event time, in UTC: 2026-11, 2026-W47 or 2026-11-23"),
        ("allocated", "money", "allocation for the period"),
        ("charged", "money", "approved spend in the period so far"),
        ("remaining", "money", "allocated minus charged"),
    ],
)


def _field_type(annotation: object) -> FieldType | None:
    """Map a payload annotation to a fact type; None for fields conditions cannot read."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_type(inner[0]) if len(inner) == 1 else None
    if typing.get_origin(annotation) is typing.Annotated:
        return _field_type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is Literal:
        return "text"
    if annotation is Decimal:
        return "money"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "number"
    if annotation is str:
        return "text"
    if annotation is datetime:
        return None
    return None


@cache
def event_fields(event_type: str) -> dict[str, Field]:
    """The `event.` paths for one input type: its scalar payload fields plus envelope ids."""
    payload: type[Payload] = CATALOG[event_type][0]
    fields = {
        "event.type": Field("event.type", "text", "the event type"),
        "event.customer_id": Field("event.customer_id", "text", "the customer"),
        "event.source": Field("event.source", "text", "the producing system"),
    }
    for name, info in payload.model_fields.items():
        t = _field_type(info.annotation)
        if t is not None:
            fields[f"event.{name}"] = Field(f"event.{name}", t, info.description or "")
    return fields


@cache
def vocabulary(event_type: str, with_budget: bool) -> dict[str, Field]:
    """Every path a policy `on: event_type` may read."""
    fields = {**event_fields(event_type), **STATE_FIELDS}
    if with_budget:
        fields.update(BUDGET_FIELDS)
    return fields


_ENVELOPE_PATHS = ("event.type", "event.customer_id", "event.source")


@cache
def _payload_fields(event_type: str) -> tuple[tuple[str, str, Scalar], ...]:
    """(path, payload attribute, zero value) for each payload field of `event_fact`."""
    fields: dict[str, Field] = event_fields(event_type)
    return tuple(
        (path, path[6:], ZERO[f.type]) for path, f in fields.items() if path not in _ENVELOPE_PATHS
    )


def event_fact(event: Envelope) -> dict[str, Scalar]:
    """The `event.` part of a fact: scalar payload fields, money in cents, None as zero."""
    payload = event.data
    fact: dict[str, Scalar] = {
        "event.type": event.type,
        "event.customer_id": event.customer_id or "",
        "event.source": event.source,
    }
    # Measured hot (once per event): the field list is worked out once per event type.
    for path, name, zero in _payload_fields(event.type):
        raw = getattr(payload, name, None)
        if raw is None:
            fact[path] = zero
        elif isinstance(raw, Decimal):
            fact[path] = to_minor(raw)
        else:
            fact[path] = raw
    return fact


def to_minor(amount: Decimal) -> int:
    """Money at the edge (Decimal) to the matcher's integer cents."""
    return int(amount.scaleb(2))


def from_minor(cents: int) -> Decimal:
    """Integer cents to an amount with exactly two decimals (`scaleb` sets the exponent to
    -2: 1200 -> 12.00, 5 -> 0.05; exact for any int64)."""
    return Decimal(cents).scaleb(-2)
