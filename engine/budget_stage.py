"""The budget stage: the single writer of the state that spans customers
(`--budget-stage kafka`): every budget's ledger, the defect reports per SKU and their
alert windows.

Events are keyed by customer, so with several instances each sees only some of the
charges to a rep's or a team's budget, or of the reports of one product. In split mode
the customer stage (a `Processor` with `split=True`) decides what reads only the
customer's state and forwards the rest to the `goodwill.budget` topic, which has one
partition and so one reader at a time:

- `request`: a `Partial` decision (`Decider.decide_customer`). The stage applies the
  staged policies (`Policy.staged`) against its own state (`Decider.decide_budget`),
  publishes the finished `decision.made` and any alert, and folds the charges;
- `event`: a `budget.allocated`, `item.defect_reported` or `rep.assigned`, folded into
  the ledger, the reports it counts, or the reps it resolves team budgets with
  (`StateStore.fold_for_budgets`).

Like the customer stage it commits its ledger, the decisions to publish (outbox), the ids
it has seen and its position in the budget topic in one SQLite transaction per batch, so a
crash or a move of the partition to another instance re-decides from the stored position
to the same bytes. Decisions are the same as a single process makes: the topic keeps the
order in which the customer stages forwarded, and in one process that is the log's order.
"""

from __future__ import annotations

from engine.draft import Partial
from engine.service import Processor
from events.codec import DecodeError, decode
from events.log import Record

REQUEST = b"request"
EVENT = b"event"


class BudgetStage(Processor):
    """Decides the records of the budget topic (see the module docstring)."""

    def _one(self, record: Record) -> None:
        self.tally.read += 1
        kind = dict(record.headers).get("goodwill.kind")
        try:
            if kind == EVENT:
                self._fold(record)
            elif kind == REQUEST:
                self._finish(Partial.load(record.value))
            else:
                self._deadletter(record, "not_a_budget_record", f"goodwill.kind is {kind!r}")
        except (DecodeError, ValueError, KeyError) as err:
            # Only the customer stage writes here; a record it did not write is refused.
            self._deadletter(record, "not_a_budget_record", f"{type(err).__name__}: {err}")

    def _fold(self, record: Record) -> None:
        event = decode(record.value)
        if not self.store.first_sighting(f"budget:{event.event_id}"):
            self.tally.duplicates += 1
            return
        self.store.fold_for_budgets(event)

    def _finish(self, partial: Partial) -> None:
        if not self.store.first_sighting(f"budget:{partial.decision_id}"):
            self.tally.duplicates += 1  # forwarded again after a crash or a rebuild
            return
        fact = partial.fact
        sku = fact.get("sku.id")
        if sku:  # every instance's reports reach this stage, as of its own log
            fact["sku.reports_7d"] = self.store.reports_7d(str(sku), partial.event.occurred_at)
        if not fact.get("rep.team") and fact.get("rep.id"):
            # The customer stage's instance had no rep.assigned for this rep (it lives on
            # another partition); this stage sees every one.
            known = self.store.stage_rep(str(fact["rep.id"]))
            if known is not None:
                fact["rep.team"], fact["rep.lead"], fact["rep.known"] = known[0], known[1], True
        outcome = self.decider.decide_budget(partial, self.store)
        # The customer stage folded the follow-ups; this stage folds the charges, under an
        # id of its own (one store may hold both stages).
        effects = outcome.effects
        fold = effects._replace(decision_id=f"budget:{effects.decision_id}", obligations=())
        self._record(outcome, fold)
