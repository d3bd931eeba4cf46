"""The budget stage: the decision split in two parts that meet again byte for byte."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from engine.budget_stage import BudgetStage
from engine.compile import load
from engine.decide import Decider, StateView
from engine.draft import Partial
from engine.facts import Scalar
from engine.outcome import Outcome
from engine.service import BUDGET_TOPIC, Processor
from engine.state import StateStore
from events.log import Record
from events.models import Envelope
from tests.samples import sample

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop-day.jsonl"


class RoundTrip(Decider):
    """Decides as usual, and checks the customer part sent through JSON decides the same."""

    checked = 0

    def decide(self, event: Envelope, state: Mapping[str, Scalar], view: StateView) -> Outcome:
        partial = self.decide_customer(event, state, view)
        sent = Partial.load(partial.dump())
        assert sent.event == event
        through = self.decide_budget(sent, view)
        outcome = self.decide_budget(partial, view)
        assert through.raw == outcome.raw, event.event_id
        assert through.effects == outcome.effects
        self.checked += 1
        return outcome


def test_the_customer_part_sent_as_json_gives_the_same_decision(tmp_path: Path) -> None:
    decider = RoundTrip(load(ROOT / "policies"))
    with StateStore.open(tmp_path) as store:
        processor = Processor(store, decider)
        lines = EXAMPLE.read_bytes().splitlines()
        processor.process([Record("ex", 0, i, None, line) for i, line in enumerate(lines)])
    assert decider.checked > 590  # every valid line of the example


def _monolithic(path: Path) -> tuple[list[bytes], list[tuple[str, str, str, int | None, int]]]:
    with StateStore.open(path) as store:
        Processor(store, Decider(load(ROOT / "policies"))).process(_example())
        return _decisions(store), store.budgets()


def _example() -> list[Record]:
    lines = EXAMPLE.read_bytes().splitlines()
    return [Record("ex", 0, i, None, line) for i, line in enumerate(lines)]


def _decisions(store: StateStore) -> list[bytes]:
    """Decisions, root-cause alerts and overdue follow-ups, sorted."""
    kinds = ("decision.made", "rootcause.alert", "followup.overdue")
    return sorted(v for kind in kinds for v in store.outputs(kind))


def _forwarded(store: StateStore) -> list[Record]:
    rows = [row for row in store.outbox_pending(1_000_000) if row[1] == BUDGET_TOPIC]
    return [
        Record(BUDGET_TOPIC, 0, i, key, value, headers)
        for i, (_, _, key, value, headers) in enumerate(rows)
    ]


def test_split_in_two_stages_the_decisions_and_the_ledger_are_the_monolithic_ones(
    tmp_path: Path,
) -> None:
    decisions, budgets = _monolithic(tmp_path / "one")
    compiled = load(ROOT / "policies")
    with (
        StateStore.open(tmp_path / "customers") as customers,
        StateStore.open(tmp_path / "budgets") as ledger,
    ):
        stage = Processor(customers, Decider(compiled), split=True)
        stage.process(_example())
        forwarded = _forwarded(customers)
        kinds = {dict(r.headers)["goodwill.kind"] for r in forwarded}
        assert kinds == {b"request", b"event"}
        assert stage.tally.deferred == sum(
            dict(r.headers)["goodwill.kind"] == b"request" for r in forwarded
        )
        assert customers.budgets() == []  # the customer stage keeps no ledger

        budget_stage = BudgetStage(ledger, Decider(compiled))
        for start in range(0, len(forwarded), 7):  # batches do not matter
            budget_stage.process(forwarded[start : start + 7])
        assert ledger.budgets() == budgets
        assert sorted(_decisions(customers) + _decisions(ledger)) == decisions
        assert list(ledger.outputs("rootcause.alert"))  # the defect spike, counted there

        again = BudgetStage(ledger, Decider(compiled))
        again.process(forwarded)  # forwarded twice (a crash, a rebuild): nothing twice
        assert again.tally.duplicates == len(forwarded)
        assert ledger.budgets() == budgets


def test_one_store_can_hold_both_stages(tmp_path: Path) -> None:
    decisions, budgets = _monolithic(tmp_path / "one")
    compiled = load(ROOT / "policies")
    with StateStore.open(tmp_path / "both") as store:
        Processor(store, Decider(compiled), split=True).process(_example())
        BudgetStage(store, Decider(compiled)).process(_forwarded(store))
        assert store.budgets() == budgets
        assert _decisions(store) == decisions


def test_a_record_the_customer_stage_did_not_write_is_dead_lettered(tmp_path: Path) -> None:
    with StateStore.open(tmp_path) as store:
        stage = BudgetStage(store, Decider(load(ROOT / "policies")))
        stage.process(
            [
                Record(BUDGET_TOPIC, 0, 0, None, b"{}", (("goodwill.kind", b"request"),)),
                Record(BUDGET_TOPIC, 0, 1, None, b"{}", ()),
            ]
        )
        assert stage.tally.deadlettered == {"not_a_budget_record": 2}


def _records(*events: dict[str, object]) -> list[Record]:
    return [Record("in", 0, i, None, json.dumps(e).encode()) for i, e in enumerate(events)]


def test_the_stage_knows_the_reps_of_every_instance_and_only_as_of_its_own_log(
    tmp_path: Path,
) -> None:
    compiled = load(ROOT / "policies")
    credit = sample("remedy.requested", remedy="credit", amount="20.00")  # rep-1, team budget
    assigned = sample("rep.assigned")  # rep-1 in team-a
    with (
        StateStore.open(tmp_path / "a") as a,
        StateStore.open(tmp_path / "b") as b,
        StateStore.open(tmp_path / "stage") as ledger,
    ):
        # Two instances: the customer's events on one, the rep's on the other.
        Processor(a, Decider(compiled), split=True).process(
            _records(sample("order.placed"), sample("contact.opened"), credit)
        )
        Processor(b, Decider(compiled), split=True).process(_records(assigned))
        stage = BudgetStage(ledger, Decider(compiled))
        stage.process(_forwarded(b) + _forwarded(a))  # the rep's record came first
        (decision,) = [
            d
            for d in map(json.loads, ledger.outputs("decision.made"))
            if d["data"]["caused_by"] == credit["event_id"]
        ]
        assert [(c["budget"], c["owner"]) for c in decision["data"]["charges"]] == [
            ("goodwill", "team-a")
        ]

    with StateStore.open(tmp_path / "both") as store:
        # One store for both stages, the rep assigned after the request: as in one process,
        # the stage does not know the rep yet, although the customer stage has folded it.
        customers = Processor(store, Decider(compiled), split=True)
        customers.process(
            _records(sample("order.placed"), sample("contact.opened"), credit, assigned)
        )
        BudgetStage(store, Decider(compiled)).process(_forwarded(store))
        (decision,) = [
            d
            for d in map(json.loads, store.outputs("decision.made"))
            if d["data"]["caused_by"] == credit["event_id"]
        ]
        assert decision["data"]["charges"] == []
        assert "no team on record for rep 'rep-1'" in decision["data"]["routes"][0]["reason"]
