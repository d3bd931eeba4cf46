"""The processing loop shared by every backend: records in → decisions out, nothing lost.

Per batch, one SQLite transaction holds the state changes, the next offset per input
partition, the outputs to publish (outbox) and the event ids seen. Outputs are published
by `relay` afterwards and marked sent only once the log has acknowledged them, so a crash
anywhere re-publishes identical bytes at worst, and never applies an effect twice.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

from engine.deadletter import (
    DETAIL_CHARS,
    LATE,
    PROCESSING_FAILED,
    UNKNOWN_BUDGET,
    WRONG_CURRENCY,
    WRONG_PERIOD,
    deadletter_copy,
)
from engine.decide import Decider
from engine.draft import Partial
from engine.errors import relpath
from engine.outcome import Effects, ObligationEffect, Outcome
from engine.overdue import overdue
from engine.periods import period_kind
from engine.state import StateStore
from engine.tally import Tally
from events.codec import DecodeError, decode, encode
from events.log import Record, Sink
from events.models import (
    BudgetAllocated,
    Envelope,
    FollowupOverdue,
    PolicyFile,
    PolicySetActivated,
    make_output,
)

log = logging.getLogger("goodwill.service")

DECISIONS_TOPIC = "goodwill.decisions"
DEADLETTER_TOPIC = "goodwill.deadletter"
BUDGET_TOPIC = "goodwill.budget"
"""Split mode: decisions to finish, and the events the budget stage folds (FORWARDED)."""
FORWARDED = frozenset(("budget.allocated", "rep.assigned", "item.defect_reported"))
_ACTIVATIONS = "activations"  # meta: policy sets this store has recorded activating


TIME_JUMP_DAYS: Final = 7
"""An event more than this many days ahead of the watermark is logged and counted
(`Tally.time_jumps`, goodwill_event_time_jumps_total): a shop idle that long without a
`clock.tick` is rarer than a mistyped date."""
TIME_JUMP_US: Final = TIME_JUMP_DAYS * 86_400 * 1_000_000


def is_transient(exc: BaseException) -> bool:
    """A failure of the surroundings, which retrying may cure: the disk, memory, or a
    database that is locked, full or damaged. Anything else that processing a record
    raises follows the record (a constraint it breaks, a value out of range, a fault in
    Goodwill that this record reaches) and would fail the same way every time."""
    return (
        isinstance(exc, (OSError, MemoryError, sqlite3.OperationalError, sqlite3.InternalError))
        or type(exc) is sqlite3.DatabaseError
    )


class _RecordFailed(Exception):
    """Deciding the record at `index` of a batch raised (the cause)."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


Listener = Callable[[Envelope], None]


class Recall(Protocol):
    """Outputs already recorded on the decisions topic, for rebuilding lost state.

    A recorded decision is a fact: it is folded as it was made, never decided again
    (the policy set may have changed since). `raw` gives the recorded bytes of an output
    by its id, so the outbox holds exactly what was published.
    """

    def outcome(self, event: Envelope) -> Outcome | None: ...
    def raw(self, ident: str) -> bytes | None: ...


class Processor:
    """Decides records in batches against one store and one policy-set version."""

    def __init__(
        self,
        store: StateStore,
        decider: Decider,
        on_output: Listener | None = None,
        recall: Recall | None = None,
        split: bool = False,
    ):
        self.store = store
        self.decider = decider
        self.tally = Tally()
        self.on_output = on_output
        self.recall = recall
        # Split mode (--budget-stage kafka): decisions that read state spanning customers
        # are finished by the budget stage (engine/budget_stage.py), which this forwards
        # them to; that state (ledgers, defect reports, alert windows) is the stage's.
        self.split = split
        if split:
            store.keep_reports = True  # the budget stage's (StateStore._prune)
        self._heard: list[Envelope | Outcome] = []  # outputs of the open transaction
        # Log lines about its records (dead letters), said once it commits: a batch rolled
        # back (a full disk) and retried would otherwise report each of them again.
        self._said: list[tuple[int, str, tuple[object, ...]]] = []
        self._lane: int | None = None  # the partition of the event being decided
        # On Kafka: told of each decoded input, to check it came on its key's partition.
        self.placement: Callable[[Record, Envelope], None] | None = None
        # Told the counts so far after each batch it commits (a long rebuild's progress).
        self.on_batch: Callable[[Tally], None] | None = None

    def activate(self) -> Envelope | None:
        """Record `policy_set.activated` when this policy set was not the active one."""
        ps = self.decider.policy_set
        if self.store.meta("policy_set") == ps.hash:
            return None
        files = tuple(PolicyFile(path=p, policy=i, version=v, hash=h) for p, i, v, h in ps.files)
        at = self.store.watermark() or datetime.fromisoformat("1970-01-01T00:00:00+00:00")
        # The how-manyth activation of this store, after the first: a set reloaded back
        # before any event moved the watermark is a new activation, not a copy of the old.
        count = int(self.store.meta(_ACTIVATIONS) or 0)
        if not count and self.store.meta("policy_set") is not None:
            # A store of a build that did not count: it may hold this very id from an
            # earlier activation of this set, and builds that did not count wrote no suffix.
            count = 1
        event = make_output(
            "policy_set.activated",
            f"policy-set:{ps.hash}:{at.isoformat()}" + (f":{count + 1}" if count else ""),
            at,
            PolicySetActivated(policy_set=ps.hash, files=files),
            None,
        )
        with self._transaction():
            self.store.set_meta("policy_set", ps.hash)
            self.store.set_meta(_ACTIVATIONS, str(count + 1))
            self._emit(event)
        return event

    def process(self, records: Sequence[Record]) -> None:
        """Decide a batch atomically: all of its effects and positions, or none.

        A record whose processing raises — a fault that follows the record, not the
        surroundings — is dead-lettered as `processing_failed` with the error, and the
        batch is decided again without it: one such record must not stop its partition
        in a crash loop. Failures of the surroundings (`is_transient`: the disk, a locked
        or corrupt database, memory) roll the batch back and propagate, for the caller to
        retry; they never dead-letter anything.
        """
        failed: dict[int, str] = {}
        while True:
            try:
                with self._transaction():
                    self._decide_batch(records, failed)
                break
            except _RecordFailed as err:
                cause = err.__cause__
                assert isinstance(cause, Exception)
                failed[err.index] = self._failed(records[err.index], cause)
            except Exception as exc:
                if is_transient(exc) or (len(records) == 1 and failed):
                    raise
                # Failed when the batch was written, not at a record: decide the records
                # one batch each, so the one that cannot be written is found.
                if len(records) > 1:
                    for record in records:
                        self.process([record])
                    return
                failed[0] = self._failed(records[0], exc)
        if self.on_batch is not None:  # outside the try: its failure is not the batch's
            self.on_batch(self.tally)

    def _failed(self, record: Record, exc: Exception) -> str:
        log.error(
            "deciding %s[%d]@%d failed; it is dead-lettered as %s and its batch decided"
            " again without it",
            record.topic,
            record.partition,
            record.offset,
            PROCESSING_FAILED,
            exc_info=exc,
        )
        return f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]

    def _decide_batch(self, records: Sequence[Record], failed: Mapping[int, str]) -> None:
        positions: dict[tuple[str, int], int] = {}
        for index, record in enumerate(records):
            detail = failed.get(index)
            if detail is not None:
                self.tally.read += 1
                self._deadletter(record, PROCESSING_FAILED, detail)
            else:
                try:
                    self._one(record)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    raise _RecordFailed(index) from exc
            positions[(record.topic, record.partition)] = record.offset + 1
        for (topic, partition), offset in positions.items():  # once per batch, same commit
            self.store.set_position(topic, partition, offset)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One SQLite transaction. The tally, the listener and the log see only what it
        commits."""
        total, self.tally = self.tally, Tally()
        heard, self._heard = self._heard, []
        said, self._said = self._said, []
        self.store.begin()
        try:
            yield
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        finally:
            batch, self.tally = self.tally, total
            outputs, self._heard = self._heard, heard
            lines, self._said = self._said, said
        total.add(batch)
        for level, message, args in lines:
            log.log(level, message, *args)
        if self.on_output is not None:
            for output in outputs:
                self.on_output(output.decision if isinstance(output, Outcome) else output)

    def _one(self, record: Record) -> None:
        self.tally.read += 1
        try:
            event = decode(record.value)
        except DecodeError as err:
            self._deadletter(record, err.reason, err.detail)
            return
        if self.placement is not None:
            self.placement(record, event)
        # A decision on record is a fact, even where this build would refuse its event
        # (money in another currency, decided as dollars by a build before that rule).
        outcome = self.recall.outcome(event) if self.recall is not None else None
        refused = self._refused(event) if outcome is None else None
        store = self.store
        if refused is not None:
            if store.seen(event.event_id):  # decided before the rule that refuses it
                self.tally.duplicates += 1
                return
            self._deadletter(record, *refused)
            return
        if store.late(event.occurred_at) and outcome is None:  # decided live: a fact
            # Before the duplicate check: whether an id older than the retention is still
            # on record depends on where batches ended, lateness only on the log.
            self._deadletter(record, LATE, self._late(event.occurred_at))
            return
        lane = record.partition
        if store.ahead(event.occurred_at) > TIME_JUMP_US:
            self._time_jump(record, event)
        store.note_time(record.topic, lane, event.occurred_at)
        # Deadlines this event's time passes fall due before it is decided, on the state
        # as it stood: whether a case was resolved by its deadline does not depend on
        # which event came next, nor on how far other partitions have been read. A
        # broadcast copy (clock.tick, rep.assigned) moves its partition's time too.
        if store.followups_may_be_due(lane) or store.laneless:  # asked after every event
            self._due(lane)
        changes = store.pending_changes
        if not store.first_sighting(event.event_id, event.occurred_at):
            self.tally.duplicates += 1
            return
        self._lane = lane
        split = self.split
        if split:
            self.store.apply_event(event, shared=False)  # the budget stage's to fold
        else:
            self.store.apply_event(event)
        if split and event.type in FORWARDED:
            self._forward(b"event", encode(event), event.customer_id, event.event_id)
        if outcome is None:
            if self.decider.listens(event.type):
                state = self.store.enrich(event)
            else:
                state = self.store.references(event)
            if split and self.decider.has_staged_policies(event.type):
                self._defer(self.decider.decide_customer(event, state, self.store))
            else:
                outcome = self.decider.decide(event, state, self.store)
        else:
            self.tally.recalled += 1
            if split:  # charges and alerts are the budget stage's: it replays its topic
                effects = outcome.effects._replace(charges=())
                outcome = outcome._replace(effects=effects, alerts=())
        if outcome is not None:
            self._record(outcome)
        if store.pending_changes != changes:  # follow-ups it made, or a reopening brought back
            self._due(lane)

    def _due(self, lane: int) -> None:
        """Escalate the follow-ups due by the watermark of partition `lane` (docs/kafka.md,
        "Delivery guarantees"): a case's history is on one partition, so its deadline waits for that
        partition's own events, however far others have been read. No query and no
        datetime unless one may be due."""
        store = self.store
        if store.followups_may_be_due(lane):
            watermark = store.lane_watermark(lane)
            assert watermark is not None  # a follow-up may be due only once there is one
            self._overdue(watermark, lane)
        # Follow-ups made before lanes fall due by the store's watermark, as they did.
        if store.laneless and store.followups_may_be_due(None):
            watermark = store.watermark()
            assert watermark is not None
            self._overdue(watermark, None)

    def _refused(self, event: Envelope) -> tuple[str, str] | None:
        """Why the policy set cannot take `event` though it is valid (its dead-letter
        reason and detail), or None: money in another currency, an allocation of a budget
        it does not define or for another kind of period than the budget's."""
        ps = self.decider.policy_set
        currency = event.data.__dict__.get("currency")
        if currency not in (None, ps.currency):
            return WRONG_CURRENCY, (
                f"amounts in {currency}, and the policy set {ps.hash} decides in {ps.currency}"
                " (`currency` in policies/budgets.yaml); convert them before sending"
            )
        if not isinstance(event.data, BudgetAllocated):
            return None
        budget = ps.budgets.get(event.data.budget)
        if budget is None:
            known = ", ".join(sorted(ps.budgets)) or "none"
            return UNKNOWN_BUDGET, (
                f"no budget {event.data.budget!r} in policies/budgets.yaml (policy set"
                f" {ps.hash}; defined: {known})"
            )
        kind = period_kind(event.data.period)
        if kind != budget.period:  # it would set an allocation no charge ever reads
            return WRONG_PERIOD, (
                f"a {kind} ({event.data.period}) for budget {budget.name}, which is kept per"
                f" {budget.period} (policies/budgets.yaml): allocate it per {budget.period}"
            )
        return None

    def _time_jump(self, record: Record, event: Envelope) -> None:
        """Say that `event` moves event time far ahead at once: one wrong `occurred_at` (a
        year mistyped) would make every open follow-up fall due and, with retention, every
        later event late. It is decided all the same: only the log knows event time."""
        watermark = self.store.watermark()
        assert watermark is not None
        days = (event.occurred_at - watermark).days
        self.tally.time_jumps += 1
        self._said.append(
            (
                logging.WARNING if self.recall is None else logging.INFO,  # rebuilding: old news
                "%s (%s) moves event time %d days ahead at once, from %s to %s: if its"
                " occurred_at is wrong, the follow-ups it passes are escalated and retention"
                " counts from it; correct the producer",
                (_where(record), event.event_id, days, watermark.isoformat(),
                 event.occurred_at.isoformat()),
            )
        )  # fmt: skip

    def _late(self, at: datetime) -> str:
        watermark = self.store.watermark()
        days = self.store.retain_days
        assert watermark is not None and days is not None
        return (
            f"occurred_at {at.isoformat()} is more than {days} day{'s' if days != 1 else ''}"
            " before the watermark"
            f" {watermark.isoformat()}, and history that old is no longer kept; to accept"
            " such events, raise --retain-days"
        )

    def _defer(self, partial: Partial) -> None:
        """Split mode: fold the follow-ups of the policies applied here (staged ones add
        none and raise the alerts); the budget stage finishes the decision."""
        parts = partial.parts.values()
        obligations = tuple(
            ObligationEffect(o["obligation_id"], o["case_id"], o["due_at"])
            for part in parts
            for o in part.obligations
        )
        if obligations:
            rep_id = str(partial.fact.get("rep.id") or "") or None
            folded = Effects(partial.decision_id, "", rep_id, (), (), (), obligations)
            self.store.apply_decision(
                folded, partial.event.occurred_at, partial.event.customer_id, self._lane
            )
            self.tally.followups_promised += len(obligations)
        self._forward(b"request", partial.dump(), partial.event.customer_id, partial.decision_id)
        self.tally.deferred += 1

    def _forward(self, kind: bytes, value: bytes, customer_id: str | None, ident: str) -> None:
        key = customer_id.encode() if customer_id else None
        headers = (("goodwill.kind", kind),)
        self.store.outbox_add(BUDGET_TOPIC, key, value, headers, "budget", f"budget:{ident}")

    def _record(self, outcome: Outcome, fold: Effects | None = None) -> None:
        """Fold (`fold`, else the outcome's effects), count and publish a decision."""
        effects = outcome.effects
        self.store.apply_decision(
            fold or effects, outcome.occurred_at, outcome.customer_id, self._lane
        )
        tally = self.tally
        tally.outcomes[effects.outcome] += 1
        for policy_id in effects.policies:
            tally.by_policy[policy_id] += 1
        for route in effects.routes:
            tally.routes[route] += 1
        tally.followups_promised += len((fold or effects).obligations)
        self._publish(
            outcome.raw, "decision.made", effects.decision_id, outcome.customer_id, outcome
        )
        self._alerts(outcome.alerts)

    def _alerts(self, alerts: Iterable[Envelope]) -> None:
        for alert in alerts:
            self.store.record_alert(alert.data.sku, alert.occurred_at)  # type: ignore[attr-defined]
            self.tally.alerts += 1
            self._emit(alert)

    def _overdue(self, watermark: datetime, lane: int | None) -> None:
        due = self.store.due_followups(watermark, lane)
        if not due:
            return
        leads = {}
        for f in due:
            rep = self.store.rep(f.rep_id) if f.rep_id else None
            if rep is not None:
                leads[f.rep_id or ""] = rep[1]
        rows = [(f.obligation_id, f.case_id, f.customer_id, f.rep_id, f.due_at) for f in due]
        for event in overdue(rows, watermark, leads):
            if self.recall is not None and self.recall.raw(event.event_id) is None:
                # Rebuilding: the history's order across partitions is not known, so only
                # recorded escalations are folded here; the rest fire once history is in.
                continue
            self.store.mark_overdue(event.data.obligation_id)  # type: ignore[attr-defined]
            self.tally.overdue += 1
            self._emit(event)

    def fire_overdue(self) -> None:
        """Escalate every follow-up due by its partition's watermark now (after a
        rebuild's history)."""
        store = self.store
        with self._transaction():
            for lane in store.lanes():
                watermark = store.lane_watermark(lane)
                if watermark is not None:
                    self._overdue(watermark, lane)
            watermark = store.watermark()
            if watermark is not None:
                self._overdue(watermark, None)

    def replay(self, event: Envelope) -> None:
        """Fold a recorded output that no input event causes (an activation, or an
        escalation whose moment in the history is not known) as one batch of its own."""
        with self._transaction():
            if isinstance(event.data, PolicySetActivated):
                self.store.set_meta("policy_set", event.data.policy_set)
                count = int(self.store.meta(_ACTIVATIONS) or 0)
                self.store.set_meta(_ACTIVATIONS, str(count + 1))
            elif isinstance(event.data, FollowupOverdue):
                self.store.mark_overdue(event.data.obligation_id)
                self.tally.overdue += 1
            self._emit(event)

    def _emit(self, event: Envelope) -> None:
        self._publish(None, event.type, event.event_id, event.customer_id, event)

    def _publish(
        self,
        value: bytes | None,
        kind: str,
        ident: str,
        customer_id: str | None,
        output: Envelope | Outcome,
    ) -> None:
        """Add an output to the outbox: `value` (None: encode `output`), or the bytes the
        history recorded for it when rebuilding."""
        recorded = self.recall.raw(ident) if self.recall is not None else None
        if recorded is not None:
            value = recorded
        elif value is None:
            assert isinstance(output, Envelope)
            value = encode(output)
        key = customer_id.encode() if customer_id else None
        self.store.outbox_add(DECISIONS_TOPIC, key, value, (), kind, ident)
        if self.on_output is not None:
            self._heard.append(output)

    def _deadletter(self, record: Record, reason: str, detail: str) -> None:
        self.tally.deadlettered[reason] += 1
        headers, ident = deadletter_copy(record, reason, detail)
        self.store.outbox_add(
            DEADLETTER_TOPIC, record.key, record.value, headers, "deadletter", ident
        )
        where = _where(record)
        if self.recall is None:
            self._said.append(
                (logging.WARNING, "dead-lettered %s: %s: %s", (where, reason, detail))
            )
        else:  # rebuilding: the history holds its dead letter, which is not sent again
            self._said.append(
                (logging.INFO, "was dead-lettered %s: %s: %s", (where, reason, detail))
            )


def _where(record: Record) -> str:
    """Where a record was read, for people: FILE:LINE, or topic[partition]@offset."""
    if record.topic.startswith("file:"):  # a FILE given to `goodwill run`
        return f"{relpath(Path(record.topic[5:]))}:{record.offset}"
    return f"{record.topic}[{record.partition}]@{record.offset}"


RELAY_CHUNK: Final = 500
"""Outputs `relay` publishes, then marks sent, at a time."""


def relay(store: StateStore, out: Sink, batch: int = RELAY_CHUNK) -> int:
    """Publish pending outputs in order, `batch` at a time; mark them sent only after the
    log has them."""
    sent = 0
    while True:
        pending = store.outbox_pending(batch)
        if not pending:
            return sent
        for _rowid, topic, key, value, headers in pending:
            out.append(topic, key, value, headers)
        out.flush()
        store.begin()
        store.outbox_mark_sent([row[0] for row in pending])
        store.commit()
        sent += len(pending)
