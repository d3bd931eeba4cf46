"""The event contract with producers: one frozen envelope, a typed payload per `type`.

Every model here is part of the public, versioned contract (`goodwill schema` exports
them as JSON Schema). Extend by adding optional fields or new types; never rename or
retype a field — bump `schema_version` and add an upcaster in `events.upcast` instead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    TypeAdapter,
)

SCHEMA_VERSION = 1
"""The envelope version this build writes and decides on."""


def _refuse_float(value: Any) -> Any:
    # A binary float cannot carry an exact amount; producers send "12.50" or 12.
    if isinstance(value, float):
        raise ValueError('money must be a decimal string such as "12.50", not a float')
    if isinstance(value, bool):
        raise ValueError('money must be a decimal string such as "12.50"')
    return value


MONEY_LIMIT = Decimal("1E15")
"""Money is below this many units: what every amount in an event or a decision fits."""


def _cents_exact(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("money must be a finite amount")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError("money has at most two decimal places")
    if value < 0:
        raise ValueError("money must not be negative")
    if value.is_zero():
        value = value.copy_abs()  # "-0" is 0, and is written back as "0"
    if value >= MONEY_LIMIT:
        # The matcher carries money as integer minor units, which must fit in 64 bits; the
        # bound also stops "1E+999999999" from expanding to a gigabyte string when encoded.
        raise ValueError("money must be less than 1000000000000000")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_refuse_float),
    AfterValidator(_cents_exact),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    # below 1E15 with at most two decimals (`_cents_exact`), as the schema says it too
    Field(
        json_schema_extra={
            "type": "string",
            "pattern": r"^[0-9]{1,15}(\.[0-9]{1,2})?$(?!\n)",
            "maxLength": 18,
        }
    ),
]
"""A non-negative amount with at most two decimals; JSON carries it as a string."""

Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", max_length=3, description="ISO 4217 code, e.g. USD")
]


def _in_utc_range(value: datetime) -> datetime:
    """A time that has a UTC equivalent (9999-12-31T23:59:59-01:00 has none)."""
    if 1 < value.year < 9999:  # an offset moves it by less than a day
        return value
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within the years 1 to 9999 in UTC") from None
    return value


# RFC 3339 with an offset, as the codec reads it (the schema states what JSON Schema's
# "date-time" format, unenforced by default, would leave to each validator); any number of
# fractional digits, of which the codec keeps six. The schemas' patterns are read alike by
# every validator: digits as [0-9], since Python's \d (the jsonschema package's) takes any
# script's, and `$(?!\n)`, since Python's $ also matches before a final newline.
_RFC3339 = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$(?!\n)"
)


_EDGE_YEARS = frozenset(("0001", "9999"))


def _instant(value: Any) -> Any:
    """What a time must be before pydantic reads it, in one call (each costs as much as
    the parse): RFC 3339 text, which starts with its year — pydantic would read
    1700000000, "1700000000000" or "1.7e9" as seconds or milliseconds since 1970,
    guessing which by the size — and a moment that exists in UTC."""
    if type(value) is str:
        if value[4:5] != "-":  # not a year first (the parse checks the rest)
            raise ValueError("must be an RFC 3339 time with an offset such as 2026-11-02T08:00:00Z")
        if value[:4] in _EDGE_YEARS:  # an offset may move it off the calendar
            try:
                _in_utc_range(datetime.fromisoformat(value))
            except ValueError as err:
                if "years 1 to 9999" in str(err):
                    raise
            except OverflowError:  # fromisoformat may apply the offset itself
                raise ValueError("must fall within the years 1 to 9999 in UTC") from None
        return value
    if isinstance(value, datetime):  # built in code
        return _in_utc_range(value) if value.tzinfo is not None else value
    raise ValueError("must be an RFC 3339 time with an offset such as 2026-11-02T08:00:00Z")


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_instant),
    Field(json_schema_extra={"pattern": _RFC3339}),
]
"""A moment with its offset, that exists in UTC."""
Id = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=4000)]


def _refuse_bool(value: Any) -> Any:
    # JSON's true is not 1, though pydantic reads it so (a CSAT score of true was a 1).
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    return value


_NOT_BOOL = BeforeValidator(_refuse_bool)
"""For an integer field, after its bounds (so that the schema keeps them): true and false
are refused, as the schemas refuse them."""
Remedy = Literal["replacement", "expedite", "credit", "refund"]
ServiceLevel = Literal["standard", "expedited", "overnight"]


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LineItem(Payload):
    sku: Id
    # Bounded so an order's item count stays a 64-bit integer (state and matcher): an
    # absurd quantity is refused with the record, never stops the engine.
    qty: Annotated[int, Field(gt=0, le=1_000_000_000), _NOT_BOOL]
    unit_price: Money


class OrderPlaced(Payload):
    order_id: Id
    amount: Money
    currency: Currency
    items: tuple[LineItem, ...] = ()
    channel: Id = "web"


class OrderShipped(Payload):
    order_id: Id
    carrier: Id
    service_level: ServiceLevel
    promised_by: Instant


class ShipmentDelayed(Payload):
    order_id: Id
    new_eta: Instant


class ShipmentLost(Payload):
    order_id: Id
    last_scan: Instant


class ItemDefectReported(Payload):
    order_id: Id
    sku: Id
    description: Text = ""
    case_id: Id | None = None
    rep_id: Id | None = None


class ContactOpened(Payload):
    case_id: Id
    rep_id: Id
    channel: Id
    topic: Id
    order_id: Id | None = None


class ContactTransferred(Payload):
    case_id: Id
    from_rep: Id
    to_team: Id
    note: Text = ""


class RemedyRequested(Payload):
    case_id: Id
    rep_id: Id
    order_id: Id | None = None
    remedy: Remedy
    amount: Money
    currency: Currency


class RemedyFulfilled(Payload):
    case_id: Id
    remedy: Remedy
    actual_cost: Money
    currency: Currency


class CaseResolved(Payload):
    case_id: Id
    resolution: Id
    csat: Annotated[int, Field(ge=1, le=5), _NOT_BOOL] | None = None


_PERIOD = (
    r"^[0-9]{4}-((0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?|W(0[1-9]|[1-4][0-9]|5[0-3]))$(?!\n)"
)


def _real_period(value: str) -> str:
    """A month, ISO week or day that exists on the calendar (2026-13 does not)."""
    try:
        if "W" in value:
            date.fromisocalendar(int(value[:4]), int(value[6:]), 1)
        elif len(value) == 7:
            date(int(value[:4]), int(value[5:7]), 1)
        else:
            date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a month, ISO week or day on the calendar") from None
    return value


class BudgetAllocated(Payload):
    owner: Id = Field(description="rep or team id the budget belongs to")
    budget: Id = Field(description="budget name from policies/budgets.yaml")
    amount: Money
    currency: Currency
    period: Annotated[
        str,
        Field(
            pattern=r"^[0-9]{4}-([0-9]{2}(-[0-9]{2})?|W[0-9]{2})$",
            max_length=10,
            # the schema's own: months, weeks and days in range (`_real_period` checks the
            # calendar, which a pattern cannot: 2026-02-30, a 53rd week of a 52-week year)
            json_schema_extra={"pattern": _PERIOD},
        ),
        AfterValidator(_real_period),
    ] = Field(
        description="the period this allocation is for: 2026-11 (month), 2026-W47, 2026-11-23"
    )


class RepAssigned(Payload):
    rep_id: Id
    team: Id
    lead: Id = Field(description="the person overflow and reviews for this team route to")


class ClockTick(Payload):
    pass


class Envelope(BaseModel):
    """Fields common to every event; `data` is typed by the subclass for each `type`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    data: Payload
    event_id: Id = Field(description="producer-assigned, globally unique; the dedupe key")
    occurred_at: Instant = Field(description="event time (RFC 3339 with offset)")
    customer_id: Id | None = Field(
        default=None, description="the Kafka key; required for customer events"
    )
    # Strict: `true`, `1.0` or `"1"` is not a version (the codec's checked path agrees).
    schema_version: Annotated[int, Strict()] = SCHEMA_VERSION
    source: Id = "unknown"


def _event(type_name: str, payload: type[Payload], customer: bool) -> type[Envelope]:
    namespace: dict[str, Any] = {
        "__annotations__": {"type": Literal[type_name], "data": payload},
        "__doc__": f"`{type_name}` event.",
        "__module__": __name__,
        "type": type_name,
    }
    if customer:
        namespace["__annotations__"]["customer_id"] = Id
        namespace["customer_id"] = Field(description="the Kafka key")
    if not payload.model_fields:
        namespace["data"] = ClockTick()
    cls_name = "".join(part.capitalize() for part in type_name.replace("_", ".").split("."))
    return type(cls_name + "Event", (Envelope,), namespace)


CATALOG: dict[str, tuple[type[Payload], bool]] = {
    # type: (payload, needs customer_id)
    "order.placed": (OrderPlaced, True),
    "order.shipped": (OrderShipped, True),
    "shipment.delayed": (ShipmentDelayed, True),
    "shipment.lost": (ShipmentLost, True),
    "item.defect_reported": (ItemDefectReported, True),
    "contact.opened": (ContactOpened, True),
    "contact.transferred": (ContactTransferred, True),
    "remedy.requested": (RemedyRequested, True),
    "remedy.fulfilled": (RemedyFulfilled, True),
    "case.resolved": (CaseResolved, True),
    "budget.allocated": (BudgetAllocated, False),
    "rep.assigned": (RepAssigned, False),
    "clock.tick": (ClockTick, False),
}
"""Input event types, in catalog order (README, "Event catalog"); `rep.assigned` came
after the first version of the catalog."""

EVENT_CLASSES: dict[str, type[Envelope]] = {
    name: _event(name, payload, customer) for name, (payload, customer) in CATALOG.items()
}

# ---------------------------------------------------------------- engine outputs

Outcome = Literal["authorized", "routed", "noted"]


class Grant(Payload):
    remedy: Id
    up_to: Money
    currency: Currency


class Charge(Payload):
    budget: Id
    owner: Id
    period: str
    amount: Money
    allocated: Money
    remaining: Money
    currency: Currency


class Obligation(Payload):
    kind: Literal["follow_up"] = "follow_up"
    obligation_id: Id
    case_id: Id
    due_at: AwareDatetime


class Route(Payload):
    to: Id = Field(description="role or team named by the policy, e.g. team-lead")
    person: Id | None = Field(default=None, description="who that is, when state knows")
    reason: Text
    context: dict[str, str | int | bool | None] = Field(default_factory=dict)


class PolicyRef(Payload):
    id: Id
    version: int
    hash: str
    rule: Id


class Clause(Payload):
    text: str
    result: bool
    values: dict[str, str | int | bool | None] = Field(default_factory=dict)


class PassedOver(Payload):
    """An earlier rule of the policy that did not match: the clauses it failed."""

    rule: Id
    clauses: tuple[Clause, ...]


class Why(Payload):
    policy: Id
    rule: Id
    clauses: tuple[Clause, ...]
    # Rules are tried in order and the first match wins, so a rule after the first says
    # what kept each earlier one from matching. Absent for a policy's first rule.
    # Written only when there is one, so a decision from before the field has the same
    # bytes when read and written again.
    passed_over: tuple[PassedOver, ...] = Field(default=(), exclude_if=lambda v: not v)
    # What the rule did not do though it matched, and why (an alert already raised in
    # its window); written only when set, like passed_over.
    note: Text = Field(default="", exclude_if=lambda v: not v)


class DecisionData(Payload):
    decision_id: Id
    caused_by: Id
    cause_type: Id
    rep_id: Id | None = None
    case_id: Id | None = None
    order_id: Id | None = None
    outcome: Outcome
    grants: tuple[Grant, ...] = ()
    charges: tuple[Charge, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    routes: tuple[Route, ...] = ()
    say: tuple[Text, ...] = ()
    policies: tuple[PolicyRef, ...] = ()
    policy_set: str
    why: tuple[Why, ...] = ()


class FollowupOverdue(Payload):
    obligation_id: Id
    case_id: Id
    rep_id: Id | None = None
    due_at: AwareDatetime
    watermark: AwareDatetime
    escalate_to: Route


class RootcauseAlert(Payload):
    sku: Id
    reports: int
    threshold: int
    window_start: AwareDatetime
    window_end: AwareDatetime
    notify: Id
    orders: tuple[Id, ...] = ()
    # The policy's words for the team and the fields it shows them, as a route carries
    # them; written only when set, so an alert from before them keeps its bytes.
    reason: Text = Field(default="", exclude_if=lambda v: not v)
    context: dict[str, str | int | bool | None] = Field(
        default_factory=dict, exclude_if=lambda v: not v
    )


class PolicyFile(Payload):
    path: str
    policy: Id
    version: int
    hash: str


class PolicySetActivated(Payload):
    policy_set: str
    files: tuple[PolicyFile, ...]


OUTPUTS: dict[str, tuple[type[Payload], bool]] = {
    "decision.made": (DecisionData, False),
    "followup.overdue": (FollowupOverdue, False),
    "rootcause.alert": (RootcauseAlert, False),
    "policy_set.activated": (PolicySetActivated, False),
}

OUTPUT_CLASSES: dict[str, type[Envelope]] = {
    name: _event(name, payload, customer) for name, (payload, customer) in OUTPUTS.items()
}


def make_output(
    type_name: str, event_id: str, occurred_at: datetime, data: Payload, customer_id: str | None
) -> Envelope:
    """Build an engine output event; `source` is always `goodwill`."""
    cls = OUTPUT_CLASSES[type_name]
    return cls(
        event_id=event_id,
        occurred_at=occurred_at,
        customer_id=customer_id,
        source="goodwill",
        data=data,  # type: ignore[call-arg]
    )


# The union is spelled from the catalog so the catalog stays the one source of types.
_UNION: Any = Annotated[Union[tuple(EVENT_CLASSES.values())], Field(discriminator="type")]  # noqa: UP007
# Parsing JSON, pydantic caches every string it makes (keys and values) by default; the
# values of events (ids, times, words) rarely repeat, so only keys are cached: decoding a
# shop's event took 4.6 instead of 5.5 us (measured over 20,000 workload events).
EVENT_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(_UNION, config=ConfigDict(cache_strings="keys"))
"""Validates any input event, dispatching on `type`."""

_OUTPUT_UNION: Any = Annotated[Union[tuple(OUTPUT_CLASSES.values())], Field(discriminator="type")]  # noqa: UP007
OUTPUT_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(_OUTPUT_UNION)
"""Validates any engine output (decisions, alerts, overdue follow-ups, activations)."""
