"""durable_rules and the reference evaluator agree on every policy in policies/.

Facts are drawn around the literals each policy compares with (the boundaries are where
a matcher and a reference most easily disagree), plus arbitrary values of each type.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compile import CompiledSet, load
from engine.expr import evaluate, leaves
from engine.facts import ZERO, Field, Scalar, fact_key, vocabulary
from engine.policy import Policy

POLICIES = Path(__file__).resolve().parent.parent / "policies"
COMPILED: CompiledSet = load(POLICIES)


def values_for(field: Field, policy: Policy) -> st.SearchStrategy[Scalar]:
    seen = [
        leaf.value
        for rule in policy.rules
        for leaf in leaves(rule.when)
        if leaf.path == field.path and leaf.value is not None
    ]
    if field.type == "bool":
        return st.booleans()
    if field.type == "text":
        return st.sampled_from([*map(str, seen), ""]) | st.text(max_size=8)
    near = [v + d for v in seen if isinstance(v, int) for d in (-1, 0, 1)]
    whole = st.integers(min_value=0, max_value=10**9)
    return st.sampled_from(near) | whole if near else whole


def fact_strategy(policy: Policy) -> st.SearchStrategy[dict[str, Scalar]]:
    vocab = vocabulary(policy.on, policy.budget is not None)
    return st.fixed_dictionaries({p: values_for(vocab[p], policy) for p in policy.reads})


def durable(policy: Policy, fact: dict[str, Scalar]) -> str | None:
    """The rule durable_rules fires for `policy`, through the ruleset the decider posts to:
    its own (a policy with a budget), or the shared one, whose other reads are zero."""
    if policy.budget is not None:
        return COMPILED.host.match(policy.id, {fact_key(p): v for p, v in fact.items()})
    (shared,) = (s for s in COMPILED.shared[policy.on] if policy in s.policies)
    vocab = vocabulary(policy.on, False)
    lean = {fact_key(p): fact[p] if p in fact else ZERO[vocab[p].type] for p in shared.reads}
    mine = [
        int(name.rpartition("/")[2])
        for name in COMPILED.host.match_all(shared.name, lean)
        if name.rpartition("/")[0] == policy.id
    ]
    return policy.rules[min(mine)].name if mine else None


def reference(policy: Policy, fact: dict[str, Scalar]) -> str | None:
    return next((r.name for r in policy.rules if evaluate(r.when, fact)), None)


@pytest.mark.parametrize("policy", COMPILED.policy_set.policies, ids=lambda p: p.id)
def test_durable_rules_matches_the_reference_evaluator(policy: Policy) -> None:
    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(fact_strategy(policy))
    def agree(fact: dict[str, Scalar]) -> None:
        assert durable(policy, fact) == reference(policy, fact)

    agree()


def test_the_strategies_reach_every_rule() -> None:
    """Without this, agreement could hold only because every draw matched nothing."""
    reached: set[tuple[str, str]] = set()

    def explore(policy: Policy) -> None:
        @settings(max_examples=300, deadline=None, derandomize=True)
        @given(fact_strategy(policy))
        def visit(fact: dict[str, Scalar]) -> None:
            name = reference(policy, fact)
            if name is not None:
                reached.add((policy.id, name))

        visit()

    for policy in COMPILED.policy_set.policies:
        explore(policy)
    every = {(p.id, r.name) for p in COMPILED.policy_set.policies for r in p.rules}
    assert every - reached == set()
