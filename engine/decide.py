"""The decision: a pure function of (event, state as of that event, compiled policy set).

No clock, no I/O, no randomness: time is the event's `occurred_at`, state is a read-only
view, policies are visited in id order. The same inputs give byte-identical outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from engine.alerts import alert
from engine.amounts import amount_cents, amount_paths
from engine.compile import CompiledSet
from engine.draft import Doc, Draft, Partial
from engine.expr import Cond
from engine.facts import Scalar, event_fact, fact_key, from_minor
from engine.outcome import Outcome, finish
from engine.periods import due_time, period_key
from engine.policy import Budget, Policy, RouteSpec, Rule
from engine.say import fill, money_text, value_shown
from engine.why import clauses
from events.models import Envelope, PolicyRef


class StateView(Protocol):
    """What a decision may read besides the event's own fact (see `engine.state`)."""

    def budget_usage(self, budget: str, owner: str, period: str) -> tuple[int | None, int]: ...

    def last_alert(self, sku: str) -> datetime | None: ...

    def sku_reports(self, sku: str, since: datetime, until: datetime) -> tuple[int, list[str]]: ...


_NO_STAGED: tuple[dict[str, Policy], dict[str, None]] = ({}, {})


class Decider:
    """Applies one compiled policy set; cheap to call once per event."""

    def __init__(self, compiled: CompiledSet) -> None:
        self.compiled = compiled
        self.policy_set = compiled.policy_set
        self.currency = compiled.policy_set.currency
        self._keys = {
            p.id: tuple((path, fact_key(path)) for path in p.reads)
            for p in compiled.policy_set.policies
        }
        self._rules = {(p.id, r.name): r for p in compiled.policy_set.policies for r in p.rules}
        # Per event type, its shared rulesets (one post each for all their policies) with
        # the (path, key) pairs of their lean fact; per shared rule name, (policy, rule).
        self._shared = {
            event_type: tuple(
                (s.name, tuple((path, fact_key(path)) for path in s.reads)) for s in packs
            )
            for event_type, packs in compiled.shared.items()
        }
        self._packed = {
            f"{p.id}/{r.index}": (p.id, r)
            for packs in compiled.shared.values()
            for s in packs
            for p in s.policies
            for r in p.rules
        }
        # Per fired rule, filled on first use (a validation error still surfaces every time):
        # its PolicyRef (validated once, then shared as data), and its clauses' (text,
        # condition, paths).
        self._staged = frozenset(p.on for p in compiled.policy_set.policies if p.staged)
        # Per policy without a budget, the shared ruleset it is packed in (for the budget
        # stage, which matches the staged ones again on its own counts).
        self._pack_of = {
            p.id: (ruleset, keys)
            for event_type, packs in compiled.shared.items()
            for (ruleset, keys), s in zip(self._shared[event_type], packs, strict=True)
            for p in s.policies
        }
        # Per event type, its staged policies by id, and every policy id on it in order.
        self._staged_on = {
            event_type: (
                {p.id: p for p in compiled.policy_set.on(event_type) if p.staged},
                dict.fromkeys(p.id for p in compiled.policy_set.on(event_type)),
            )
            for event_type in {p.on for p in compiled.policy_set.policies}
        }
        self._refs: dict[tuple[str, str], Doc] = {}
        self._parts: dict[tuple[str, str], tuple[tuple[str, Cond, tuple[str, ...]], ...]] = {}

    def decide(self, event: Envelope, state: Mapping[str, Scalar], view: StateView) -> Outcome:
        if event.type not in self._staged_on:
            # No policy listens (about half of a shop's events: orders placed, shipped,
            # cases resolved): the decision notes the event, and of the state it reads only
            # what `StateStore.references` gives.
            return finish(event, state, self._decision_id(event), Draft(), self.policy_set.hash)
        return self.decide_budget(self.decide_customer(event, state, view), view)

    def listens(self, event_type: str) -> bool:
        """Whether some policy listens to `event_type`; if none does, `decide` reads only
        `case.id`, `order.id` and `rep.id` of the state (`StateStore.references`)."""
        return event_type in self._staged_on

    def _decision_id(self, event: Envelope) -> str:
        return hashlib.sha256(f"{event.event_id}|{self.policy_set.hash}".encode()).hexdigest()[:32]

    def has_staged_policies(self, event_type: str) -> bool:
        """Whether some policy that reads state spanning customers (`Policy.staged`)
        listens to `event_type`."""
        return event_type in self._staged

    def decide_customer(
        self, event: Envelope, state: Mapping[str, Scalar], view: StateView
    ) -> Partial:
        """Apply the policies that read only this customer's state: everything of the
        decision that does not depend on state spanning customers (see `decide_budget`)."""
        fact: dict[str, Scalar] = {**state, **event_fact(event)}
        decision_id = self._decision_id(event)
        host = self.compiled.host
        # Budget-free policies read no `budget.*` key, the only keys applying a rule changes,
        # so they can all be matched up front: one post per shared ruleset, every matching
        # rule fires, and per policy the lowest rule index wins. `match_all` checks each
        # lean fact for what durable_rules would mismatch (floats, None, out-of-range
        # ints): only the values posted, a fraction of the fact.
        first: dict[str, Rule] = {}
        for ruleset, keys in self._shared.get(event.type, ()):
            lean = {key: fact[path] for path, key in keys}
            for fired in host.match_all(ruleset, lean):
                policy_id, rule = self._packed[fired]
                won = first.get(policy_id)
                if won is None or rule.index < won.index:
                    first[policy_id] = rule
        parts: dict[str, Draft] = {}
        matched: dict[str, Rule | None] = {}
        for policy in self.policy_set.on(event.type):
            found = first.get(policy.id)
            if policy.staged:
                if policy.budget is None:
                    matched[policy.id] = found  # on this store's counts; see decide_budget
            elif found is not None:
                part = parts[policy.id] = Draft()
                self._apply(policy, found, fact, None, event, decision_id, view, part)
        return Partial(event, fact, decision_id, parts, matched)

    def decide_budget(self, partial: Partial, view: StateView) -> Outcome:
        """Apply the staged policies (`Policy.staged`) against the state `view` holds of
        every customer (budgets' ledgers, defect reports, alert windows), and assemble the
        decision, every policy's part in policy order."""
        event, fact, decision_id = partial.event, partial.fact, partial.decision_id
        draft = Draft()
        host = self.compiled.host
        staged, order = self._staged_on.get(event.type, _NO_STAGED)
        parts = partial.parts
        # Policy id order, as one process applies them. The union matters only while the
        # budget stage runs another policy set than the stage that made `partial` (a
        # rolling change): no part is lost, and each fired policy names its own version.
        if not parts.keys() <= order.keys():
            order = dict.fromkeys(sorted(staged.keys() | parts.keys()))
        for policy_id in order:
            part = parts.get(policy_id)
            if part is not None:
                draft.add(part)
                continue
            policy = staged.get(policy_id)
            if policy is None:
                continue  # applied by the customer stage, and it fired no rule
            if policy.budget is None:  # counts defect reports or raises alerts
                if partial.matched is not None:  # one process: matched on this fact already
                    found = partial.matched.get(policy_id)
                else:
                    found = self._match_packed(policy, fact)
                if found is not None:
                    self._apply(policy, found, fact, None, event, decision_id, view, draft)
                continue
            budget = self._budget_fact(policy.budget, fact, event.occurred_at, view, draft)
            lean = {key: fact[path] for path, key in self._keys[policy.id]}
            name = host.match(policy.id, lean)  # checked there: budget values are new
            if name is not None:
                rule = self._rules[(policy.id, name)]
                self._apply(policy, rule, fact, budget, event, decision_id, view, draft)
        return finish(event, fact, decision_id, draft, self.policy_set.hash)

    def _match_packed(self, policy: Policy, fact: Mapping[str, Scalar]) -> Rule | None:
        """The first rule of `policy` (without a budget) that `fact` fires, posting the
        shared ruleset it is packed in: the budget stage, on counts of its own."""
        ruleset, keys = self._pack_of[policy.id]
        lean = {key: fact[path] for path, key in keys}
        won: Rule | None = None
        for fired in self.compiled.host.match_all(ruleset, lean):
            policy_id, rule = self._packed[fired]
            if policy_id == policy.id and (won is None or rule.index < won.index):
                won = rule
        return won

    # ---------------------------------------------------------------- steps

    def _budget_fact(
        self,
        name: str,
        fact: dict[str, Scalar],
        at: datetime,
        view: StateView,
        draft: Draft,
    ) -> Budget:
        """Put the `budget.*` values of budget `name` into `fact`."""
        budget = self.policy_set.budgets[name]
        owner = str(fact["rep.id"] if budget.scope == "rep" else fact["rep.team"])
        period = period_key(budget.period, at)
        stored, charged = view.budget_usage(budget.name, owner, period) if owner else (None, 0)
        allocated = self.policy_set.allocated(name, stored)
        charged += draft.pending.get((budget.name, owner, period), 0)
        fact.update(
            {
                "budget.name": budget.name,
                "budget.owner": owner,
                "budget.period": period,
                "budget.allocated": allocated,
                "budget.charged": charged,
                "budget.remaining": max(0, allocated - charged),
            }
        )
        return budget

    def _apply(
        self,
        policy: Policy,
        rule: Rule,
        fact: dict[str, Scalar],
        budget: Budget | None,
        event: Envelope,
        decision_id: str,
        view: StateView,
        draft: Draft,
    ) -> None:
        ref = self._refs.get((policy.id, rule.name))
        if ref is None:
            ref = PolicyRef(
                id=policy.id, version=policy.version, hash=policy.hash, rule=rule.name
            ).model_dump()
            self._refs[(policy.id, rule.name)] = ref
        draft.fired.append(ref)
        why: Doc = {
            "policy": policy.id,
            "rule": rule.name,
            "clauses": clauses(self._parts, policy, rule, fact),
        }
        if rule.index:  # first match wins: say what kept each earlier rule from matching
            why["passed_over"] = [
                {
                    "rule": earlier.name,
                    "clauses": clauses(self._parts, policy, earlier, fact, False),
                }
                for earlier in policy.rules[: rule.index]
            ]
        draft.why.append(why)
        grants = [
            {"remedy": g.remedy, "up_to": from_minor(cents), "currency": self.currency}
            for g in rule.grants
            if (cents := amount_cents(g.up_to, fact)) > 0
        ]
        say = rule.say
        if rule.grants and not grants and rule.route is None:
            # Every limit came to nothing here (up_to: order.amount of a free order): the
            # words would promise what nobody may give, so a person decides, with the numbers.
            limits = ", ".join(f"{g.remedy} up to {g.text}" for g in rule.grants)
            paths = sorted({p for g in rule.grants for p in amount_paths(g.up_to)})
            nothing = RouteSpec(
                "team-lead",
                None,
                f"{policy.id}/{rule.name} authorizes {limits}, which comes to"
                f" {money_text(0, self.currency)} here",
                tuple(paths),
            )
            draft.routes.append(self._route(nothing, fact))
            say = None
        for spec in rule.charges:
            routed = self._charge(spec.budget, amount_cents(spec.amount, fact), fact, event, draft)
            if routed is not None:
                grants, say = [], routed  # over budget: a person decides, nobody is refused
        draft.grants.extend(grants)
        case_id = str(fact["case.id"])
        for i, within in enumerate(rule.follow_ups):
            if case_id:
                draft.obligations.append(
                    {
                        "kind": "follow_up",
                        "obligation_id": f"{decision_id}:{policy.id}:{i}",
                        "case_id": case_id,
                        "due_at": due_time(event.occurred_at, within),
                    }
                )
        if rule.route is not None:
            draft.routes.append(self._route(rule.route, fact))
        if rule.alert is not None and (held := alert(policy, rule.alert, fact, event, view, draft)):
            why["note"] = held
        if say:
            # a rule that only promises a follow-up speaks after those that act now
            acts = rule.grants or rule.charges or rule.route or rule.alert
            (draft.later if rule.follow_ups and not acts else draft.say).append(
                fill(say, fact, self.currency)
            )

    def _charge(
        self, name: str, cents: int, fact: dict[str, Scalar], event: Envelope, draft: Draft
    ) -> str | None:
        """Charge within budget, or route the overflow; returns the overflow words if routed."""
        budget = self.policy_set.budgets[name]
        owner = str(fact["rep.id"] if budget.scope == "rep" else fact["rep.team"])
        period = period_key(budget.period, event.occurred_at)
        # A rule charges only its policy's budget (engine.policy_file refuses others), whose
        # `budget.*` values `_budget_fact` put in the fact, pending charges included.
        allocated, charged = int(fact["budget.allocated"]), int(fact["budget.charged"])
        remaining = allocated - charged
        if owner and cents <= remaining:
            draft.pending[(name, owner, period)] = (
                draft.pending.get((name, owner, period), 0) + cents
            )
            fact["budget.charged"] = charged + cents
            fact["budget.remaining"] = remaining - cents
            draft.charges.append(
                {
                    "budget": name,
                    "owner": owner,
                    "period": period,
                    "amount": from_minor(cents),
                    "allocated": from_minor(allocated),
                    "remaining": from_minor(remaining - cents),
                    "currency": self.currency,
                }
            )
            return None
        route = self._route(budget.overflow, fact)
        context = {
            "budget": name,
            "owner": owner or None,
            "period": period,
            "requested": str(from_minor(cents)),
            "remaining": str(from_minor(max(0, remaining))),
            "allocated": str(from_minor(allocated)),
        }
        route["context"] = context
        if not owner and not fact["rep.id"]:  # nobody acts: no case, no rep on the event
            route["reason"] = (
                f"no rep acts on this event (it names none and is about no known case),"
                f" so whose {name} budget it is cannot be known"
            )
        elif not owner:  # no rep.assigned for this rep: whose budget it is cannot be known
            route["reason"] = (
                f"no {budget.scope} on record for rep '{fact['rep.id']}' (send rep.assigned), "
                f"so the {name} budget cannot be checked"
            )
        draft.routes.append(route)
        return budget.say

    def _route(self, spec: RouteSpec, fact: dict[str, Scalar]) -> Doc:
        to, reason = spec.to, spec.reason
        if spec.to_path:
            to = str(fact[spec.to_path])
            if not to:  # e.g. the case's rep of a case the log never opened: never nobody
                to, reason = "team-lead", f"{reason} ({spec.to_path} is not on record)"
        person = str(fact["rep.lead"]) or None if to == "team-lead" else None
        return {
            "to": to,
            "person": person,
            "reason": reason,
            "context": {p: value_shown(p, fact) for p in spec.context},
        }
