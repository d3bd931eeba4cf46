"""A decision's `why` reads true.

Each clause's words, read as a condition, test what the clause tested; a rule that is not
its policy's first says what kept each earlier rule from matching (rules are tried in
order, the first match wins); `goodwill explain` shows both.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import Span
from engine.expr import All, evaluate
from engine.expr_parse import parse_condition
from engine.facts import ZERO, Scalar, to_minor, vocabulary
from engine.policy import Policy
from engine.report import explain_text
from engine.why import clause_text
from events.codec import decode, encode
from events.models import DecisionData
from tests.samples import sample
from tests.test_differential import COMPILED, fact_strategy
from tests.test_engine import Engine, _example_run

AT = Span(1, 1, 1)
POLICIES = COMPILED.policy_set.policies


def _read(text: str, event_type: str, vocab: dict[str, Any]) -> Any:
    """`text` as a condition; a rule with no `when` shows "always" (its event type)."""
    text = f"event.type == '{event_type}'" if text == "always" else text
    return parse_condition(text, vocab, event_type, AT)


def _clauses(policy: Policy) -> list[Any]:
    return [
        c
        for rule in policy.rules
        for c in (rule.when.items if isinstance(rule.when, All) else (rule.when,))
    ]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.id)
def test_every_clause_of_every_policy_reads_as_what_it_tests(policy: Policy) -> None:
    vocab = vocabulary(policy.on, policy.budget is not None)
    worded = [(c, _read(clause_text(c), policy.on, vocab)) for c in _clauses(policy)]

    @settings(max_examples=200)
    @given(fact_strategy(policy))
    def agree(fact: dict[str, Scalar]) -> None:
        for cond, read in worded:
            assert evaluate(read, fact) == evaluate(cond, fact), clause_text(cond)

    agree()


@pytest.mark.parametrize(
    "when",
    [
        "not order.known",
        "not (order.amount > 30)",
        "event.remedy == 'credit' and (customer.tier == 'gold' or order.amount > 100)",
        "(customer.tier == 'gold' and order.amount > 100) or not order.known",
        "not (customer.tier in ['gold', 'silver'] or 1 < customer.order_count < 5)",
    ],
)
@settings(max_examples=100)
@given(data=st.data())
def test_negations_and_groupings_keep_their_meaning_in_words(
    when: str, data: st.DataObject
) -> None:
    vocab = vocabulary("remedy.requested", False)
    cond = parse_condition(when, vocab, "remedy.requested", AT)
    read = parse_condition(clause_text(cond), vocab, "remedy.requested", AT)
    fact: dict[str, Scalar] = {p: ZERO[f.type] for p, f in vocab.items()}
    fact["order.known"] = data.draw(st.booleans())
    fact["order.amount"] = data.draw(st.sampled_from([0, 3000, 3001, 10000, 10001]))
    fact["customer.tier"] = data.draw(st.sampled_from(["gold", "silver", "standard"]))
    fact["customer.order_count"] = data.draw(st.integers(0, 6))
    fact["event.remedy"] = data.draw(st.sampled_from(["credit", "refund"]))
    assert evaluate(read, fact) == evaluate(cond, fact)


def _value(path: str, shown: Any, vocab: dict[str, Any]) -> Any:
    if vocab[path].type == "money":
        return to_minor(Decimal(shown))
    return shown


def test_on_the_example_each_shown_clause_gives_its_result_on_the_values_beside_it(
    tmp_path: Path,
) -> None:
    outputs, _ = _example_run(tmp_path, 500)
    checked = {True: 0, False: 0}
    for raw in outputs:
        if not raw.startswith(b'{"type":"decision.made"'):
            continue  # escalations, alerts, dead letters
        event = decode(raw, outputs=True)
        assert isinstance(event.data, DecisionData)
        for why in event.data.why:
            vocab = vocabulary(event.data.cause_type, True)
            shown = [*why.clauses, *(c for passed in why.passed_over for c in passed.clauses)]
            for clause in shown:
                fact: dict[str, Scalar] = {p: ZERO[f.type] for p, f in vocab.items()}
                fact.update({p: _value(p, v, vocab) for p, v in clause.values.items()})
                read = _read(clause.text, event.data.cause_type, vocab)
                assert evaluate(read, fact) is clause.result, (why.policy, clause)
                checked[clause.result] += 1
    assert checked[True] > 100 and checked[False] > 50  # both kinds were read


# A $75 credit for a customer of the standard tier: beyond its authority of $30.
CREDIT_75 = sample(
    "remedy.requested",
    event_id="r1",
    remedy="credit",
    amount="75.00",
    occurred_at="2026-11-02T10:00:00Z",
)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    e = Engine(tmp_path)
    e.feed(
        sample("order.placed", event_id="o1", amount="40.00", occurred_at="2026-11-02T09:00:00Z")
    )
    yield e
    e.store.close()


def test_a_rule_after_the_first_names_each_earlier_rule_and_the_clauses_it_failed(
    engine: Any,
) -> None:
    # policies/goodwill-by-lifetime-value.yaml tries gold, silver, standard (up to 30), gold's
    # and silver's above-authority rules, then above-tier-authority; a $75 credit for a
    # standard-tier customer reaches the last.
    (why,) = [w for w in engine.decision(CREDIT_75).why if w.policy == "goodwill-by-lifetime-value"]
    assert why.rule == "above-tier-authority"
    failed = {p.rule: [(c.text, c.result, c.values) for c in p.clauses] for p in why.passed_over}
    assert failed == {
        "gold": [("customer.tier == 'gold'", False, {"customer.tier": "standard"})],
        "silver": [("customer.tier == 'silver'", False, {"customer.tier": "standard"})],
        "standard": [("event.amount <= 30", False, {"event.amount": "75.00"})],
        "gold-above-authority": [("customer.tier == 'gold'", False, {"customer.tier": "standard"})],
        "silver-above-authority": [
            ("customer.tier == 'silver'", False, {"customer.tier": "standard"})
        ],
    }


def test_a_policys_first_rule_writes_no_passed_over_and_old_decisions_keep_their_bytes(
    engine: Any,
) -> None:
    ask = sample("contact.opened", event_id="k1", occurred_at="2026-11-02T10:00:00Z")
    (decision,) = [o for o in engine.feed(ask) if o.type == "decision.made"]
    raw = encode(decision)
    assert decision.data.why and b"passed_over" not in raw  # a decision from before the field
    assert encode(decode(raw, outputs=True)) == raw


def test_explain_shows_the_earlier_rules_that_did_not_match(engine: Any) -> None:
    (decision,) = [o for o in engine.feed(CREDIT_75) if o.type == "decision.made"]
    text = explain_text(decision.model_dump(mode="json"))
    assert (
        "  rule 'standard', before it, did not match:\n"
        '      ✗ event.amount <= 30   (event.amount = "75.00")'
    ) in text
    assert "rule 'above-tier-authority' matched because" in text
