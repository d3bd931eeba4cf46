"""Event-sourced state: projections folded from input events and Goodwill's own decisions.

Everything here is derived from the log alone — input events in order, then the effects
of each decision — so folding the same log twice yields the same tables (`digest`).
Time is event time only: windows and ages are measured from `occurred_at`, never the
wall clock. Money is integer cents. Timestamps are integer microseconds since the Unix
epoch (UTC), so window boundaries compare exactly (`engine.micros`).

The store is one SQLite file in WAL mode (`engine.state_file`). The caller batches:
everything between `begin()` and `commit()` — state, delivery bookkeeping
(`engine.ledger`) and the outbox (`engine.outbox`) — is one transaction, so a crash loses
a whole batch or nothing. Per-entity state stays in SQLite. The rows the hot folds touch
(customers, orders, cases, reps) are read through a bounded write-behind cache
(`engine.row_cache`): a batch changes them in memory and writes them in one executemany
before its COMMIT, and a rollback drops the cache. Memory stays bounded by the rows it
keeps per table plus SQLite's page cache, whatever the number of customers. The tables,
and the layout of a cached row, are `engine.state_schema`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from engine.facts import Scalar, to_minor
from engine.micros import datetime_of, micros
from engine.outbox import Outbox
from engine.row_cache import Rows
from engine.state_file import connect, connect_readonly
from engine.state_schema import (
    ADDED,
    ADDED_COLUMNS,
    C_FIRST_ORDER,
    C_LAST_REMEDY,
    C_OPEN_CASES,
    C_ORDER_COUNT,
    C_ORDERED,
    C_REFUNDED,
    CASE_COLUMNS,
    CUSTOMER_COLUMNS,
    K_CHANNEL,
    K_CUSTOMER,
    K_OPENED_AT,
    K_ORDER,
    K_REMEDIES,
    K_REOPENS,
    K_REP,
    K_RESOLUTION,
    K_RESOLVED_AT,
    K_STATUS,
    K_TOPIC,
    K_TRANSFERS,
    O_AMOUNT,
    O_CHANNEL,
    O_CUSTOMER,
    O_DELAYED,
    O_ITEMS,
    O_LEVEL,
    O_LOST,
    O_NEW_ETA,
    O_PLACED,
    O_PLACED_AT,
    O_PROMISED,
    O_SHIPPED,
    ORDER_COLUMNS,
    OVERDUE,
    PARKED,
    PENDING,
    REP_COLUMNS,
    SCHEMA,
    new_customer,
    new_order,
)
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

if TYPE_CHECKING:
    from engine.outcome import Effects

_HOUR: Final = 3_600_000_000  # microseconds
_DAY: Final = 24 * _HOUR
_REMEDY_WINDOW: Final = 90 * _DAY
_REPORT_WINDOW: Final = 7 * _DAY
_GOLD: Final = 200_000  # cents of lifetime value
_SILVER: Final = 50_000

_NEVER: Final = 2**63 - 1  # the due bound when nothing is pending

# With the budget stage, the folds of state spanning customers that only it makes.
_SHARED_FOLDS: Final = frozenset(("budget.allocated", "item.defect_reported"))

_ADD_CASE_REMEDY: Final = """
INSERT OR IGNORE INTO case_remedies (case_id, event_id, kind, remedy, amount, at)
VALUES (?, ?, ?, ?, ?, ?)
"""
_ADD_FOLLOWUP: Final = """
INSERT OR IGNORE INTO followups (obligation_id, case_id, customer, rep, due_at, state, lane)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
# A case's kept follow-up, per state. The state is written into the SQL, not bound: a
# parameter compared with the column a partial index filters on (followups_due_by_lane,
# `state = 0`) makes SQLite prepare the statement again at every execution, which tripled
# the cost of the earliest-promise check.
_CASE_FOLLOWUP: Final = {
    s: f"SELECT min(due_at) FROM followups WHERE case_id = ? AND state = {s}"
    for s in (PENDING, PARKED)
}
_DROP_CASE_FOLLOWUPS: Final = {
    s: f"DELETE FROM followups WHERE case_id = ? AND state = {s}" for s in (PENDING, PARKED)
}
_CHARGE: Final = """
INSERT INTO budgets (budget, owner, period, charged) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (budget, owner, period) DO UPDATE SET charged = charged + ?4
"""

# Lifetime sums saturate below 2**63 so they stay SQLite integers and matcher facts (it
# takes ~92 orders at the contract's largest amount to get there).
_SUM_LIMIT: Final = 2**63 - 1

# Only customers with a remedy in the window pay for the range count.
_REMEDIES_IN_WINDOW: Final = (
    "SELECT count(*) FROM remedies WHERE customer = ? AND at > ? AND at <= ?"
)


@dataclass(frozen=True)
class DueFollowup:
    obligation_id: str
    case_id: str
    customer_id: str | None
    rep_id: str | None
    due_at: datetime


class StateStore(Outbox):
    """Projections of the log in SQLite; see the module docstring for the guarantees."""

    def __init__(self, conn: sqlite3.Connection, *, checkpoints: bool = True) -> None:
        super().__init__(conn, checkpoints=checkpoints)
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
        cur = self._cur
        self._customers = Rows(cur, "customers", CUSTOMER_COLUMNS)
        self._orders = Rows(cur, "orders", ORDER_COLUMNS)
        self._cases = Rows(cur, "cases", CASE_COLUMNS)
        self._reps = Rows(cur, "reps", REP_COLUMNS)
        self._cached = (self._customers, self._orders, self._cases, self._reps)
        # Split mode: the defect reports are the budget stage's, which may replay its topic
        # from far behind this store's event time, so retention keeps them (see _prune).
        self.keep_reports = False
        # Per lane, a lower bound on its earliest pending follow-up's due time (absent:
        # not known), so that due_followups, which the service calls after every event,
        # usually answers without a query. Anything that makes a follow-up pending
        # lowers it.
        self._due_bounds: dict[int | None, int] = {}
        # Counts the changes that may make a follow-up pending (made or brought back), so
        # the service asks again after an event only when it changed something.
        self.pending_changes = 0
        # Whether follow-ups without a lane (from before lanes) may be pending.
        self.laneless = self._laneless()

    @classmethod
    def open(cls, path: Path, *, full_sync: bool = False) -> StateStore:
        """Open (creating if needed) the store at `path`, or `path/state.db` for a directory.

        `full_sync` makes each commit survive power loss too; with the default
        (synchronous=NORMAL) a commit survives a process crash but the last batches may
        be lost on power failure — and are then re-read from the stored positions.
        """
        return cls(connect(path, full_sync, SCHEMA, ADDED, ADDED_COLUMNS))

    @classmethod
    def open_readonly(cls, path: Path) -> StateStore:
        """An existing store at `path` (or `path/state.db`) for reading beside a running
        service: no write lock, no checkpoints; writing raises sqlite3.OperationalError. A
        file of an older build reads the columns it lacks as NULL, as opening it adds them."""
        return cls(connect_readonly(path, ADDED_COLUMNS), checkpoints=False)

    def rollback(self) -> None:
        super().rollback()
        for rows in self._cached:
            rows.forget()
        self._due_bounds.clear()  # undone overdue marks may have brought earlier ones back

    def _write_behind(self) -> None:
        for rows in self._cached:
            rows.flush()
        super()._write_behind()

    def _retention_indexes(self) -> tuple[str, ...]:
        return (
            *super()._retention_indexes(),
            "CREATE INDEX IF NOT EXISTS remedies_by_time ON remedies (at)",
            "CREATE INDEX IF NOT EXISTS defects_by_time ON defects (at)",
            "CREATE INDEX IF NOT EXISTS case_remedies_by_time ON case_remedies (at)",
            f"CREATE INDEX IF NOT EXISTS followups_overdue ON followups (due_at)"
            f" WHERE state = {OVERDUE}",
        )

    def _prune(self, cutoff: int) -> None:
        """Also forget the history older than `cutoff` that nothing reads any more:
        remedies beyond the 90 days counted and defect reports beyond the 7 days counted
        *before* it (an event just inside the retention still counts its whole window);
        what was asked and given on cases the log has opened (only a case not yet opened
        counts them); follow-ups already escalated. Kept whatever their age: pending and
        parked follow-ups (promises; a reopened case brings parked ones back), the
        customers, orders, cases, reps and budgets that policies read, and in split mode
        the defect reports (`keep_reports`)."""
        super()._prune(cutoff)
        cur = self._cur
        cur.execute("DELETE FROM remedies WHERE at < ?", (cutoff - _REMEDY_WINDOW,))
        if not self.keep_reports:
            cur.execute("DELETE FROM defects WHERE at < ?", (cutoff - _REPORT_WINDOW,))
        cur.execute(
            "DELETE FROM case_remedies WHERE at < ? AND case_id IN (SELECT id FROM cases)",
            (cutoff,),
        )
        cur.execute(f"DELETE FROM followups WHERE state = {OVERDUE} AND due_at < ?", (cutoff,))

    def _customer(self, customer_id: str) -> list[Any]:
        """The customer's row to change (created if new); the caller `put`s it back."""
        return self._customers.get(customer_id) or new_customer(customer_id)

    # ---------------------------------------------------------------- folding events

    def apply_event(self, event: Envelope, *, shared: bool = True) -> None:
        """Fold one input event (clock.tick and unknown types only move the watermark).

        `shared=False`: leave what spans customers, allocations and defect reports, to the
        budget stage (`fold_for_budgets`), their only writer then.
        """
        if not self._conn.in_transaction:
            self._autocommit(self.apply_event, event, shared=shared)
            return
        t = self._time(event.occurred_at)
        fold = self._folds.get(event.type)
        if fold is not None and (shared or event.type not in _SHARED_FOLDS):
            fold(event, event.customer_id or "", t)
        self._advance(t)

    def fold_for_budgets(self, event: Envelope) -> None:
        """The budget stage's fold of a forwarded event: `budget.allocated` (the ledger),
        `item.defect_reported` (the reports it counts) or `rep.assigned` (its own table of
        reps, so that what it knows of a rep follows its own log even when one store holds
        both stages). It leaves the watermark, the customer stage's event time, alone."""
        if event.type in _SHARED_FOLDS:
            t = self._time(event.occurred_at)
            self._folds[event.type](event, event.customer_id or "", t)
        elif event.type == "rep.assigned":
            d = cast(RepAssigned, event.data)
            self._cur.execute(
                "INSERT OR REPLACE INTO stage_reps (id, team, lead) VALUES (?, ?, ?)",
                (d.rep_id, d.team, d.lead),
            )

    def stage_rep(self, rep_id: str) -> tuple[str, str] | None:
        """(team, lead) as the budget stage knows the rep (`fold_for_budgets`), or None."""
        row = self._cur.execute(
            "SELECT team, lead FROM stage_reps WHERE id = ?", (rep_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _order_placed(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(OrderPlaced, event.data)
        amount = to_minor(d.amount)
        row = self._orders.get(d.order_id) or new_order(d.order_id, customer)
        if row[O_PLACED]:
            return  # a second order.placed for the same order (new event id) counts once
        row[O_CUSTOMER], row[O_PLACED], row[O_AMOUNT], row[O_PLACED_AT] = customer, 1, amount, t
        row[O_CHANNEL], row[O_ITEMS] = d.channel, sum(item.qty for item in d.items)
        self._orders.put(d.order_id, row)
        c = self._customer(customer)
        c[C_ORDERED] = min(_SUM_LIMIT, c[C_ORDERED] + amount)
        c[C_ORDER_COUNT] += 1
        first = c[C_FIRST_ORDER]
        c[C_FIRST_ORDER] = t if first is None else min(first, t)
        self._customers.put(customer, c)

    # Shipping events may overtake order.placed (different producers); the row they create
    # stays `placed = 0` (order.known false) until the order itself arrives.
    def _order_shipped(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(OrderShipped, event.data)
        row = self._orders.get(d.order_id) or new_order(d.order_id, customer)
        row[O_SHIPPED], row[O_LEVEL], row[O_PROMISED] = 1, d.service_level, micros(d.promised_by)
        self._orders.put(d.order_id, row)

    def _shipment_delayed(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(ShipmentDelayed, event.data)
        row = self._orders.get(d.order_id) or new_order(d.order_id, customer)
        # how many delays were reported (`order.delay_reports`); builds before the count wrote 1
        row[O_DELAYED], row[O_NEW_ETA] = row[O_DELAYED] + 1, micros(d.new_eta)
        self._orders.put(d.order_id, row)

    def _shipment_lost(self, event: Envelope, customer: str, t: int) -> None:
        order_id = event.data.__dict__["order_id"]
        row = self._orders.get(order_id) or new_order(order_id, customer)
        row[O_LOST] += 1  # how many loss reports (`order.lost_reports`); builds before wrote 1
        self._orders.put(order_id, row)

    def _defect_reported(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(ItemDefectReported, event.data)
        self._cur.execute(
            "INSERT OR IGNORE INTO defects (sku, at, event_id, order_id, customer)"
            " VALUES (?, ?, ?, ?, ?)",
            (d.sku, t, event.event_id, d.order_id, customer),
        )

    def _contact_opened(self, event: Envelope, customer: str, t: int) -> None:
        # Opening a resolved case reopens it (keeping opened_at, transfers and remedies);
        # opening an open case again changes nothing. A new case counts the remedies
        # fulfilled on it before it was opened, and opens resolved if a resolution no
        # earlier than its opening was read first (producers may race).
        d = cast(ContactOpened, event.data)
        row = self._cases.get(d.case_id)
        if row is None:
            # What was read about the case before its opening: remedies fulfilled on it,
            # and a resolution (producers may race). One query, usually no row.
            fulfilled, early = 0, None
            for kind, at, what in self._cur.execute(
                "SELECT kind, at, remedy FROM case_remedies WHERE case_id = ?", (d.case_id,)
            ):
                if kind == "fulfilled":
                    fulfilled += 1
                elif kind == "resolved" and at >= t and (early is None or at > early[0]):
                    early = (at, what)
            row = [d.case_id, customer, d.rep_id, d.topic, d.channel, t, "open", None, None]
            row += [d.order_id, 0, fulfilled, 0]
            # Resolved at or after this opening, but read before it: the case is born
            # resolved (its follow-ups park), not escalated for want of a resolution.
            if early is not None:
                resolved_at, resolution = early
                row[K_STATUS], row[K_RESOLVED_AT], row[K_RESOLUTION] = (
                    "resolved",
                    resolved_at,
                    resolution,
                )
                self._cases.put(d.case_id, row)
                return
        elif row[K_STATUS] == "resolved":
            row[K_STATUS], row[K_RESOLVED_AT], row[K_RESOLUTION] = "open", None, None
            row[K_REP] = d.rep_id
            if d.order_id is not None:
                row[K_ORDER] = d.order_id
            row[K_REOPENS] += 1
            self._cur.execute(
                f"UPDATE followups SET state = {PENDING} WHERE case_id = ? AND state = {PARKED}",
                (d.case_id,),
            )
            self._due_bounds.clear()
            self.pending_changes += 1
        else:
            return  # already open
        self._cases.put(d.case_id, row)
        owner = row[K_CUSTOMER]
        c = self._customer(owner)
        c[C_OPEN_CASES] += 1
        self._customers.put(owner, c)

    def _contact_transferred(self, event: Envelope, customer: str, t: int) -> None:
        case_id = event.data.__dict__["case_id"]
        row = self._cases.get(case_id)
        if row is not None:
            row[K_TRANSFERS] += 1
            self._cases.put(case_id, row)

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
        case = self._cases.get(d.case_id)
        if case is not None:
            case[K_REMEDIES] += 1
            self._cases.put(d.case_id, case)
        # Lifetime value is orders minus refunds, floored at 0 when read: kept as two sums,
        # it does not depend on whether a refund is folded before or after its orders.
        c = self._customer(customer)
        if d.remedy == "refund":
            c[C_REFUNDED] = min(_SUM_LIMIT, c[C_REFUNDED] + cost)
        last = c[C_LAST_REMEDY]
        c[C_LAST_REMEDY] = t if last is None else max(last, t)
        self._customers.put(customer, c)

    def _case_resolved(self, event: Envelope, customer: str, t: int) -> None:
        d = cast(CaseResolved, event.data)
        row = self._cases.get(d.case_id)
        if row is None:  # read before its opening (producers may race): kept for it
            self._cur.execute(
                _ADD_CASE_REMEDY, (d.case_id, event.event_id, "resolved", d.resolution, 0, t)
            )
            return
        if row[K_STATUS] != "open":
            return  # already resolved
        row[K_STATUS], row[K_RESOLVED_AT], row[K_RESOLUTION] = "resolved", t, d.resolution
        self._cases.put(d.case_id, row)
        owner = self._customers.get(row[K_CUSTOMER])
        if owner is not None:
            owner[C_OPEN_CASES] -= 1
            self._customers.put(owner[0], owner)
        self._cur.execute(
            f"UPDATE followups SET state = {PARKED} WHERE case_id = ? AND state = {PENDING}",
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
        self._reps.put(d.rep_id, [d.rep_id, d.team, d.lead])

    # ---------------------------------------------------------------- folding decisions

    def apply_decision(
        self,
        data: DecisionData | Effects,
        occurred_at: datetime,
        customer_id: str | None,
        lane: int | None = None,
    ) -> None:
        """Fold a decision's effects; applying the same decision again changes nothing.

        Only charges and obligations are folded. Grants are what a rep *may* give; what a
        customer received arrives as `remedy.fulfilled` (see `_remedy_fulfilled`).
        `lane`: the input partition the decided event was read from, by whose watermark
        its follow-ups fall due (None: by the store's).
        """
        if not (data.charges or data.obligations):
            return  # most decisions only note: nothing to fold, nothing to remember
        if not self._conn.in_transaction:
            self._autocommit(self.apply_decision, data, occurred_at, customer_id, lane)
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
        for o in data.obligations:
            # The case's customer and rep when the log knows the case; a follow-up on a
            # resolved case waits parked for a reopening.
            case = self._cases.get(o.case_id)
            if case is None:
                owner, rep, state = customer_id, data.rep_id, PENDING
            else:
                owner = customer_id if customer_id is not None else case[K_CUSTOMER]
                rep = case[K_REP]
                state = PARKED if case[K_STATUS] == "resolved" else PENDING
            due = micros(o.due_at)
            # One deadline per case: the earliest promise. A later one is kept by it (its
            # lead hears of the case once, not once per policy that promised), and an
            # earlier one takes its place.
            (kept,) = cur.execute(_CASE_FOLLOWUP[state], (o.case_id,)).fetchone()
            if kept is not None and kept <= due:
                continue
            if kept is not None:
                cur.execute(_DROP_CASE_FOLLOWUPS[state], (o.case_id,))
            cur.execute(_ADD_FOLLOWUP, (o.obligation_id, o.case_id, owner, rep, due, state, lane))
            self.pending_changes += 1
            self.laneless = self.laneless or lane is None
            bound = self._due_bounds.get(lane)
            if bound is not None:
                self._due_bounds[lane] = min(bound, due)

    # ---------------------------------------------------------------- reading

    def enrich(self, event: Envelope) -> dict[str, Scalar]:
        """Every `facts.STATE_FIELDS` path for `event`, from the state folded so far."""
        t = self._time(event.occurred_at)
        cur = self._cur
        # Pydantic keeps a payload's fields in __dict__; .get() reads the optional
        # references without a per-type table or getattr's AttributeError.
        data: dict[str, Any] = event.data.__dict__
        customer_id: str | None = event.customer_id
        c_known, ltv, orders, remedies_90d, tier, open_cases, tenure = 0, 0, 0, 0, "standard", 0, 0
        if customer_id is not None and (c := self._customers.get(customer_id)) is not None:
            net = c[C_ORDERED] - c[C_REFUNDED]
            orders, open_cases = c[C_ORDER_COUNT], c[C_OPEN_CASES]
            c_known, ltv = orders > 0, max(0, net)
            tier = "gold" if net >= _GOLD else "silver" if net >= _SILVER else "standard"
            first = c[C_FIRST_ORDER]
            tenure = 0 if first is None else max(0, (t - first) // _DAY)
            last = c[C_LAST_REMEDY]
            # Only customers with a remedy in the window pay for the range count.
            if last is not None and last > t - _REMEDY_WINDOW:
                (remedies_90d,) = cur.execute(
                    _REMEDIES_IN_WINDOW, (customer_id, t - _REMEDY_WINDOW, t)
                ).fetchone()

        case_id, case, order_id, rep_id = self._references(data)
        if case is None:
            status, case_rep, topic, case_channel, transfers, age_hours = "", "", "", "", 0, 0
            case_remedies = 0
        else:
            status, case_rep, topic, case_channel = (
                case[K_STATUS],
                case[K_REP],
                case[K_TOPIC],
                case[K_CHANNEL],
            )
            transfers, case_remedies = case[K_TRANSFERS], case[K_REMEDIES]
            age_hours = max(0, (t - case[K_OPENED_AT]) // _HOUR)

        order = None if order_id is None else self._orders.get(order_id)
        if order is None:
            o_known, amount, age_days, channel, items, level = 0, 0, 0, "", 0, ""
            shipped, delayed, lost, delay_days = 0, 0, 0, 0
        else:
            o_known, amount = order[O_PLACED], order[O_AMOUNT]
            age_days = max(0, (t - order[O_PLACED_AT]) // _DAY) if o_known else 0
            channel, items, level = order[O_CHANNEL], order[O_ITEMS], order[O_LEVEL]
            shipped, delayed, lost = order[O_SHIPPED], order[O_DELAYED], order[O_LOST]
            eta, promised = order[O_NEW_ETA], order[O_PROMISED]
            delay_days = 0 if eta is None or promised is None else max(0, (eta - promised) // _DAY)

        rep = self._reps.get(rep_id) if rep_id else None
        team, lead = ("", "") if rep is None else (rep[1], rep[2])

        sku: str | None = data.get("sku")
        reports_7d = 0 if sku is None else self._reports_7d(sku, t)

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
            "order.delayed": delayed >= 1,
            "order.delay_reports": delayed,
            "order.lost": lost >= 1,
            "order.lost_reports": lost,
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

    def references(self, event: Envelope) -> dict[str, Scalar]:
        """Only the `case.id`, `order.id` and `rep.id` of `enrich`: what a decision on an
        event that no policy listens to reads (`Decider.listens`)."""
        case_id, _case, order_id, rep_id = self._references(event.data.__dict__)
        return {"order.id": order_id or "", "case.id": case_id or "", "rep.id": rep_id}

    def _references(
        self, data: dict[str, Any]
    ) -> tuple[str | None, list[Any] | None, str | None, str]:
        """(case id, case row, order id, rep id) of a payload: the order and the rep fall
        back to the case's when the payload names none."""
        case_id: str | None = data.get("case_id")
        case = None if case_id is None else self._cases.get(case_id)
        if case is None:
            return case_id, None, data.get("order_id") or None, data.get("rep_id") or ""
        order_id = data.get("order_id") or case[K_ORDER]
        return case_id, case, order_id, data.get("rep_id") or case[K_REP]

    def reports_7d(self, sku: str, at: datetime) -> int:
        """`sku.reports_7d`: the defect reports for `sku` in the 7 days up to `at`."""
        return self._reports_7d(sku, self._time(at))

    def _reports_7d(self, sku: str, t: int) -> int:
        (count,) = self._cur.execute(
            "SELECT count(*) FROM defects WHERE sku = ? AND at > ? AND at <= ?",
            (sku, t - _REPORT_WINDOW, t),
        ).fetchone()
        return int(count)

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
        row = self._reps.get(rep_id)
        return None if row is None else (row[1], row[2])

    def followups_may_be_due(self, lane: int | None = None) -> bool:
        """False when no follow-up of `lane` can be due by its watermark (known without a
        query or a datetime); True when `due_followups` must look. `lane` None: the
        follow-ups made before lanes, by the store's watermark."""
        if lane is None:
            t = self._watermark
        else:
            t = self._lanes[lane] if lane in self._lanes else self.lane_time(lane)
        if t is None:
            return False
        bound = self._due_bounds.get(lane)
        return bound is None or t >= bound

    def _laneless(self) -> bool:
        row = self._cur.execute(
            f"SELECT 1 FROM followups WHERE lane IS NULL AND state != {OVERDUE} LIMIT 1"
        ).fetchone()
        return row is not None

    def due_followups(self, watermark: datetime, lane: int | None = None) -> list[DueFollowup]:
        """Follow-ups of `lane` due by `watermark` on cases not resolved, not yet reported
        overdue (`lane` None: those made before lanes).

        A follow-up on a case the log never opened is reported too: an unknown case
        cannot be shown resolved, and a promise to a customer must not vanish silently.
        """
        t = micros(watermark)
        bound = self._due_bounds.get(lane)
        if bound is not None and t < bound:
            return []
        cur = self._cur
        rows = cur.execute(
            "SELECT obligation_id, case_id, customer, rep, due_at FROM followups"
            f" WHERE state = {PENDING} AND lane IS ? AND due_at <= ?"
            " ORDER BY due_at, obligation_id",
            (lane, t),
        ).fetchall()
        if not rows:
            (earliest,) = cur.execute(
                f"SELECT min(due_at) FROM followups WHERE state = {PENDING} AND lane IS ?",
                (lane,),
            ).fetchone()
            self._due_bounds[lane] = _NEVER if earliest is None else earliest
        return [DueFollowup(o, c, cu, r, datetime_of(due)) for o, c, cu, r, due in rows]

    def mark_overdue(self, obligation_id: str) -> None:
        self._cur.execute(
            f"UPDATE followups SET state = {OVERDUE} WHERE obligation_id = ?", (obligation_id,)
        )

    def last_alert(self, sku: str) -> datetime | None:
        row = self._cur.execute("SELECT at FROM alerts WHERE sku = ?", (sku,)).fetchone()
        return None if row is None else datetime_of(row[0])

    def record_alert(self, sku: str, at: datetime) -> None:
        self._cur.execute(
            "INSERT OR REPLACE INTO alerts (sku, at) VALUES (?, ?)", (sku, micros(at))
        )

    def sku_reports(self, sku: str, since: datetime, until: datetime) -> tuple[int, list[str]]:
        """Defect reports for `sku` after `since` up to `until` (the window of
        `sku.reports_7d`: a report folded earlier but made later is not in it): their count
        and order ids (one per report, oldest first; an order reported twice appears
        twice)."""
        rows = self._cur.execute(
            "SELECT order_id FROM defects WHERE sku = ? AND at > ? AND at <= ?"
            " ORDER BY at, event_id",
            (sku, micros(since), micros(until)),
        ).fetchall()
        return len(rows), [r[0] for r in rows]

    def stats(self) -> dict[str, int]:
        """Counts for summaries. `customers` counts every customer with an order, a case or
        a fulfilled remedy."""
        self._write_behind()
        counts = {
            "customers": "SELECT count(*) FROM customers",
            "orders": "SELECT count(*) FROM orders WHERE placed = 1",
            "cases_open": "SELECT count(*) FROM cases WHERE status = 'open'",
            "cases_resolved": "SELECT count(*) FROM cases WHERE status = 'resolved'",
            "followups_created": "SELECT count(*) FROM followups",
            "followups_overdue": f"SELECT count(*) FROM followups WHERE state = {OVERDUE}",
            "events_seen": "SELECT count(*) FROM seen",
            "outputs": "SELECT count(*) FROM outbox",
            "outputs_pending": "SELECT count(*) FROM outbox WHERE sent = 0",
        }
        return {name: self._cur.execute(sql).fetchone()[0] for name, sql in counts.items()}
