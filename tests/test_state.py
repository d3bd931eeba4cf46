"""StateStore: folding rules, the facts enrich() reads, batching, durability and digest."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine import outbox
from engine.facts import STATE_FIELDS
from engine.micros import micros
from engine.state import DueFollowup, StateStore
from engine.state_file import STATE_FILE, STATE_SCHEMA_VERSION, StateVersionError
from events.models import CATALOG, EVENT_ADAPTER, DecisionData, Envelope

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
MICROSECOND = timedelta(microseconds=1)
_ids = itertools.count()


def ev(
    type_: str,
    data: dict[str, Any] | None = None,
    *,
    at: datetime = T0,
    customer: str | None = "cust-1",
    event_id: str | None = None,
) -> Envelope:
    raw: dict[str, Any] = {
        "type": type_,
        "event_id": event_id or f"evt-{next(_ids)}",
        "occurred_at": at.isoformat(),
        "data": data or {},
    }
    if customer is not None:
        raw["customer_id"] = customer
    return EVENT_ADAPTER.validate_python(raw)


def placed(order: str = "ord-1", amount: str = "120.00", **kw: Any) -> Envelope:
    items = kw.pop("items", [{"sku": "SKU-1", "qty": 2, "unit_price": "60.00"}])
    data = {"order_id": order, "amount": amount, "currency": "USD", "items": items}
    return ev("order.placed", data | {"channel": kw.pop("channel", "web")}, **kw)


def opened(
    case: str = "case-1", rep: str = "rep-1", order: str | None = None, **kw: Any
) -> Envelope:
    data = {"case_id": case, "rep_id": rep, "channel": "chat", "topic": "broken part"}
    return ev("contact.opened", data | ({"order_id": order} if order else {}), **kw)


def resolved(case: str = "case-1", **kw: Any) -> Envelope:
    return ev("case.resolved", {"case_id": case, "resolution": "replaced"}, **kw)


def defect(sku: str = "SKU-1", order: str = "ord-1", **kw: Any) -> Envelope:
    return ev("item.defect_reported", {"order_id": order, "sku": sku}, **kw)


def case_defect(case: str, rep: str | None = None) -> Envelope:
    data = {"order_id": "ord-1", "sku": "SKU-1", "case_id": case}
    return ev("item.defect_reported", data | ({"rep_id": rep} if rep else {}))


def requested(case: str, remedy: str = "credit") -> Envelope:
    data = {"case_id": case, "rep_id": "rep-1", "remedy": remedy, "amount": "5", "currency": "USD"}
    return ev("remedy.requested", data)


def fulfilled(
    case: str = "case-1", remedy: str = "replacement", cost: str = "10.00", **kw: Any
) -> Envelope:
    data = {"case_id": case, "remedy": remedy, "actual_cost": cost, "currency": "USD"}
    return ev("remedy.fulfilled", data, **kw)


def tick(at: datetime) -> Envelope:
    return ev("clock.tick", at=at, customer=None)


def decision(decision_id: str | None = None, **fields: Any) -> DecisionData:
    base: dict[str, Any] = {
        "decision_id": decision_id or f"dec-{next(_ids)}",
        "caused_by": "evt-x",
        "cause_type": "item.defect_reported",
        "outcome": "authorized",
        "policy_set": "ps-1",
    }
    return DecisionData.model_validate(base | fields)


def grant(remedy: str = "replacement", up_to: str = "10.00") -> dict[str, str]:
    return {"remedy": remedy, "up_to": up_to, "currency": "USD"}


def charge(amount: str, budget: str = "goodwill", owner: str = "team-a") -> dict[str, str]:
    return {
        "budget": budget,
        "owner": owner,
        "period": "2026-03",
        "amount": amount,
        "allocated": "0",
        "remaining": "0",
        "currency": "USD",
    }


def obligation(ob: str, case: str = "case-1", due: datetime = T0 + DAY) -> dict[str, Any]:
    return {"obligation_id": ob, "case_id": case, "due_at": due.isoformat()}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore.open(tmp_path)
    yield s
    s.close()


def fold(store: StateStore, *events: Envelope) -> None:
    store.begin()
    for e in events:
        store.apply_event(e)
    store.commit()


def facts(store: StateStore, event: Envelope) -> dict[str, int | str | bool]:
    """What the service sees: apply the event, then enrich it."""
    store.begin()
    store.apply_event(event)
    result = store.enrich(event)
    store.commit()
    return result


# ---------------------------------------------------------------- the fact contract


def _one_of_each(at: datetime) -> list[Envelope]:
    money = {"currency": "USD"}
    payloads: dict[str, dict[str, Any]] = {
        "order.placed": {"order_id": "ord-1", "amount": "5", **money},
        "order.shipped": {
            "order_id": "ord-1",
            "carrier": "ups",
            "service_level": "expedited",
            "promised_by": at.isoformat(),
        },
        "shipment.delayed": {"order_id": "ord-1", "new_eta": at.isoformat()},
        "shipment.lost": {"order_id": "ord-1", "last_scan": at.isoformat()},
        "item.defect_reported": {"order_id": "ord-1", "sku": "SKU-1"},
        "contact.opened": {"case_id": "case-1", "rep_id": "rep-1", "channel": "c", "topic": "t"},
        "contact.transferred": {"case_id": "case-1", "from_rep": "rep-1", "to_team": "t2"},
        "remedy.requested": {
            "case_id": "case-1",
            "rep_id": "rep-1",
            "remedy": "credit",
            "amount": "5",
            **money,
        },
        "remedy.fulfilled": {"case_id": "case-1", "remedy": "credit", "actual_cost": "5", **money},
        "case.resolved": {"case_id": "case-1", "resolution": "done"},
        "budget.allocated": {
            "owner": "team-a",
            "budget": "b",
            "amount": "5",
            "period": "2026-03",
            **money,
        },
        "rep.assigned": {"rep_id": "rep-1", "team": "team-a", "lead": "lee"},
        "clock.tick": {},
    }
    assert set(payloads) == set(CATALOG), "a catalog type has no sample here"
    return [
        ev(t, p, at=at, customer="cust-1" if CATALOG[t][1] else None) for t, p in payloads.items()
    ]


_PYTHON_TYPE = {"money": int, "number": int, "text": str, "bool": bool}


@pytest.mark.parametrize("known", [False, True], ids=["empty-store", "after-history"])
def test_enrich_returns_exactly_the_state_fields_with_their_types(
    store: StateStore, known: bool
) -> None:
    if known:
        fold(store, *_one_of_each(T0))
    for event in _one_of_each(T0 + DAY):
        fact = facts(store, event)
        assert fact.keys() == STATE_FIELDS.keys(), event.type
        for path, field in STATE_FIELDS.items():
            # type() rather than isinstance: a bool must not pass for a number, nor 0 for False
            assert type(fact[path]) is _PYTHON_TYPE[field.type], (event.type, path, fact[path])


def test_every_catalog_type_folds_without_error_outside_a_batch(store: StateStore) -> None:
    for event in _one_of_each(T0):
        store.apply_event(event)  # autocommits: nothing left open
    assert store.watermark() == T0
    assert store.stats()["orders"] == 1


def test_unknown_entities_read_as_zero_values_with_their_ids(store: StateStore) -> None:
    fact = facts(store, defect(sku="SKU-9", order="ord-9", customer="cust-9"))
    assert fact["customer.id"] == "cust-9"
    assert fact["order.id"] == "ord-9"
    assert fact["sku.id"] == "SKU-9"
    assert fact["customer.known"] is False
    assert fact["order.known"] is False
    assert fact["case.known"] is False
    assert fact["rep.known"] is False
    assert fact["customer.tier"] == "standard"
    assert fact["case.status"] == ""
    assert fact["sku.reports_7d"] == 1  # this report itself, once applied


def test_unknown_case_and_rep_named_by_the_event(store: StateStore) -> None:
    fact = facts(store, case_defect("case-x", rep="rep-x"))
    assert (fact["case.id"], fact["case.known"], fact["case.transfers"]) == ("case-x", False, 0)
    assert (fact["rep.id"], fact["rep.known"], fact["rep.team"]) == ("rep-x", False, "")


def test_events_without_customer_read_empty_customer(store: StateStore) -> None:
    fold(store, placed())
    fact = facts(store, tick(T0 + DAY))
    assert fact["customer.id"] == ""
    assert fact["customer.known"] is False
    assert fact["customer.lifetime_value"] == 0


# ---------------------------------------------------------------- orders and customers


def test_order_placed_folds_order_and_customer(store: StateStore) -> None:
    items = [
        {"sku": "A", "qty": 2, "unit_price": "10.00"},
        {"sku": "B", "qty": 3, "unit_price": "1.00"},
    ]
    fold(store, placed("ord-1", "23.00", items=items, channel="phone", at=T0))
    fact = facts(store, placed("ord-2", "100.50", at=T0 + 3 * DAY + 5 * SECOND))
    assert fact["customer.known"] is True
    assert fact["customer.lifetime_value"] == 12_350
    assert fact["customer.order_count"] == 2
    assert fact["customer.tenure_days"] == 3
    assert fact["order.id"] == "ord-2"
    assert fact["order.known"] is True
    assert fact["order.amount"] == 10_050
    assert fact["order.age_days"] == 0
    first = facts(store, defect(order="ord-1", at=T0 + 10 * DAY - SECOND))
    assert first["order.amount"] == 2_300
    assert first["order.channel"] == "phone"
    assert first["order.item_count"] == 5
    assert first["order.age_days"] == 9  # floor, one second short of 10 days


def test_a_repeated_order_placed_counts_once(store: StateStore) -> None:
    fold(store, placed("ord-1", "50.00"), placed("ord-1", "50.00"))
    fact = facts(store, defect(order="ord-1"))
    assert fact["customer.order_count"] == 1
    assert fact["customer.lifetime_value"] == 5_000


def test_order_age_is_never_negative(store: StateStore) -> None:
    fold(store, placed(at=T0))
    assert facts(store, defect(at=T0 - DAY))["order.age_days"] == 0


def test_shipping_events(store: StateStore) -> None:
    promised = T0 + 3 * DAY
    fold(
        store,
        placed(at=T0),
        ev(
            "order.shipped",
            {
                "order_id": "ord-1",
                "carrier": "ups",
                "service_level": "overnight",
                "promised_by": promised.isoformat(),
            },
        ),
    )
    fact = facts(store, defect())
    assert (fact["order.shipped"], fact["order.service_level"]) == (True, "overnight")
    assert (fact["order.delayed"], fact["order.delay_days"], fact["order.lost"]) == (
        False,
        0,
        False,
    )
    assert fact["order.delay_reports"] == 0
    late = promised + 2 * DAY + 23 * HOUR
    fact = facts(store, ev("shipment.delayed", {"order_id": "ord-1", "new_eta": late.isoformat()}))
    assert (fact["order.delayed"], fact["order.delay_days"], fact["order.delay_reports"]) == (
        True,
        2,
        1,
    )
    early = promised - DAY
    fact = facts(store, ev("shipment.delayed", {"order_id": "ord-1", "new_eta": early.isoformat()}))
    assert fact["order.delay_days"] == 0  # the latest eta wins, and is not late
    assert fact["order.delay_reports"] == 2  # each report counts, this one included
    fact = facts(store, ev("shipment.lost", {"order_id": "ord-1", "last_scan": T0.isoformat()}))
    assert (fact["order.lost"], fact["order.lost_reports"]) == (True, 1)
    fact = facts(store, ev("shipment.lost", {"order_id": "ord-1", "last_scan": T0.isoformat()}))
    assert (fact["order.lost"], fact["order.lost_reports"]) == (True, 2)


def test_delay_before_shipping_has_no_delay_days(store: StateStore) -> None:
    eta = (T0 + 9 * DAY).isoformat()
    fact = facts(store, ev("shipment.delayed", {"order_id": "ord-1", "new_eta": eta}))
    assert (fact["order.delayed"], fact["order.delay_days"], fact["order.known"]) == (
        True,
        0,
        False,
    )


def test_shipping_before_the_order_arrives_keeps_both(store: StateStore) -> None:
    shipped = ev(
        "order.shipped",
        {
            "order_id": "ord-1",
            "carrier": "ups",
            "service_level": "expedited",
            "promised_by": T0.isoformat(),
        },
    )
    assert facts(store, shipped)["order.known"] is False
    fact = facts(store, placed("ord-1", "10.00"))
    assert (fact["order.known"], fact["order.shipped"], fact["order.amount"]) == (True, True, 1000)
    assert fact["customer.lifetime_value"] == 1000


@pytest.mark.parametrize(
    ("amount", "tier"),
    [
        ("499.99", "standard"),
        ("500.00", "silver"),
        ("1999.99", "silver"),
        ("2000.00", "gold"),
    ],
)
def test_tier_thresholds(store: StateStore, amount: str, tier: str) -> None:
    assert facts(store, placed(amount=amount))["customer.tier"] == tier


def test_fulfilled_refund_reduces_lifetime_value_down_to_zero(store: StateStore) -> None:
    fold(store, placed(amount="2000.00"))
    fact = facts(store, fulfilled(remedy="refund", cost="0.01"))
    assert (fact["customer.lifetime_value"], fact["customer.tier"]) == (199_999, "silver")
    fact = facts(store, fulfilled(remedy="credit", cost="5000.00"))
    assert fact["customer.lifetime_value"] == 199_999  # a credit is no refund
    fact = facts(store, fulfilled(remedy="replacement", cost="5000.00"))
    assert fact["customer.lifetime_value"] == 199_999  # nor is a replacement
    fact = facts(store, fulfilled(remedy="refund", cost="5000.00"))
    assert (fact["customer.lifetime_value"], fact["customer.tier"]) == (0, "standard")


def test_lifetime_value_is_orders_minus_refunds_in_any_order(store: StateStore) -> None:
    # the floor applies to the total, so a refund folded before an order still counts
    fold(store, fulfilled(remedy="refund", cost="30.00", at=T0 - DAY))
    fact = facts(store, placed("ord-1", "100.00"))
    assert fact["customer.lifetime_value"] == 7_000
    fold(store, fulfilled(remedy="refund", cost="150.00"))
    assert facts(store, defect())["customer.lifetime_value"] == 0
    fact = facts(store, placed("ord-2", "100.00"))
    assert fact["customer.lifetime_value"] == 2_000  # 200 ordered - 180 refunded


def test_a_decision_with_several_grants_is_no_remedy(store: StateStore) -> None:
    # grants are options a rep may use; only remedy.fulfilled says what the customer got
    fold(store, placed(amount="600.00"), opened("case-1"))
    before = facts(store, case_defect("case-1"))
    options = [grant("replacement", "180.00"), grant("refund", "180.00"), grant("credit", "20")]
    store.apply_decision(
        decision(case_id="case-1", grants=options, obligations=[obligation("ob-1")]),
        T0,
        "cust-1",
    )
    after = facts(store, case_defect("case-1"))
    assert before["customer.remedies_90d"] == after["customer.remedies_90d"] == 0
    assert before["customer.lifetime_value"] == after["customer.lifetime_value"] == 60_000
    assert after["customer.tier"] == "silver"
    assert before["case.remedies"] == after["case.remedies"] == 0
    assert [d.obligation_id for d in store.due_followups(T0 + DAY)] == ["ob-1"]  # it did fold


# ---------------------------------------------------------------- remedies and reports windows


@pytest.mark.parametrize(
    ("fulfilled_before", "counted"),
    [
        (timedelta(0), 1),
        (90 * DAY - MICROSECOND, 1),
        (90 * DAY - SECOND, 1),
        (90 * DAY, 0),
        (90 * DAY + MICROSECOND, 0),
        (90 * DAY + SECOND, 0),
        (-MICROSECOND, 0),  # fulfilled after the event's time
        (-SECOND, 0),
    ],
)
def test_remedies_90d_window(store: StateStore, fulfilled_before: timedelta, counted: int) -> None:
    event_time = T0 + 200 * DAY
    fold(store, fulfilled(at=event_time - fulfilled_before))
    assert facts(store, defect(at=event_time))["customer.remedies_90d"] == counted


def test_remedies_90d_boundary_with_a_remedy_inside_the_window(store: StateStore) -> None:
    # with a recent remedy the range count runs; its lower bound must still be exclusive
    event_time = T0 + 200 * DAY
    befores = (90 * DAY, 90 * DAY + MICROSECOND, DAY, -MICROSECOND, -SECOND)
    fold(store, *(fulfilled(at=event_time - before) for before in befores))
    assert facts(store, defect(at=event_time))["customer.remedies_90d"] == 1


def test_remedies_90d_counts_each_fulfilled_remedy_for_its_customer_only(
    store: StateStore,
) -> None:
    fold(
        store,
        fulfilled("case-1"),
        fulfilled("case-1", remedy="credit"),
        fulfilled("case-2", customer="cust-2"),
        requested("case-1"),  # asked for, not received
    )
    assert facts(store, defect(at=T0 + DAY))["customer.remedies_90d"] == 2
    assert facts(store, defect(at=T0 + DAY, customer="cust-2"))["customer.remedies_90d"] == 1
    assert facts(store, defect(at=T0 + DAY, customer="cust-3"))["customer.remedies_90d"] == 0


def test_the_same_fulfilled_event_counts_once(store: StateStore) -> None:
    fold(store, placed(amount="100.00"), opened("case-1"))
    again = fulfilled(remedy="refund", cost="40.00", event_id="ful-1")
    fold(store, again, again)
    fact = facts(store, case_defect("case-1"))
    assert (fact["customer.remedies_90d"], fact["case.remedies"]) == (1, 1)
    assert fact["customer.lifetime_value"] == 6_000


@pytest.mark.parametrize(
    ("reported_before", "counted"),
    [(7 * DAY - SECOND, 2), (7 * DAY, 1), (7 * DAY + SECOND, 1)],
)
def test_reports_7d_window(store: StateStore, reported_before: timedelta, counted: int) -> None:
    now = T0 + 30 * DAY
    fold(store, defect(sku="SKU-1", at=now - reported_before), defect(sku="SKU-2", at=now))
    assert facts(store, defect(sku="SKU-1", at=now))["sku.reports_7d"] == counted


def test_reports_7d_ignores_reports_after_the_event(store: StateStore) -> None:
    fold(store, defect(at=T0 + SECOND), defect(at=T0 - DAY))
    assert store.enrich(defect(at=T0))["sku.reports_7d"] == 1


def test_sku_reports_after_since_is_exclusive(store: StateStore) -> None:
    # the same window as sku.reports_7d: (t - 7 days, t]
    fold(
        store,
        defect(order="o-1", at=T0 - SECOND),
        defect(order="o-2", at=T0),
        defect(order="o-3", at=T0 + DAY),
        defect(order="o-2", at=T0 + 2 * DAY),
        defect(sku="SKU-2", order="o-9", at=T0 + DAY),
    )
    later = T0 + 7 * DAY
    assert store.sku_reports("SKU-1", T0, later) == (2, ["o-3", "o-2"])
    assert store.sku_reports("SKU-1", T0 - SECOND, later) == (3, ["o-2", "o-3", "o-2"])
    assert store.sku_reports("SKU-3", T0, later) == (0, [])
    # and up to `until` inclusive: a report made later, though folded already, is not in it
    assert store.sku_reports("SKU-1", T0 - SECOND, T0 + DAY) == (2, ["o-2", "o-3"])


# ---------------------------------------------------------------- cases and reps


def test_case_lifecycle(store: StateStore) -> None:
    fold(store, placed("ord-1", at=T0), opened("case-1", "rep-7", order="ord-1", at=T0))
    transfer = {"case_id": "case-1", "from_rep": "rep-7", "to_team": "t2"}
    fact = facts(store, ev("contact.transferred", transfer, at=T0 + 5 * HOUR - SECOND))
    assert fact["case.known"] is True
    assert (fact["case.status"], fact["case.rep"], fact["case.transfers"]) == ("open", "rep-7", 1)
    assert (fact["case.topic"], fact["case.channel"], fact["case.age_hours"]) == (
        "broken part",
        "chat",
        4,
    )
    assert fact["customer.open_cases"] == 1
    # order and rep come from the case when the payload names none
    assert (fact["order.id"], fact["order.known"], fact["rep.id"]) == ("ord-1", True, "rep-7")
    fact = facts(store, resolved("case-1", at=T0 + DAY))
    assert (fact["case.status"], fact["customer.open_cases"]) == ("resolved", 0)
    fact = facts(store, resolved("case-1", at=T0 + 2 * DAY))  # twice: no change
    assert fact["customer.open_cases"] == 0


def test_open_cases_counts_only_open_ones_and_reopen(store: StateStore) -> None:
    fold(store, opened("case-1"), opened("case-2"), opened("case-2"), resolved("case-1"))
    assert facts(store, tick(T0))["customer.open_cases"] == 0  # no customer on a tick
    assert facts(store, defect())["customer.open_cases"] == 1
    fact = facts(store, opened("case-1", "rep-2", at=T0 + DAY))
    assert (fact["customer.open_cases"], fact["case.status"], fact["case.rep"]) == (
        2,
        "open",
        "rep-2",
    )
    assert fact["customer.known"] is False  # cases alone do not make a known customer
    assert fact["customer.tenure_days"] == 0


def test_contact_transferred_keeps_the_rep(store: StateStore) -> None:
    fold(store, opened("case-1", "rep-1"))
    data = {"case_id": "case-1", "from_rep": "rep-1", "to_team": "billing"}
    fold(store, ev("contact.transferred", data), ev("contact.transferred", data))
    fact = facts(store, case_defect("case-1"))
    assert (fact["case.transfers"], fact["case.rep"]) == (2, "rep-1")


def test_case_remedies_count_fulfilled_remedies_on_the_case(store: StateStore) -> None:
    fold(
        store,
        opened("case-1"),
        opened("case-2"),
        requested("case-1"),  # asked for, not received
        fulfilled("case-1"),
        fulfilled("case-1", remedy="credit"),
        fulfilled("case-2"),
    )
    assert facts(store, requested("case-1"))["case.remedies"] == 2
    assert facts(store, case_defect("case-2"))["case.remedies"] == 1
    fold(store, resolved("case-1"), opened("case-1", at=T0 + DAY))  # a reopen keeps them
    assert facts(store, fulfilled("case-1"))["case.remedies"] == 3


def test_case_remedies_fulfilled_before_the_case_opened(store: StateStore) -> None:
    fold(store, fulfilled("case-1", at=T0 - HOUR), fulfilled("case-2", at=T0 - HOUR))
    fact = facts(store, case_defect("case-1"))
    assert (fact["case.known"], fact["case.remedies"]) == (False, 0)
    assert facts(store, opened("case-1"))["case.remedies"] == 1


def test_remedy_requested_leaves_facts_unchanged_but_is_recorded(store: StateStore) -> None:
    fold(store, placed(), opened("case-1", order="ord-1"))
    request = requested("case-1", remedy="refund")
    before_fact = store.enrich(request)
    before_digest = store.digest()
    fold(store, request)
    assert store.enrich(request) == before_fact
    assert store.digest() != before_digest


def test_rep_assigned_latest_wins(store: StateStore) -> None:
    assert store.rep("rep-1") is None
    fold(store, ev("rep.assigned", {"rep_id": "rep-1", "team": "t1", "lead": "ann"}, customer=None))
    fact = facts(
        store, ev("rep.assigned", {"rep_id": "rep-1", "team": "t2", "lead": "bo"}, customer=None)
    )
    assert store.rep("rep-1") == ("t2", "bo")
    assert (fact["rep.id"], fact["rep.known"], fact["rep.team"], fact["rep.lead"]) == (
        "rep-1",
        True,
        "t2",
        "bo",
    )
    # a rep named by the payload wins over the case's rep
    fold(store, opened("case-1", "rep-2"))
    fact = facts(store, case_defect("case-1", rep="rep-1"))
    assert (fact["rep.id"], fact["rep.team"], fact["case.rep"]) == ("rep-1", "t2", "rep-2")


# ---------------------------------------------------------------- budgets


def test_budget_allocation_latest_wins_and_charges_add_up(store: StateStore) -> None:
    assert store.budget_usage("goodwill", "team-a", "2026-03") == (None, 0)
    store.apply_decision(decision(charges=[charge("12.50")]), T0, "cust-1")
    assert store.budget_usage("goodwill", "team-a", "2026-03") == (None, 1250)
    allocate = {"owner": "team-a", "budget": "goodwill", "currency": "USD", "period": "2026-03"}
    fold(
        store,
        ev("budget.allocated", allocate | {"amount": "100"}, customer=None),
        ev("budget.allocated", allocate | {"amount": "300.00"}, customer=None),
    )
    store.apply_decision(
        decision(charges=[charge("7.50"), charge("1.00", owner="team-b")]), T0, "cust-1"
    )
    assert store.budget_usage("goodwill", "team-a", "2026-03") == (30_000, 2_000)
    assert store.budget_usage("goodwill", "team-b", "2026-03") == (None, 100)
    assert store.budget_usage("goodwill", "team-a", "2026-04") == (None, 0)
    assert store.budgets() == [
        ("goodwill", "team-a", "2026-03", 30_000, 2_000),
        ("goodwill", "team-b", "2026-03", None, 100),
    ]


def test_the_same_decision_folds_once(store: StateStore) -> None:
    fold(store, opened("case-1"))
    d = decision(
        "dec-1",
        case_id="case-1",
        grants=[grant()],
        charges=[charge("10.00")],
        obligations=[obligation("ob-1")],
    )
    store.apply_decision(d, T0, "cust-1")
    first = store.digest()
    store.apply_decision(d, T0, "cust-1")
    assert store.digest() == first
    assert store.budget_usage("goodwill", "team-a", "2026-03") == (None, 1000)
    assert [d.obligation_id for d in store.due_followups(T0 + DAY)] == ["ob-1"]


def test_noted_decisions_change_nothing(store: StateStore) -> None:
    before = store.digest()
    store.apply_decision(decision(outcome="noted"), T0, "cust-1")
    assert store.digest() == before


# ---------------------------------------------------------------- follow-ups and alerts


def test_due_followups(store: StateStore) -> None:
    fold(store, opened("case-1", "rep-1"), opened("case-2", "rep-2"), opened("case-3", "rep-3"))
    store.apply_decision(
        decision(
            case_id="case-1",
            rep_id="rep-9",
            obligations=[
                obligation("ob-b", "case-1", T0 + DAY),
                obligation("ob-a", "case-1", T0 + DAY),
            ],
        ),
        T0,
        "cust-1",
    )
    store.apply_decision(decision(obligations=[obligation("ob-2", "case-2", T0 + DAY)]), T0, None)
    store.apply_decision(
        decision(obligations=[obligation("ob-3", "case-3", T0 + 3 * DAY)]), T0, None
    )
    assert store.due_followups(T0 + DAY - SECOND) == []
    due = store.due_followups(T0 + DAY)
    assert due == [  # by (due_at, obligation_id); the rep is the case's, not the decision's
        DueFollowup("ob-2", "case-2", "cust-1", "rep-2", T0 + DAY),
        # one deadline per case: ob-a, due no earlier than ob-b, is kept by it
        DueFollowup("ob-b", "case-1", "cust-1", "rep-1", T0 + DAY),
    ]
    fold(store, resolved("case-2"))
    store.mark_overdue("ob-b")
    assert [d.obligation_id for d in store.due_followups(T0 + 5 * DAY)] == ["ob-3"]
    # reopening the case brings its follow-up back
    fold(store, opened("case-2", "rep-2", at=T0 + DAY))
    assert [d.obligation_id for d in store.due_followups(T0 + 5 * DAY)] == ["ob-2", "ob-3"]
    assert store.stats()["followups_overdue"] == 1


def test_a_case_keeps_one_deadline_its_earliest_promise(store: StateStore) -> None:
    fold(store, opened("case-1", "rep-1"))

    def promise(ob: str, due: datetime) -> None:
        store.apply_decision(decision(obligations=[obligation(ob, "case-1", due)]), T0, None)

    promise("ob-late", T0 + 2 * DAY)
    promise("ob-later", T0 + 3 * DAY)  # kept by ob-late
    promise("ob-early", T0 + DAY)  # takes ob-late's place
    assert [d.obligation_id for d in store.due_followups(T0 + 5 * DAY)] == ["ob-early"]
    store.mark_overdue("ob-early")
    # a promise made after the escalation is a deadline of its own
    promise("ob-again", T0 + 4 * DAY)
    assert [d.obligation_id for d in store.due_followups(T0 + 5 * DAY)] == ["ob-again"]
    # on a resolved case, the parked ones keep one deadline too, which a reopening brings back
    fold(store, resolved("case-1"))
    promise("ob-parked", T0 + 6 * DAY)  # kept by ob-again, parked
    promise("ob-parked-earlier", T0 + 2 * DAY)  # takes ob-again's place
    fold(store, opened("case-1", "rep-1", at=T0 + DAY))
    assert [d.obligation_id for d in store.due_followups(T0 + 9 * DAY)] == ["ob-parked-earlier"]
    assert store.stats()["followups_overdue"] == 1  # an escalated one is not replaced


def test_due_followups_sees_every_change_after_a_query(store: StateStore) -> None:
    # due_followups remembers when the next follow-up can be due; nothing may slip past it
    fold(store, opened("case-1"))
    assert store.due_followups(T0 + 10 * DAY) == []
    store.apply_decision(decision(obligations=[obligation("ob-1", due=T0 + 2 * DAY)]), T0, "c")
    assert store.due_followups(T0 + DAY) == []
    assert [d.obligation_id for d in store.due_followups(T0 + 2 * DAY)] == ["ob-1"]
    store.begin()
    store.mark_overdue("ob-1")
    assert store.due_followups(T0 + 5 * DAY) == []
    store.rollback()
    assert [d.obligation_id for d in store.due_followups(T0 + 5 * DAY)] == ["ob-1"]
    fold(store, resolved("case-1"))
    assert store.due_followups(T0 + 5 * DAY) == []
    fold(store, opened("case-1", at=T0 + DAY))
    assert [d.obligation_id for d in store.due_followups(T0 + 5 * DAY)] == ["ob-1"]


def test_followups_may_be_due_is_false_only_when_none_can_be(store: StateStore) -> None:
    # The service asks it after every event instead of due_followups(watermark()).
    assert not store.followups_may_be_due()  # no event, no watermark
    fold(store, opened("case-1"))
    assert store.followups_may_be_due()  # not known yet: look
    assert store.due_followups(T0) == []
    assert not store.followups_may_be_due()  # none pending
    store.apply_decision(decision(obligations=[obligation("ob-1", due=T0 + 2 * DAY)]), T0, "c")
    assert not store.followups_may_be_due()  # pending, due after the watermark
    fold(store, tick(T0 + 2 * DAY))
    assert store.followups_may_be_due()
    assert [d.obligation_id for d in store.due_followups(T0 + 2 * DAY)] == ["ob-1"]


def test_followups_fall_due_by_their_own_partitions_time(store: StateStore) -> None:
    fold(store, opened("case-1"), opened("case-2"))
    for lane, case in ((0, "case-1"), (1, "case-2")):
        ob = obligation(f"ob-{lane}", case, T0 + DAY)
        store.apply_decision(decision(obligations=[ob]), T0, "c", lane)
    store.begin()
    store.note_time("in", 1, T0 + 3 * DAY)  # partition 1 is read far ahead
    assert store.lane_time(0) is None and store.followups_may_be_due(1)
    assert not store.followups_may_be_due(0)  # partition 0 has no time yet
    assert [d.obligation_id for d in store.due_followups(T0 + 3 * DAY, 1)] == ["ob-1"]
    store.note_time("in", 0, T0 + DAY - SECOND)
    assert store.due_followups(T0 + DAY - SECOND, 0) == []
    assert not store.followups_may_be_due(0)  # now known: not before T0 + DAY
    store.note_time("other", 0, T0 + DAY)  # another source of partition 0: one watermark
    assert store.lane_watermark(0) == T0 + DAY and store.followups_may_be_due(0)
    assert [d.obligation_id for d in store.due_followups(T0 + DAY, 0)] == ["ob-0"]
    for source, partition in (("in", 0), ("in", 1), ("other", 0)):
        store.set_position(source, partition, 5)  # a partition's time is kept with it
    store.commit()
    assert store.lanes() == [0, 1]
    assert store.due_followups(T0 + 9 * DAY) == []  # none made without a lane
    store.rollback()  # (nothing open) the times are read back from the stored positions
    assert (store.lane_time(0), store.lane_time(1)) == (micros(T0 + DAY), micros(T0 + 3 * DAY))


def test_a_file_from_before_lanes_keeps_its_follow_ups(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:  # a follow-up, as an older build stored it
        fold(store, opened("case-1"))
        store.apply_decision(decision(obligations=[obligation("ob-1", due=T0 + DAY)]), T0, "c")
    conn = sqlite3.connect(tmp_path / STATE_FILE)
    conn.execute("DROP INDEX followups_due_by_lane")
    conn.execute("ALTER TABLE followups DROP COLUMN lane")
    conn.execute("CREATE INDEX followups_due ON followups (due_at, obligation_id) WHERE state = 0")
    conn.commit()
    conn.close()
    with StateStore.open(tmp_path) as store:  # gains the column; its follow-up has no lane
        assert store.due_followups(T0 + DAY, 0) == []
        assert [d.obligation_id for d in store.due_followups(T0 + DAY)] == ["ob-1"]
    conn = sqlite3.connect(tmp_path / STATE_FILE)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "followups_due_by_lane" in indexes and "followups_due" not in indexes


def test_followup_on_a_resolved_case_is_never_due(store: StateStore) -> None:
    fold(store, opened("case-1"), resolved("case-1"))
    store.apply_decision(decision(obligations=[obligation("ob-1")]), T0, "cust-1")
    assert store.due_followups(T0 + 10 * DAY) == []


def test_followup_on_an_unknown_case_is_reported(store: StateStore) -> None:
    store.apply_decision(
        decision(rep_id="rep-5", obligations=[obligation("ob-1", "case-x")]), T0, "cust-1"
    )
    assert store.due_followups(T0 + DAY) == [
        DueFollowup("ob-1", "case-x", "cust-1", "rep-5", T0 + DAY)
    ]


def test_alerts(store: StateStore) -> None:
    assert store.last_alert("SKU-1") is None
    store.record_alert("SKU-1", T0)
    store.record_alert("SKU-1", T0 + DAY)
    assert store.last_alert("SKU-1") == T0 + DAY
    assert store.last_alert("SKU-2") is None


# ---------------------------------------------------------------- time


def test_watermark_never_goes_back(store: StateStore) -> None:
    assert store.watermark() is None
    fold(store, tick(T0 + DAY), placed(at=T0))
    assert store.watermark() == T0 + DAY
    fold(store, defect(at=T0 + 2 * DAY), tick(T0))
    assert store.watermark() == T0 + 2 * DAY


def test_watermark_compares_instants_across_offsets(store: StateStore) -> None:
    half_past = datetime(2026, 3, 1, 12, 30, 0, 5, tzinfo=UTC)
    two_pm_in_plus_two = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    fold(store, tick(half_past), tick(two_pm_in_plus_two))  # 12:00 UTC: earlier
    assert store.watermark() == half_past


# ---------------------------------------------------------------- delivery bookkeeping


def test_seen(store: StateStore) -> None:
    assert not store.seen("evt-1")
    store.mark_seen("evt-1")
    store.mark_seen("evt-1")
    assert store.seen("evt-1")
    assert not store.seen("evt-2")


def test_first_sighting_marks_and_tells_once(store: StateStore) -> None:
    store.begin()
    assert store.first_sighting("evt-1")
    assert not store.first_sighting("evt-1")
    assert store.seen("evt-1")
    store.rollback()
    assert not store.seen("evt-1")  # forgotten with the batch it belonged to


def test_positions(store: StateStore) -> None:
    assert store.position("goodwill.events", 0) is None
    store.set_position("goodwill.events", 0, 10)
    store.set_position("goodwill.events", 1, 3)
    store.set_position("goodwill.events", 0, 11)
    assert store.position("goodwill.events", 0) == 11
    assert store.position("goodwill.events", 1) == 3
    assert store.position("other", 0) is None


def test_outbox(store: StateStore) -> None:
    store.outbox_add("decisions", b"cust-1", b"d1", (), "decision.made", "dec-1")
    store.outbox_add("deadletter", None, b"f1", (("why", b"bad"),), "deadletter", "dlq-1")
    store.outbox_add("decisions", b"cust-1", b"again", (), "decision.made", "dec-1")  # ignored
    store.outbox_add("decisions", b"cust-2", b"d2", (), "decision.made", "dec-2")
    pending = store.outbox_pending(10)
    assert [row[1:] for row in pending] == [
        ("decisions", b"cust-1", b"d1", ()),
        ("deadletter", None, b"f1", (("why", b"bad"),)),
        ("decisions", b"cust-2", b"d2", ()),
    ]
    assert [row[3] for row in store.outbox_pending(2)] == [b"d1", b"f1"]
    store.outbox_mark_sent([pending[0][0], pending[2][0]])
    assert [row[3] for row in store.outbox_pending(10)] == [b"f1"]
    assert list(store.outputs()) == [b"d1", b"f1", b"d2"]  # sent or not
    assert list(store.outputs("decision.made")) == [b"d1", b"d2"]
    assert list(store.outputs("rootcause.alert")) == []


def test_outbox_forgets_published_outputs_beyond_the_most_recent(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "OUTBOX_KEEP_SENT", 2)
    store.begin()
    for i in range(1, 6):
        store.outbox_add("decisions", None, f"d{i}".encode(), (), "decision.made", f"dec-{i}")
    store.commit()
    pending = store.outbox_pending(10)
    store.outbox_mark_sent([row[0] for row in pending[:4]])

    # d1 and d2 are published and older than the two most recent published ones.
    assert list(store.outputs()) == [b"d3", b"d4", b"d5"]
    assert [row[3] for row in store.outbox_pending(10)] == [b"d5"]


def test_outbox_rows_of_a_batch_are_written_at_commit_or_not_at_all(store: StateStore) -> None:
    store.begin()
    store.outbox_add("decisions", None, b"lost", (), "decision.made", "dec-1")
    store.rollback()
    store.begin()
    store.outbox_add("decisions", None, b"kept", (), "decision.made", "dec-1")
    store.outbox_add("decisions", None, b"again", (), "decision.made", "dec-1")  # ignored
    store.commit()

    assert [row[3] for row in store.outbox_pending(10)] == [b"kept"]


def test_outbox_headers_keep_any_bytes(store: StateStore) -> None:
    headers = (("goodwill.detail", bytes(range(256))), ("empty", b""), ("dup", b"1"), ("dup", b"2"))
    store.outbox_add("deadletter", b"\xff", b"\x00raw", headers, "deadletter", "dlq-1")
    ((_, topic, key, value, got),) = store.outbox_pending(1)
    assert (topic, key, value, got) == ("deadletter", b"\xff", b"\x00raw", headers)


def test_meta(store: StateStore) -> None:
    assert store.meta("policy_set") is None
    store.set_meta("policy_set", "0123")
    store.set_meta("policy_set", "00456")  # digits stay text
    assert store.meta("policy_set") == "00456"
    with pytest.raises(ValueError, match="reserved"):
        store.set_meta("watermark", "x")


# ---------------------------------------------------------------- batches, files, digest


def _history() -> list[Envelope]:
    return [
        placed("ord-1", "600.00", at=T0, event_id="h1"),
        opened("case-1", "rep-1", order="ord-1", at=T0 + SECOND, event_id="h2"),
        defect(at=T0 + 2 * SECOND, event_id="h3"),
        fulfilled("case-1", remedy="refund", cost="20.00", at=T0 + 3 * SECOND, event_id="h4"),
        tick(T0 + DAY),
    ]


def test_rollback_leaves_no_trace(store: StateStore) -> None:
    fold(store, placed(at=T0))
    before = store.digest()
    store.begin()
    for event in _history():
        store.apply_event(event)
        store.mark_seen(event.event_id)
    store.apply_decision(decision(grants=[grant()], obligations=[obligation("ob-1")]), T0, "c")
    store.set_position("in", 0, 99)
    store.outbox_add("decisions", None, b"x", (), "decision.made", "dec-x")
    store.rollback()
    assert store.digest() == before
    assert store.watermark() == T0
    assert not store.seen("h1")
    assert store.position("in", 0) is None
    assert store.outbox_pending(10) == []
    assert store.due_followups(T0 + 9 * DAY) == []


def test_closing_mid_batch_discards_it(tmp_path: Path) -> None:
    s = StateStore.open(tmp_path)
    s.begin()
    s.apply_event(placed())
    s.close()
    with StateStore.open(tmp_path) as again:
        assert again.stats()["orders"] == 0
        assert again.watermark() is None


def test_begin_twice_and_commit_without_batch_are_errors(store: StateStore) -> None:
    store.begin()
    with pytest.raises(RuntimeError):
        store.begin()
    store.commit()
    with pytest.raises(RuntimeError):
        store.commit()


def test_reopening_the_file_keeps_everything(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as s:
        fold(s, *_history())
        s.begin()
        s.apply_decision(decision(grants=[grant()], obligations=[obligation("ob-1")]), T0, "c")
        s.mark_seen("h1")
        s.set_position("in", 2, 7)
        s.outbox_add("decisions", b"k", b"v", (), "decision.made", "dec-1")
        s.set_meta("policy_set", "ps-1")
        s.commit()
        digest = s.digest()
    assert (tmp_path / STATE_FILE).exists()
    with StateStore.open(tmp_path / STATE_FILE) as s:
        assert s.digest() == digest
        assert s.watermark() == T0 + DAY
        assert s.seen("h1")
        assert s.position("in", 2) == 7
        assert s.meta("policy_set") == "ps-1"
        assert [row[3] for row in s.outbox_pending(5)] == [b"v"]
        assert [d.obligation_id for d in s.due_followups(T0 + 5 * DAY)] == ["ob-1"]


def test_the_file_is_in_wal_mode(store: StateStore, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / STATE_FILE)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (STATE_SCHEMA_VERSION,)
        ]
    finally:
        conn.close()


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / STATE_FILE)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StateVersionError, match="version 99"):
        StateStore.open(tmp_path)


def test_digest_is_equal_for_the_same_log_and_differs_for_another(tmp_path: Path) -> None:
    def run(name: str, events: list[Envelope]) -> str:
        with StateStore.open(tmp_path / name) as s:
            fold(s, *events)
            s.apply_decision(decision("dec-1", grants=[grant()]), T0, "cust-1")
            s.set_position("in", 0, len(events))  # positions are not state
            return s.digest()

    same = run("a", _history())
    assert run("b", _history()) == same
    changed = _history()
    changed[0] = placed("ord-1", "600.01", at=T0, event_id="h1")
    assert run("c", changed) != same
    assert run("d", _history()[:-1]) != same  # the watermark is state too


def test_digest_ignores_delivery_progress(store: StateStore) -> None:
    fold(store, *_history())
    store.outbox_add("decisions", None, b"x", (), "decision.made", "dec-1")
    before = store.digest()
    store.set_position("in", 0, 42)
    store.outbox_mark_sent([row[0] for row in store.outbox_pending(10)])
    assert store.digest() == before
    store.mark_seen("h1")
    assert store.digest() != before


def test_digest_covers_where_and_how_outputs_go(tmp_path: Path) -> None:
    def run(name: str, topic: str, headers: tuple[tuple[str, bytes], ...]) -> str:
        with StateStore.open(tmp_path / name) as s:
            s.outbox_add(topic, None, b"x", headers, "deadletter", "dlq-1")
            return s.digest()

    same = run("a", "deadletter", (("why", b"bad"),))
    assert run("b", "deadletter", (("why", b"bad"),)) == same
    assert run("c", "decisions", (("why", b"bad"),)) != same
    assert run("d", "deadletter", (("why", b"worse"),)) != same


def test_stats(store: StateStore) -> None:
    fold(store, *_history(), opened("case-2", customer="cust-2"), resolved("case-2"))
    store.apply_decision(decision(obligations=[obligation("ob-1")]), T0, "cust-1")
    store.mark_overdue("ob-1")
    store.mark_seen("h1")
    store.outbox_add("decisions", None, b"x", (), "decision.made", "dec-1")
    assert store.stats() == {
        "customers": 2,
        "orders": 1,
        "cases_open": 1,
        "cases_resolved": 1,
        "followups_created": 1,
        "followups_overdue": 1,
        "events_seen": 1,
        "outputs": 1,
        "outputs_pending": 1,
    }


@pytest.mark.parametrize(("amount", "cents"), [("0.29", 29), ("1.15", 115), ("12", 1200)])
def test_money_is_exact_cents(store: StateStore, amount: str, cents: int) -> None:
    # 0.29 and 1.15 are the amounts a float conversion would get wrong by a cent
    assert facts(store, placed(amount=amount))["order.amount"] == cents


def test_lifetime_sums_saturate_instead_of_overflowing(store: StateStore) -> None:
    # Each order at the contract's largest amount; 100 of them pass 2**63 cents.
    for i in range(100):
        store.apply_event(placed(f"ord-{i}", amount="999999999999999.99"))
    facts = store.enrich(opened())
    assert facts["customer.lifetime_value"] == 2**63 - 1
    assert facts["customer.order_count"] == 100


def test_the_log_is_copied_into_the_database_file_off_the_engines_thread(tmp_path: Path) -> None:
    # The engine's own connection checkpoints only at 64 MB of log; 2 MB stays below
    # that, so only the background checkpointer can move these pages into the file.
    db = tmp_path / STATE_FILE
    with StateStore.open(tmp_path) as store:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        before = db.stat().st_size
        store.begin()
        for i in range(2000):
            store.outbox_add(
                "decisions", None, bytes([i % 256]) * 1000, (), "decision.made", f"d{i}"
            )
        store.commit()
        assert Path(f"{db}-wal").stat().st_size > 2_000_000
        for _ in range(400):  # bounded: the checkpointer looks at least once a second
            if db.stat().st_size > before + 2_000_000:
                break
            time.sleep(0.05)
        assert db.stat().st_size > before + 2_000_000
        assert [row[3] for row in store.outbox_pending(3)] == [bytes([i]) * 1000 for i in range(3)]
    assert not checkpointer.running  # closing the store stops it


def test_a_store_in_memory_has_no_checkpointer() -> None:
    with StateStore.open(Path(":memory:")) as store:
        assert store._checkpointer is None


@pytest.mark.parametrize("older", [2, 3])
def test_a_file_at_an_older_version_is_read_and_raised_by_its_first_batch(
    tmp_path: Path, older: int
) -> None:
    # Builds that read only version 2 refuse a file at 3 or later instead of misreading
    # what this build keeps (retention, follow-up lanes, the budget-stage mode), and those
    # that read 3 at most refuse one at 4 (an order's delays counted).
    with StateStore.open(tmp_path) as s:
        s.begin()
        s.set_meta("policy_set", "ps-1")
        s.commit()
    with closing(sqlite3.connect(tmp_path / STATE_FILE)) as conn, conn:
        conn.execute("UPDATE schema_version SET version = ?", (older,))

    def version() -> int:
        with closing(sqlite3.connect(tmp_path / STATE_FILE)) as conn:
            return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    with StateStore.open_readonly(tmp_path) as s:  # status, explain: read, not changed
        assert s.meta("policy_set") == "ps-1"
    assert version() == older
    with StateStore.open(tmp_path) as s:  # opened and refused before any batch: as it was
        assert s.meta("policy_set") == "ps-1"
    assert version() == older
    with StateStore.open(tmp_path) as s:
        s.begin()
        s.set_meta("policy_set", "ps-2")
        s.rollback()
    assert version() == older
    with StateStore.open(tmp_path) as s:
        s.begin()
        s.set_meta("policy_set", "ps-2")
        s.commit()
    assert version() == 4 == STATE_SCHEMA_VERSION


def test_a_state_marked_as_a_rebuild_under_way_is_refused_until_it_is_done(
    store: StateStore,
) -> None:
    from engine.ledger import StateModeError

    store.check_whole("here")  # a state never rebuilt is whole
    before = store.digest()
    store.rebuilding(True)
    assert store.digest() != before  # the mark is state: a copy of the file keeps it
    with pytest.raises(StateModeError, match="here holds the partial state of a `goodwill"):
        store.check_whole("here")
    store.rebuilding(False)
    store.check_whole("here")
    assert store.digest() == before  # the mark leaves nothing behind
