"""Event-sourced state: projections folded from input events and Goodwill's own decisions.

Everything here is derived from the log alone — input events in order, then the effects
of each decision — so folding the same log twice yields the same tables (`digest`).
Time is event time only: windows and ages are measured from `occurred_at`, never the
wall clock. Money is integer cents. Timestamps are integer microseconds since the Unix
epoch (UTC), so window boundaries compare exactly.

The store is one SQLite file in WAL mode. The caller batches: everything between
`begin()` and `commit()` — state, delivery bookkeeping (`engine.ledger`) and the outbox —
is one transaction, so a crash loses a whole batch or nothing. Per-entity state stays in
SQLite (and its bounded page cache), never in Python dicts, so memory does not grow with
the number of customers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, cast

from engine.facts import Scalar, to_minor
from engine.ledger import Ledger, datetime_of, micros
from events.models import (
    BudgetAllocated,
    CaseResolved,
    ContactOpened,
    DecisionData,
    Envelope,
    ItemDefectReported,
    OrderPlaced,
    OrderShipped,
    RemedyFulfilled,
    RemedyRequested,
    RepAssigned,
    ShipmentDelayed,
)

_HOUR: Final = 3_600_000_000  # microseconds
_DAY: Final = 24 * _HOUR
_REMEDY_WINDOW: Final = 90 * _DAY
_REPORT_WINDOW: Final = 7 * _DAY
_GOLD: Final = 200_000  # cents of lifetime value
_SILVER: Final = 50_000

# Follow-up states. A follow-up on a resolved case is parked rather than deleted, so a
# reopened case brings it back; parking keeps the partial "due" index to live promises,
# so `due_followups` never rescans the history of resolved cases.
_PENDING: Final = 0
_OVERDUE: Final = 1
_PARKED: Final = 2
_NEVER: Final = 2**63 - 1  # the due bound when nothing is pending

# Times are integer microseconds since the epoch; money is integer cents.
_SCHEMA: Final = f"""
CREATE TABLE customers (
    id TEXT PRIMARY KEY, ordered INTEGER NOT NULL DEFAULT 0,
    refunded INTEGER NOT NULL DEFAULT 0, order_count INTEGER NOT NULL DEFAULT 0,
    open_cases INTEGER NOT NULL DEFAULT 0, first_order_at INTEGER, last_remedy_at INTEGER
) WITHOUT ROWID;
CREATE TABLE orders (
    id TEXT PRIMARY KEY, customer TEXT NOT NULL, placed INTEGER NOT NULL DEFAULT 0,
    amount INTEGER NOT NULL DEFAULT 0, placed_at INTEGER, channel TEXT NOT NULL DEFAULT '',
    item_count INTEGER NOT NULL DEFAULT 0, service_level TEXT NOT NULL DEFAULT '',
    shipped INTEGER NOT NULL DEFAULT 0, promised_by INTEGER,
    delayed INTEGER NOT NULL DEFAULT 0, new_eta INTEGER, lost INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE cases (
    id TEXT PRIMARY KEY, customer TEXT NOT NULL, rep TEXT NOT NULL, topic TEXT NOT NULL,
    channel TEXT NOT NULL, opened_at INTEGER NOT NULL, status TEXT NOT NULL,
    resolved_at INTEGER, resolution TEXT, order_id TEXT,
    transfers INTEGER NOT NULL DEFAULT 0, remedies INTEGER NOT NULL DEFAULT 0,
    reopens INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE case_remedies (
    case_id TEXT NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, remedy TEXT NOT NULL,
    amount INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (case_id, event_id)
) WITHOUT ROWID;
CREATE TABLE defects (
    sku TEXT NOT NULL, at INTEGER NOT NULL, event_id TEXT NOT NULL, order_id TEXT NOT NULL,
    customer TEXT NOT NULL, PRIMARY KEY (sku, at, event_id)
) WITHOUT ROWID;
CREATE TABLE remedies (
    customer TEXT NOT NULL, at INTEGER NOT NULL, event_id TEXT NOT NULL, remedy TEXT NOT NULL,
    cost INTEGER NOT NULL, case_id TEXT NOT NULL, PRIMARY KEY (customer, at, event_id)
) WITHOUT ROWID;
CREATE TABLE applied (decision_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE budgets (
    budget TEXT NOT NULL, owner TEXT NOT NULL, period TEXT NOT NULL, allocated INTEGER,
    charged INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (budget, owner, period)
) WITHOUT ROWID;
CREATE TABLE reps (id TEXT PRIMARY KEY, team TEXT NOT NULL, lead TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE followups (
    obligation_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, customer TEXT, rep TEXT,
    due_at INTEGER NOT NULL, state INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX followups_by_case ON followups (case_id);
CREATE INDEX followups_due ON followups (due_at, obligation_id) WHERE state = {_PENDING};
CREATE TABLE alerts (sku TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
"""

_ADD_ORDER: Final = """
INSERT INTO orders (id, customer, placed, amount, placed_at, channel, item_count)
VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6)
ON CONFLICT (id) DO UPDATE SET
    customer = ?2, placed = 1, amount = ?3, placed_at = ?4, channel = ?5, item_count = ?6
WHERE placed = 0
"""
_ADD_CUSTOMER_ORDER: Final = """
INSERT INTO customers (id, ordered, order_count, first_order_at) VALUES (?1, ?2, 1, ?3)
ON CONFLICT (id) DO UPDATE SET
    ordered = ordered + ?2,
    order_count = order_count + 1,
    first_order_at = min(coalesce(first_order_at, ?3), ?3)
"""
# Shipping events may overtake order.placed (different producers); the row they create
# stays `placed = 0` (order.known false) until the order itself arrives.
_SHIP_ORDER: Final = """
INSERT INTO orders (id, customer, shipped, service_level, promised_by) VALUES (?1, ?2, 1, ?3, ?4)
ON CONFLICT (id) DO UPDATE SET shipped = 1, service_level = ?3, promised_by = ?4
"""
_DELAY_ORDER: Final = """
INSERT INTO orders (id, customer, delayed, new_eta) VALUES (?1, ?2, 1, ?3)
ON CONFLICT (id) DO UPDATE SET delayed = 1, new_eta = ?3
"""
_LOSE_ORDER: Final = """
INSERT INTO orders (id, customer, lost) VALUES (?1, ?2, 1)
ON CONFLICT (id) DO UPDATE SET lost = 1
"""
# Opening a resolved case reopens it (keeping opened_at, transfers and remedies);
# opening an open case again changes nothing, so RETURNING yields no row. A new case
# counts the remedies fulfilled on it before it was opened (producers may race).
_OPEN_CASE: Final = """
INSERT INTO cases (id, customer, rep, topic, channel, opened_at, status, order_id, remedies)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7,
       (SELECT count(*) FROM case_remedies WHERE case_id = ?1 AND kind = 'fulfilled')
WHERE true
ON CONFLICT (id) DO UPDATE SET
    status = 'open', resolved_at = NULL, resolution = NULL, rep = ?3,
    order_id = coalesce(?7, order_id), reopens = reopens + 1
WHERE status = 'resolved'
RETURNING customer, reopens
"""
_ADD_CASE_REMEDY: Final = """
INSERT OR IGNORE INTO case_remedies (case_id, event_id, kind, remedy, amount, at)
VALUES (?, ?, ?, ?, ?, ?)
"""
_CUSTOMER_CASE_OPENED: Final = """
INSERT INTO customers (id, open_cases) VALUES (?1, 1)
ON CONFLICT (id) DO UPDATE SET open_cases = open_cases + 1
"""
# Lifetime value is orders minus refunds, floored at 0 when read: kept as two sums, it
# does not depend on whether a refund is folded before or after the orders it offsets.
_CUSTOMER_REMEDY: Final = """
INSERT INTO customers (id, refunded, last_remedy_at) VALUES (?1, ?3, ?2)
ON CONFLICT (id) DO UPDATE SET
    refunded = refunded + ?3,
    last_remedy_at = max(coalesce(last_remedy_at, ?2), ?2)
"""
_ADD_FOLLOWUP: Final = f"""
INSERT OR IGNORE INTO followups (obligation_id, case_id, customer, rep, due_at, state)
SELECT ?1, ?2, coalesce(?3, k.customer), coalesce(k.rep, ?4), ?5,
       CASE WHEN k.status = 'resolved' THEN {_PARKED} ELSE {_PENDING} END
FROM (SELECT 1) LEFT JOIN cases AS k ON k.id = ?2
"""
_CHARGE: Final = """
INSERT INTO budgets (budget, owner, period, charged) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (budget, owner, period) DO UPDATE SET charged = charged + ?4
"""

# enrich() reads each entity the event names with one query, and skips the entities it
# does not name (measured: ~20% faster than one query that always joins all of them).
# Integer division truncates toward zero, so max(0, …) makes it a floor never below 0.
_CUSTOMER_FACTS: Final = f"""
SELECT order_count > 0, max(0, ordered - refunded), order_count,
       -- last_remedy_at skips the range count for the many customers with no recent remedy
       CASE WHEN last_remedy_at > ?3 THEN (
           SELECT count(*) FROM remedies WHERE customer = ?1 AND at > ?3 AND at <= ?2
       ) ELSE 0 END,
       CASE WHEN ordered - refunded >= {_GOLD} THEN 'gold'
            WHEN ordered - refunded >= {_SILVER} THEN 'silver' ELSE 'standard' END,
       open_cases,
       max(0, (?2 - coalesce(first_order_at, ?2)) / {_DAY})
FROM customers WHERE id = ?1
"""
_ORDER_FACTS: Final = f"""
SELECT placed, amount, CASE WHEN placed THEN max(0, (?2 - placed_at) / {_DAY}) ELSE 0 END,
       channel, item_count, service_level, shipped, delayed, lost,
       coalesce(max(0, (new_eta - promised_by) / {_DAY}), 0)
FROM orders WHERE id = ?1
"""
_CASE_FACTS: Final = f"""
SELECT status, rep, topic, channel, transfers, max(0, (?2 - opened_at) / {_HOUR}), remedies,
       order_id
FROM cases WHERE id = ?1
"""
# What an entity the log has not seen reads as (bools as 0, like SQLite's).
_NO_CUSTOMER: Final = (0, 0, 0, 0, "standard", 0, 0)
_NO_ORDER: Final = (0, 0, 0, "", 0, "", 0, 0, 0, 0)
_NO_CASE: Final = ("", "", "", "", 0, 0, 0, None)


@dataclass(frozen=True)
class DueFollowup:
    obligation_id: str
    case_id: str
    customer_id: str | None
    rep_id: str | None
    due_at: datetime


class StateStore(Ledger):
    """Projections of the log in SQLite; see the module docstring for the guarantees."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        # Dispatch on the catalog type; a type without a fold only moves the watermark.
        self._folds: dict[str, Callable[[Envelope, str, int], None]] = {
            "order.placed": self._order_placed,
            "order.shipped": self._order_shipped,
            "shipment.delayed": self._shipment_delayed,
            "shipment.lost": self._shipment_lost,
            "item.defect_reported": self._defect_reported,
            "contact.opened": self._contact_opened,
            "contact.transferred": self._contact_transferred,
            "remedy.requested": self._remedy_requested,
            "remedy.fulfilled": self._remedy_fulfilled,
            "case.resolved": self._case_resolved,
            "budget.allocated": self._budget_allocated,
            "rep.assigned": self._rep_assigned,
        }
        self._last_at: datetime | None = None
        self._last_us = 0
        # A lower bound on the earliest pending follow-up's due time (None: not known),
        # so that due_followups, which the service calls after every event, usually
        # answers without a query. Anything that makes a follow-up pending lowers it.
        self._due_bound: int | None = None

    @classmethod
    def open(cls, path: Path, *, full_sync: bool = False) -> StateStore:
        """Open (creating if needed) the store at `path`, or `path/state.db` for a directory.

        `full_sync` makes each commit survive power loss too; with the default
        (synchronous=NORMAL) a commit survives a process crash but the last batches may
        be lost on power failure — and are then re-read from the stored positions.
        """
        return cls(cls._connect(path, full_sync, _SCHEMA))

    def _time(self, at: datetime) -> int:
        # The service calls apply_event then enrich on the same event, and converting
        # pydantic's aware datetimes costs about a microsecond: remember the last one.
        # Holding `at` keeps it alive, so the identity test cannot see a recycled object.
        if at is not self._last_at:
            self._last_at = at
            self._last_us = micros(at)
        return self._last_us

    def rollback(self) -> None:
        super().rollback()
        self._due_bound = None  # undone overdue marks may have brought earlier ones back

    # ---------------------------------------------------------------- folding events

    def apply_event(self, event: Envelope) -> None:
        """Fold one input event (clock.tick and unknown types only move the watermark)."""
        if not self._conn.in_transaction:
            self._autocommit(self.apply_event, event)
            return
        t = self._time(event.occurred_at)
        fold = self._folds.get(event.type)
        if fold is not None:
            fold(event, event.customer_id or "", t)
        self._advance(t)

    def _order_placed(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(OrderPlaced, event.data)
        amount = to_minor(d.amount)
        items = sum(item.qty for item in d.items)
        cur = self._cur
        cur.execute(_ADD_ORDER, (d.order_id, customer, amount, t, d.channel, items))
        # A second order.placed for the same order (new event id) must not count twice.
        if cur.rowcount:
            cur.execute(_ADD_CUSTOMER_ORDER, (customer, amount, t))

    def _order_shipped(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(OrderShipped, event.data)
        promised_by = micros(d.promised_by)
        self._cur.execute(_SHIP_ORDER, (d.order_id, customer, d.service_level, promised_by))

    def _shipment_delayed(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(ShipmentDelayed, event.data)
        self._cur.execute(_DELAY_ORDER, (d.order_id, customer, micros(d.new_eta)))

    def _shipment_lost(self, event: Envelope, customer: str, t: int) -> None:
        self._cur.execute(_LOSE_ORDER, (event.data.__dict__["order_id"], customer))

    def _defect_reported(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(ItemDefectReported, event.data)
        self._cur.execute(
            "INSERT OR IGNORE INTO defects (sku, at, event_id, order_id, customer)"
            " VALUES (?, ?, ?, ?, ?)",
            (d.sku, t, event.event_id, d.order_id, customer),
        )

    def _contact_opened(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(ContactOpened, event.data)
        cur = self._cur
        row = cur.execute(
            _OPEN_CASE, (d.case_id, customer, d.rep_id, d.topic, d.channel, t, d.order_id)
        ).fetchone()
        if row is None:
            return  # already open
        owner, reopens = row
        if reopens:
            cur.execute(
                f"UPDATE followups SET state = {_PENDING} WHERE case_id = ? AND state = {_PARKED}",
                (d.case_id,),
            )
            self._due_bound = None
        cur.execute(_CUSTOMER_CASE_OPENED, (owner,))

    def _contact_transferred(self, event: Envelope, customer: str, t: int) -> None:
        self._cur.execute(
            "UPDATE cases SET transfers = transfers + 1 WHERE id = ?",
            (event.data.__dict__["case_id"],),
        )

    def _remedy_requested(self, event: Envelope, customer: str, t: int) -> None:
        # Kept as the case's record of what was asked for; no fact reads it.
        d = cast(RemedyRequested, event.data)
        self._cur.execute(
            _ADD_CASE_REMEDY,
            (d.case_id, event.event_id, "requested", d.remedy, to_minor(d.amount), t),
        )

    def _remedy_fulfilled(self, event: Envelope, customer: str, t: int) -> None:
        # What the customer actually received: the remedies the facts count and the refunds
        # lifetime value is net of. A decision's grants are only what a rep *may* give.
        d = cast(RemedyFulfilled, event.data)
        cost = to_minor(d.actual_cost)
        cur = self._cur
        cur.execute(_ADD_CASE_REMEDY, (d.case_id, event.event_id, "fulfilled", d.remedy, cost, t))
        if not cur.rowcount:
            return  # the same fulfillment again
        cur.execute(
            "INSERT OR IGNORE INTO remedies (customer, at, event_id, remedy, cost, case_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (customer, t, event.event_id, d.remedy, cost, d.case_id),
        )
        cur.execute("UPDATE cases SET remedies = remedies + 1 WHERE id = ?", (d.case_id,))
        cur.execute(_CUSTOMER_REMEDY, (customer, t, cost if d.remedy == "refund" else 0))

    def _case_resolved(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(CaseResolved, event.data)
        cur = self._cur
        row = cur.execute(
            "UPDATE cases SET status = 'resolved', resolved_at = ?, resolution = ?"
            " WHERE id = ? AND status = 'open' RETURNING customer",
            (t, d.resolution, d.case_id),
        ).fetchone()
        if row is None:
            return  # unknown or already resolved
        cur.execute("UPDATE customers SET open_cases = open_cases - 1 WHERE id = ?", row)
        cur.execute(
            f"UPDATE followups SET state = {_PARKED} WHERE case_id = ? AND state = {_PENDING}",
            (d.case_id,),
        )

    def _budget_allocated(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(BudgetAllocated, event.data)
        self._cur.execute(
            "INSERT INTO budgets (budget, owner, period, allocated) VALUES (?1, ?2, ?3, ?4)"
            " ON CONFLICT (budget, owner, period) DO UPDATE SET allocated = ?4",
            (d.budget, d.owner, d.period, to_minor(d.amount)),
        )

    def _rep_assigned(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(RepAssigned, event.data)
        self._cur.execute(
            "INSERT OR REPLACE INTO reps (id, team, lead) VALUES (?, ?, ?)",
            (d.rep_id, d.team, d.lead),
        )

    # ---------------------------------------------------------------- folding decisions

    def apply_decision(
        self, data: DecisionData, occurred_at: datetime, customer_id: str | None
    ) -> None:
        """Fold a decision's effects; applying the same decision again changes nothing.

        Only charges and obligations are folded. Grants are what a rep *may* give; what a
        customer received arrives as `remedy.fulfilled` (see `_remedy_fulfilled`).
        """
        if not (data.charges or data.obligations):
            return  # most decisions only note: nothing to fold, nothing to remember
        if not self._conn.in_transaction:
            self._autocommit(self.apply_decision, data, occurred_at, customer_id)
            return
        cur = self._cur
        # Rebuilding from the decision topic may meet a decision already folded live.
        cur.execute("INSERT OR IGNORE INTO applied (decision_id) VALUES (?)", (data.decision_id,))
        if not cur.rowcount:
            return
        if data.charges:
            cur.executemany(
                _CHARGE, [(c.budget, c.owner, c.period, to_minor(c.amount)) for c in data.charges]
            )
        if data.obligations:
            rows = [
                (o.obligation_id, o.case_id, customer_id, data.rep_id, micros(o.due_at))
                for o in data.obligations
            ]
            cur.executemany(_ADD_FOLLOWUP, rows)
            if self._due_bound is not None:
                self._due_bound = min(self._due_bound, *(row[4] for row in rows))

    # ---------------------------------------------------------------- reading

    def enrich(self, event: Envelope) -> dict[str, Scalar]:
        """Every `facts.STATE_FIELDS` path for `event`, from the state folded so far."""
        t = self._time(event.occurred_at)
        cur = self._cur
        # Pydantic keeps a payload's fields in __dict__; .get() reads the optional
        # references without a per-type table or getattr's AttributeError.
        data: dict[str, Any] = event.data.__dict__
        customer_id: str | None = event.customer_id
        customer = _NO_CUSTOMER
        if customer_id is not None:
            params = (customer_id, t, t - _REMEDY_WINDOW)
            customer = cur.execute(_CUSTOMER_FACTS, params).fetchone() or _NO_CUSTOMER
        c_known, ltv, orders, remedies_90d, tier, open_cases, tenure = customer

        case_id: str | None = data.get("case_id")
        case = None if case_id is None else cur.execute(_CASE_FACTS, (case_id, t)).fetchone()
        status, case_rep, topic, case_channel, transfers, age_hours, case_remedies, case_order = (
            case or _NO_CASE
        )

        # Order and rep fall back to the case's when the payload names none.
        order_id: str | None = data.get("order_id") or case_order
        order = None if order_id is None else cur.execute(_ORDER_FACTS, (order_id, t)).fetchone()
        (o_known, amount, age_days, channel, items, level, shipped, delayed, lost, delay_days) = (
            order or _NO_ORDER
        )

        rep_id: str = data.get("rep_id") or case_rep
        rep = None
        if rep_id:
            rep = cur.execute("SELECT team, lead FROM reps WHERE id = ?", (rep_id,)).fetchone()
        team, lead = rep or ("", "")

        sku: str | None = data.get("sku")
        reports_7d = 0
        if sku is not None:
            (reports_7d,) = cur.execute(
                "SELECT count(*) FROM defects WHERE sku = ? AND at > ? AND at <= ?",
                (sku, t - _REPORT_WINDOW, t),
            ).fetchone()

        return {
            "customer.id": customer_id or "",
            "customer.known": c_known == 1,
            "customer.lifetime_value": ltv,
            "customer.order_count": orders,
            "customer.remedies_90d": remedies_90d,
            "customer.tier": tier,
            "customer.open_cases": open_cases,
            "customer.tenure_days": tenure,
            "order.id": order_id or "",
            "order.known": o_known == 1,
            "order.amount": amount,
            "order.age_days": age_days,
            "order.channel": channel,
            "order.item_count": items,
            "order.service_level": level,
            "order.shipped": shipped == 1,
            "order.delayed": delayed == 1,
            "order.lost": lost == 1,
            "order.delay_days": delay_days,
            "case.id": case_id or "",
            "case.known": case is not None,
            "case.status": status,
            "case.rep": case_rep,
            "case.topic": topic,
            "case.channel": case_channel,
            "case.transfers": transfers,
            "case.age_hours": age_hours,
            "case.remedies": case_remedies,
            "rep.id": rep_id,
            "rep.known": rep is not None,
            "rep.team": team,
            "rep.lead": lead,
            "sku.id": sku or "",
            "sku.reports_7d": reports_7d,
        }

    def budget_usage(self, budget: str, owner: str, period: str) -> tuple[int | None, int]:
        """(allocated cents or None if never allocated, charged cents) for one budget period."""
        row = self._cur.execute(
            "SELECT allocated, charged FROM budgets WHERE budget = ? AND owner = ? AND period = ?",
            (budget, owner, period),
        ).fetchone()
        return (None, 0) if row is None else (row[0], row[1])

    def budgets(self) -> list[tuple[str, str, str, int | None, int]]:
        """Every budget period seen: (budget, owner, period, allocated or None, charged)."""
        return self._cur.execute(
            "SELECT budget, owner, period, allocated, charged FROM budgets"
            " ORDER BY budget, owner, period"
        ).fetchall()

    def rep(self, rep_id: str) -> tuple[str, str] | None:
        """(team, lead) from the latest rep.assigned, or None."""
        row = self._cur.execute("SELECT team, lead FROM reps WHERE id = ?", (rep_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def due_followups(self, watermark: datetime) -> list[DueFollowup]:
        """Follow-ups due by `watermark` on cases not resolved, not yet reported overdue.

        A follow-up on a case the log never opened is reported too: an unknown case
        cannot be shown resolved, and a promise to a customer must not vanish silently.
        """
        t = micros(watermark)
        if self._due_bound is not None and t < self._due_bound:
            return []
        cur = self._cur
        rows = cur.execute(
            "SELECT obligation_id, case_id, customer, rep, due_at FROM followups"
            f" WHERE state = {_PENDING} AND due_at <= ? ORDER BY due_at, obligation_id",
            (t,),
        ).fetchall()
        if not rows:
            (earliest,) = cur.execute(
                f"SELECT min(due_at) FROM followups WHERE state = {_PENDING}"
            ).fetchone()
            self._due_bound = _NEVER if earliest is None else earliest
        return [DueFollowup(o, c, cu, r, datetime_of(due)) for o, c, cu, r, due in rows]

    def mark_overdue(self, obligation_id: str) -> None:
        self._cur.execute(
            f"UPDATE followups SET state = {_OVERDUE} WHERE obligation_id = ?", (obligation_id,)
        )

    def last_alert(self, sku: str) -> datetime | None:
        row = self._cur.execute("SELECT at FROM alerts WHERE sku = ?", (sku,)).fetchone()
        return None if row is None else datetime_of(row[0])

    def record_alert(self, sku: str, at: datetime) -> None:
        self._cur.execute(
            "INSERT OR REPLACE INTO alerts (sku, at) VALUES (?, ?)", (sku, micros(at))
        )

    def sku_reports(self, sku: str, since: datetime) -> tuple[int, list[str]]:
        """Defect reports for `sku` after `since` (exclusive, like `sku.reports_7d`): their
        count and order ids (one per report, oldest first; an order reported twice appears
        twice)."""
        rows = self._cur.execute(
            "SELECT order_id FROM defects WHERE sku = ? AND at > ? ORDER BY at, event_id",
            (sku, micros(since)),
        ).fetchall()
        return len(rows), [r[0] for r in rows]

    def stats(self) -> dict[str, int]:
        """Counts for summaries. `customers` counts every customer with an order, a case or
        a fulfilled remedy."""
        self._flush_outbox()
        counts = {
            "customers": "SELECT count(*) FROM customers",
            "orders": "SELECT count(*) FROM orders WHERE placed = 1",
            "cases_open": "SELECT count(*) FROM cases WHERE status = 'open'",
            "cases_resolved": "SELECT count(*) FROM cases WHERE status = 'resolved'",
            "followups_created": "SELECT count(*) FROM followups",
            "followups_overdue": f"SELECT count(*) FROM followups WHERE state = {_OVERDUE}",
            "events_seen": "SELECT count(*) FROM seen",
            "outputs": "SELECT count(*) FROM outbox",
            "outputs_pending": "SELECT count(*) FROM outbox WHERE sent = 0",
        }
        return {name: self._cur.execute(sql).fetchone()[0] for name, sql in counts.items()}
