"""The model of a policy set: policies, their rules and what a rule grants, charges, routes
and says, the budgets they charge, and the set they form with its content hash. Frozen and
typed; `engine.load` builds them from files it has validated, and what decides, compiles or
reports reads these types and nothing of YAML, so a change to how a policy is written is not a
change here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from engine.amounts import Amount
from engine.expr import Cond, leaves

SHARED_FACT = "sku.reports_7d"  # besides budget.*, the fact other customers' events change


@dataclass(frozen=True)
class GrantSpec:
    remedy: str
    up_to: Amount
    text: str


@dataclass(frozen=True)
class ChargeSpec:
    budget: str
    amount: Amount
    text: str


@dataclass(frozen=True)
class RouteSpec:
    to: str
    to_path: str | None  # a text field naming the target, e.g. event.to_team
    reason: str
    context: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    name: str
    index: int
    when: Cond
    when_text: str
    line: int
    grants: tuple[GrantSpec, ...] = ()
    charges: tuple[ChargeSpec, ...] = ()
    follow_ups: tuple[timedelta, ...] = ()
    route: RouteSpec | None = None
    alert: RouteSpec | None = None
    say: str | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    version: int
    owner: str
    principle: str
    summary: str
    on: str
    budget: str | None
    rules: tuple[Rule, ...]
    path: str
    hash: str

    @cached_property  # a frozen dataclass keeps it in __dict__; asked once per event
    def staged(self) -> bool:
        """Whether it reads state that spans customers: a budget's ledger, or the defect
        reports of a SKU (`sku.reports_7d`, in a condition, words or context; an alert
        counts them too). With --budget-stage kafka the budget stage, which sees all of
        it, applies such a policy."""
        if self.budget is not None:
            return True
        for rule in self.rules:
            shown = [p for spec in (rule.route, rule.alert) if spec for p in spec.context]
            if rule.alert is not None or SHARED_FACT in shown:
                return True
            if rule.say and "{" + SHARED_FACT + "}" in rule.say:
                return True
        return SHARED_FACT in self.reads

    @cached_property
    def reads(self) -> tuple[str, ...]:
        """Fact paths any rule of this policy may read, sorted (for lean facts)."""
        found: set[str] = set()
        for rule in self.rules:
            for leaf in leaves(rule.when):
                found.add(leaf.path)
                if leaf.other:
                    found.add(leaf.other)
        return tuple(sorted(found))


@dataclass(frozen=True)
class Budget:
    name: str
    scope: Literal["rep", "team"]
    period: Literal["day", "week", "month"]
    amount: int  # cents allocated per period unless a budget.allocated event says otherwise
    overflow: RouteSpec
    say: str


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]  # sorted by id: evaluation order is never dict order
    budgets: dict[str, Budget]
    currency: str
    hash: str
    files: tuple[tuple[str, str, int, str], ...]  # (path, policy id, version, hash)
    # (file name, text) of every file read, budgets.yaml included: what `engine.archive`
    # keeps of a set a data directory activated
    texts: tuple[tuple[str, str], ...] = ()

    def on(self, event_type: str) -> tuple[Policy, ...]:
        return self._by_type.get(event_type, ())

    def allocated(self, budget: str, stored: int | None) -> int:
        """Cents allocated to a budget's period: the `budget.allocated` on record, else the
        budget's own amount (0 for a budget this set does not define)."""
        if stored is not None:
            return stored
        known = self.budgets.get(budget)
        return known.amount if known is not None else 0

    @property
    def _by_type(self) -> dict[str, tuple[Policy, ...]]:
        cached: dict[str, tuple[Policy, ...]] | None = self.__dict__.get("_by_type_cache")
        if cached is None:
            grouped: dict[str, list[Policy]] = {}
            for p in self.policies:
                grouped.setdefault(p.on, []).append(p)
            cached = {k: tuple(v) for k, v in grouped.items()}
            object.__setattr__(self, "_by_type_cache", cached)
        return cached


def digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
