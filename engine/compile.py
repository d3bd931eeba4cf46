"""Validated policy set → canonical, content-hashed durable_rules rulesets, loaded in a host.

One ruleset per policy; rule i of the policy has `pri` i, and facts are posted as
events, so durable_rules itself picks "the first matching rule of the policy".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.expr import All, Cond, Leaf
from engine.facts import fact_key
from engine.policy import Policy, PolicySet, load_policy_set
from engine.rules import RuleHost

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


@dataclass(frozen=True)
class CompiledSet:
    """A policy-set version ready to decide: the validated set, its rulesets, its host."""

    policy_set: PolicySet
    rulesets: dict[str, dict[str, Any]]
    rulesets_hash: str
    host: RuleHost

    @property
    def hash(self) -> str:
        return self.policy_set.hash

    def canonical_json(self) -> str:
        return json.dumps(self.rulesets, sort_keys=True, separators=(",", ":"))


def compile_set(policy_set: PolicySet) -> CompiledSet:
    rulesets = {p.id: policy_json(p) for p in policy_set.policies}
    blob = json.dumps(rulesets, sort_keys=True, separators=(",", ":")).encode()
    return CompiledSet(
        policy_set, rulesets, hashlib.sha256(blob).hexdigest()[:16], RuleHost(rulesets)
    )


def load(directory: Path) -> CompiledSet:
    """Parse, validate and compile `directory`; raises `PolicyError` when refused."""
    return compile_set(load_policy_set(directory))
