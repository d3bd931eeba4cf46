"""Validated policy set → canonical, content-hashed durable_rules rulesets, loaded in a host.

Policies without a budget are packed, per event type and in id order, into shared rulesets
(`<event type>#<n>`) whose rules are named `<policy id>/<rule index>`; each shared ruleset
holds at most `MAX_CONDITIONS` (64) distinct conditions, so durable's error 303 (one message
matching more than 64 distinct conditions) cannot happen, and its lean fact at most
`MAX_READS` properties. A shared ruleset is posted once per event as a *fact*: durable fires
every matching rule, and the decider keeps the lowest rule index per policy.

A policy with a budget keeps a ruleset of its own (named by its id, rule i has `pri` i),
posted as an *event* so durable fires the first matching rule: its `budget.*` facts differ
per policy and depend on the charges of the policies before it on the same event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.expr import All, Cond, Leaf, leaves
from engine.facts import fact_key
from engine.load import load_policy_set
from engine.policy import Policy, PolicySet
from engine.policy_schema import MAX_CONDITIONS
from engine.rules import RuleHost

# Properties of one shared lean fact; durable refuses more than 252 (see engine.rules).
MAX_READS = 200

_OP = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


def condition_json(cond: Cond) -> dict[str, Any]:
    """One condition in durable_rules' JSON form (`{"$lt": {"key": 5}}`, `{"$and": [...]}`)."""
    if isinstance(cond, Leaf):
        right: Any = {"$m": fact_key(cond.other)} if cond.other is not None else cond.value
        if cond.op == "==":
            return {fact_key(cond.path): right}
        return {_OP[cond.op]: {fact_key(cond.path): right}}
    key = "$and" if isinstance(cond, All) else "$or"
    return {key: [condition_json(c) for c in cond.items]}


def policy_json(policy: Policy) -> dict[str, Any]:
    return {
        rule.name: {"all": [{"m": condition_json(rule.when)}], "pri": rule.index}
        for rule in policy.rules
    }


def conditions(policy: Policy) -> frozenset[tuple[Any, ...]]:
    """The distinct conditions of a policy as durable tells them apart (1 is not True)."""
    return frozenset(
        (leaf.op, leaf.path, type(leaf.value).__name__, leaf.value, leaf.other)
        for rule in policy.rules
        for leaf in leaves(rule.when)
    )


@dataclass(frozen=True)
class Shared:
    """One shared ruleset: the policies packed into it and the fact paths they read."""

    name: str
    policies: tuple[Policy, ...]
    reads: tuple[str, ...]


def pack(event_type: str, policies: tuple[Policy, ...]) -> list[Shared]:
    """Budget-free `policies` of one event type, in order, into as few shared rulesets as
    keep each within MAX_CONDITIONS distinct conditions and MAX_READS read paths."""
    packs: list[Shared] = []
    group: list[Policy] = []
    conds: set[tuple[Any, ...]] = set()
    reads: dict[str, None] = {}

    def close() -> None:
        if group:
            name = f"{event_type}#{len(packs)}"
            packs.append(Shared(name, tuple(group), tuple(reads)))

    for policy in policies:
        mine = conditions(policy)
        if group and (
            len(conds | mine) > MAX_CONDITIONS or len(reads.keys() | policy.reads) > MAX_READS
        ):
            close()
            group, conds, reads = [], set(), {}
        group.append(policy)
        conds |= mine
        reads.update(dict.fromkeys(policy.reads))
    close()
    return packs


def shared_json(shared: Shared) -> dict[str, Any]:
    return {
        f"{policy.id}/{rule.index}": {"all": [{"m": condition_json(rule.when)}], "pri": rule.index}
        for policy in shared.policies
        for rule in policy.rules
    }


@dataclass(frozen=True)
class CompiledSet:
    """A policy-set version ready to decide: the validated set, its rulesets, its host.

    `shared` maps an event type to its shared rulesets (posted as facts); a policy with a
    budget has its own ruleset, named by its id (posted as an event).
    """

    policy_set: PolicySet
    rulesets: dict[str, dict[str, Any]]
    rulesets_hash: str
    host: RuleHost
    shared: dict[str, tuple[Shared, ...]]

    @property
    def hash(self) -> str:
        return self.policy_set.hash


def compile_set(policy_set: PolicySet) -> CompiledSet:
    rulesets = {p.id: policy_json(p) for p in policy_set.policies if p.budget is not None}
    shared: dict[str, tuple[Shared, ...]] = {}
    for event_type in sorted({p.on for p in policy_set.policies}):
        free = tuple(p for p in policy_set.on(event_type) if p.budget is None)
        shared[event_type] = tuple(pack(event_type, free))
        rulesets.update({s.name: shared_json(s) for s in shared[event_type]})
    facts = [s.name for packs in shared.values() for s in packs]
    blob = json.dumps(rulesets, sort_keys=True, separators=(",", ":")).encode()
    return CompiledSet(
        policy_set,
        rulesets,
        hashlib.sha256(blob).hexdigest()[:16],
        RuleHost(rulesets, facts=facts),
        shared,
    )


def load(directory: Path) -> CompiledSet:
    """Parse, validate and compile `directory`; raises `PolicyError` when refused."""
    return compile_set(load_policy_set(directory))
