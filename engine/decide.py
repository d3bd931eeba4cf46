"""The decision: a pure function of (event, state as of that event, compiled policy set).

No clock, no I/O, no randomness: time is the event's `occurred_at`, state is a read-only
view, policies are visited in id order. The same inputs give byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, Literal, NamedTuple, Protocol

from pydantic_core import to_json

from engine.compile import CompiledSet
from engine.expr import All, Cond, Leaf, amount_cents, amount_paths, evaluate, leaves, paths
from engine.facts import (
    BUDGET_FIELDS,
    STATE_FIELDS,
    ZERO,
    Field,
    Scalar,
    event_fields,
    fact_key,
    from_minor,
    to_minor,
)
from engine.policy import Budget, Policy, RouteSpec, Rule
from events.codec import decode, encode
from events.models import (
    CATALOG,
    SCHEMA_VERSION,
    DecisionData,
    Envelope,
    FollowupOverdue,
    PolicyRef,
    RootcauseAlert,
    Route,
    make_output,
)

ALERT_WINDOW = timedelta(days=7)
_FIRST_MOMENT = datetime.min.replace(tzinfo=UTC)
_LAST_MOMENT = datetime.max.replace(tzinfo=UTC)
_SAY_LIMIT = 4000  # events.models.Text
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")


class StateView(Protocol):
    """What a decision may read besides the event's own fact (see `engine.state`)."""

    def budget_usage(self, budget: str, owner: str, period: str) -> tuple[int | None, int]: ...

    def last_alert(self, sku: str) -> datetime | None: ...

    def sku_reports(self, sku: str, since: datetime, until: datetime) -> tuple[int, list[str]]: ...


class ChargeEffect(NamedTuple):
    budget: str
    owner: str
    period: str
    amount: Decimal


class ObligationEffect(NamedTuple):
    obligation_id: str
    case_id: str
    due_at: datetime


class Effects(NamedTuple):
    """What the engine folds and counts of a decision (see `StateStore.apply_decision`).

    Tuples, not frozen dataclasses, for this and `Outcome`: built once per event, and a
    frozen dataclass's `__init__` cost ~4 us of the pair (measured), a tuple's ~0.5.
    """

    decision_id: str
    outcome: str
    rep_id: str | None
    policies: tuple[str, ...]
    routes: tuple[tuple[str, str], ...]  # (to, reason)
    charges: tuple[ChargeEffect, ...]
    obligations: tuple[ObligationEffect, ...]

    @classmethod
    def of(cls, data: DecisionData) -> Effects:
        return cls(
            decision_id=data.decision_id,
            outcome=data.outcome,
            rep_id=data.rep_id,
            policies=tuple(p.id for p in data.policies),
            routes=tuple((r.to, r.reason) for r in data.routes),
            charges=tuple(
                ChargeEffect(c.budget, c.owner, c.period, c.amount) for c in data.charges
            ),
            obligations=tuple(
                ObligationEffect(o.obligation_id, o.case_id, o.due_at) for o in data.obligations
            ),
        )


class Outcome(NamedTuple):
    """Everything one input event produced: its decision and any alerts.

    `raw` is the decision's canonical bytes, as published; `effects` is what the engine
    folds. The validated model (`decision`, `data`) is built from `raw` when asked for
    only: validating every decision cost about a third of a decision, and the engine's own
    values need no checking (tests check the bytes decode to the same model and back).
    """

    raw: bytes
    effects: Effects
    occurred_at: datetime
    customer_id: str | None
    alerts: tuple[Envelope, ...] = ()

    @classmethod
    def recorded(cls, decision: Envelope, alerts: tuple[Envelope, ...] = ()) -> Outcome:
        """The outcome of a decision read back from the log."""
        assert isinstance(decision.data, DecisionData)
        effects = Effects.of(decision.data)
        return cls(encode(decision), effects, decision.occurred_at, decision.customer_id, alerts)

    @property
    def decision(self) -> Envelope:
        """The decision as a validated model (decoded from `raw` on every call)."""
        return decode(self.raw, outputs=True)

    @property
    def data(self) -> DecisionData:
        data = self.decision.data
        assert isinstance(data, DecisionData)
        return data


_NO_STAGED: tuple[dict[str, Policy], dict[str, None]] = ({}, {})
_ENVELOPE_PATHS = ("event.type", "event.customer_id", "event.source")


@cache
def _payload_fields(event_type: str) -> tuple[tuple[str, str, Scalar], ...]:
    """(path, payload attribute, zero value) for each payload field of `event_fact`."""
    fields: dict[str, Field] = event_fields(event_type)
    return tuple(
        (path, path[6:], ZERO[f.type]) for path, f in fields.items() if path not in _ENVELOPE_PATHS
    )


def event_fact(event: Envelope) -> dict[str, Scalar]:
    """The `event.` part of a fact: scalar payload fields, money in cents, None as zero."""
    payload = event.data
    fact: dict[str, Scalar] = {
        "event.type": event.type,
        "event.customer_id": event.customer_id or "",
        "event.source": event.source,
    }
    # Measured hot (once per event): the field list is worked out once per event type.
    for path, name, zero in _payload_fields(event.type):
        raw = getattr(payload, name, None)
        if raw is None:
            fact[path] = zero
        elif isinstance(raw, Decimal):
            fact[path] = to_minor(raw)
        else:
            fact[path] = raw
    return fact


def period_key(period: str, at: datetime) -> str:
    # Formatted by hand: the same text as strftime("%Y-%m-%d") / ("%Y-%m"), at a third of
    # the cost, and budget policies ask for it once or twice per event. Periods are UTC's:
    # one moment falls in one period however its producer wrote the offset.
    if at.utcoffset():
        at = at.astimezone(UTC)
    if period == "day":
        return f"{at.year}-{at.month:02d}-{at.day:02d}"
    if period == "week":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{at.year}-{at.month:02d}"


def period_kind(key: str) -> str:
    """ "month", "week" or "day": the kind of a period key `period_key` writes (2026-11,
    2026-W47, 2026-11-23), as `budget.allocated` carries it."""
    return "week" if "W" in key else "day" if len(key) > 8 else "month"


def due_time(at: datetime, within: timedelta) -> datetime:
    """`at + within`; a promise that would fall past year 9999 is due at the last moment
    there is, so that a valid event near the end of the calendar is still decided."""
    if at.year < 9989:  # a follow-up is at most ten years (engine.policy)
        return at + within
    try:
        due = at + within
        due.astimezone(UTC)  # within the calendar in UTC too
    except OverflowError:
        return _LAST_MOMENT
    return due


def money_text(cents: int, currency: str) -> str:
    amount = from_minor(cents)
    return f"${amount:,}" if currency == "USD" else f"{amount:,} {currency}"


Doc = dict[str, Any]
"""A part of the decision as plain data, in the shape of its model in `events.models`."""


@dataclass
class _Draft:
    """The decision being assembled across the policies that apply to one event.

    Its parts are plain dicts shaped like `Grant`, `Charge`, `Obligation`, `Route`,
    `PolicyRef` and `Why`, keys in model order; `_finish` serializes them as they are.
    """

    grants: list[Doc] = field(default_factory=list)
    charges: list[Doc] = field(default_factory=list)
    obligations: list[Doc] = field(default_factory=list)
    routes: list[Doc] = field(default_factory=list)
    say: list[str] = field(default_factory=list)
    # Words of rules that only promise a follow-up: said after what is done now.
    later: list[str] = field(default_factory=list)
    fired: list[Doc] = field(default_factory=list)
    why: list[Doc] = field(default_factory=list)
    alerts: list[Envelope] = field(default_factory=list)
    pending: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add(self, part: _Draft) -> None:
        """Append one policy's part (it charges nothing: no budget, no pending)."""
        self.grants += part.grants
        self.charges += part.charges
        self.obligations += part.obligations
        self.routes += part.routes
        self.say += part.say
        self.later += part.later
        self.fired += part.fired
        self.why += part.why
        self.alerts += part.alerts


@dataclass
class Partial:
    """A decision with the policies that read only the customer's state applied
    (`Decider.decide_customer`):
    the event, its fact, the decision id and each fired policy's part, by policy id."""

    event: Envelope
    fact: dict[str, Scalar]
    decision_id: str
    parts: dict[str, _Draft]
    # Staged policies without a budget as matched where `parts` were made; None once
    # sent to the budget stage, which matches them again on its own counts.
    matched: dict[str, Rule | None] | None = None

    _PARTS = ("grants", "charges", "obligations", "routes", "say", "later", "fired", "why")

    def dump(self) -> bytes:
        """As JSON, for the budget stage (`load` reads it back to the same bytes of the
        decision). Alerts are not in it: the customer stage emits them."""
        return to_json(
            {
                "decision_id": self.decision_id,
                "event": encode(self.event).decode(),
                "fact": self.fact,
                "parts": {
                    policy: {name: getattr(part, name) for name in self._PARTS}
                    for policy, part in self.parts.items()
                },
            }
        )

    @classmethod
    def load(cls, raw: bytes) -> Partial:
        doc = json.loads(raw)
        parts = {}
        for policy, found in doc["parts"].items():
            # `later` is absent from a part an older build dumped
            part = _Draft(**{name: found.get(name, []) for name in cls._PARTS})
            for g in part.grants:  # compared by amount when grants are merged
                g["up_to"] = Decimal(g["up_to"])
            for o in part.obligations:  # folded as times
                o["due_at"] = datetime.fromisoformat(o["due_at"])
            parts[policy] = part
        return cls(decode(doc["event"].encode()), doc["fact"], doc["decision_id"], parts)


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
            return self._finish(event, state, self._decision_id(event), _Draft())
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
        parts: dict[str, _Draft] = {}
        matched: dict[str, Rule | None] = {}
        for policy in self.policy_set.on(event.type):
            found = first.get(policy.id)
            if policy.staged:
                if policy.budget is None:
                    matched[policy.id] = found  # on this store's counts; see decide_budget
            elif found is not None:
                part = parts[policy.id] = _Draft()
                self._apply(policy, found, fact, None, event, decision_id, view, part)
        return Partial(event, fact, decision_id, parts, matched)

    def decide_budget(self, partial: Partial, view: StateView) -> Outcome:
        """Apply the staged policies (`Policy.staged`) against the state `view` holds of
        every customer (budgets' ledgers, defect reports, alert windows), and assemble the
        decision, every policy's part in policy order."""
        event, fact, decision_id = partial.event, partial.fact, partial.decision_id
        draft = _Draft()
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
        return self._finish(event, fact, decision_id, draft)

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
        draft: _Draft,
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
        draft: _Draft,
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
            "clauses": self._clauses(policy, rule, fact),
        }
        if rule.index:  # first match wins: say what kept each earlier rule from matching
            why["passed_over"] = [
                {"rule": earlier.name, "clauses": self._clauses(policy, earlier, fact, False)}
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
            shown = sorted({p for g in rule.grants for p in amount_paths(g.up_to)})
            nothing = RouteSpec(
                "team-lead",
                None,
                f"{policy.id}/{rule.name} authorizes {limits}, which comes to"
                f" {money_text(0, self.currency)} here",
                tuple(shown),
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
        if rule.alert is not None:
            self._alert(policy, rule.alert, fact, event, view, draft)
        if say:
            # a rule that only promises a follow-up speaks after those that act now
            acts = rule.grants or rule.charges or rule.route or rule.alert
            (draft.later if rule.follow_ups and not acts else draft.say).append(
                self._fill(say, fact)
            )

    def _charge(
        self, name: str, cents: int, fact: dict[str, Scalar], event: Envelope, draft: _Draft
    ) -> str | None:
        """Charge within budget, or route the overflow; returns the overflow words if routed."""
        budget = self.policy_set.budgets[name]
        owner = str(fact["rep.id"] if budget.scope == "rep" else fact["rep.team"])
        period = period_key(budget.period, event.occurred_at)
        # A rule charges only its policy's budget (engine.policy refuses others), whose
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
            "context": {p: self._shown(p, fact) for p in spec.context},
        }

    def _alert(
        self,
        policy: Policy,
        spec: RouteSpec,
        fact: dict[str, Scalar],
        event: Envelope,
        view: StateView,
        draft: _Draft,
    ) -> None:
        sku = str(fact["sku.id"])
        if not sku:
            return
        last = view.last_alert(sku)
        if last is not None and event.occurred_at - last < ALERT_WINDOW:
            return  # one alert per window
        try:
            since = event.occurred_at - ALERT_WINDOW
        except OverflowError:  # in the first week of year 1, the window starts with it
            since = _FIRST_MOMENT
        count, orders = view.sku_reports(sku, since, event.occurred_at)
        alert = RootcauseAlert(
            sku=sku,
            reports=count,
            threshold=_threshold(policy),
            window_start=since,
            window_end=event.occurred_at,
            notify=spec.to,
            orders=tuple(sorted(set(orders))),
            reason=spec.reason,
            context={p: self._shown(p, fact) for p in spec.context},
        )
        event_id = f"alert:{sku}:{event.event_id}"
        draft.alerts.append(
            make_output("rootcause.alert", event_id, event.occurred_at, alert, event.customer_id)
        )

    def _clauses(
        self, policy: Policy, rule: Rule, fact: dict[str, Scalar], shown: bool | None = None
    ) -> list[Doc]:
        """Each clause of `rule`'s condition with its result and the values it read; only
        those whose result is `shown`, when given (False: what kept a rule from matching)."""
        parts = self._parts.get((policy.id, rule.name))
        if parts is None:
            when = rule.when
            conds: tuple[Cond, ...] = when.items if isinstance(when, All) else (when,)
            parts = tuple((clause_text(c), c, tuple(sorted(paths(c)))) for c in conds)
            self._parts[(policy.id, rule.name)] = parts
        out = []
        for text, cond, cond_paths in parts:
            result = evaluate(cond, fact)
            if shown is None or result is shown:
                values = {p: self._shown(p, fact) for p in cond_paths}
                out.append({"text": text, "result": result, "values": values})
        return out

    def _shown(self, path: str, fact: Mapping[str, Scalar]) -> str | int | bool | None:
        value = fact.get(path)
        if _is_money(path) and isinstance(value, int):
            return str(from_minor(value))
        return value

    def _fill(self, text: str, fact: Mapping[str, Scalar]) -> str:
        def one(m: re.Match[str]) -> str:
            path, value = m.group(1), fact.get(m.group(1))
            if _is_money(path) and isinstance(value, int):
                return money_text(value, self.currency)
            return str(value)

        filled = _PLACEHOLDER.sub(one, text)
        # The contract's limit for words (`Text`); decisions are not validated one by one.
        return filled if len(filled) <= _SAY_LIMIT else filled[: _SAY_LIMIT - 1] + "…"

    def _finish(
        self, event: Envelope, fact: Mapping[str, Scalar], decision_id: str, draft: _Draft
    ) -> Outcome:
        outcome: Literal["authorized", "routed", "noted"] = (
            "routed" if draft.routes else "authorized" if draft.grants else "noted"
        )
        rep_id = str(fact.get("rep.id") or "") or None
        data = {
            "decision_id": decision_id,
            "caused_by": event.event_id,
            "cause_type": event.type,
            "rep_id": rep_id,
            "case_id": str(fact.get("case.id") or "") or None,
            "order_id": str(fact.get("order.id") or "") or None,
            "outcome": outcome,
            "grants": _merged(draft.grants),
            "charges": draft.charges,
            "obligations": draft.obligations,
            "routes": draft.routes,
            "say": draft.say + draft.later if draft.later else draft.say,
            "policies": draft.fired,
            "policy_set": self.policy_set.hash,
            "why": draft.why,
        }
        # The envelope as make_output builds it, fields in model order: pydantic's
        # serializer writes the same bytes as `encode` of the validated model.
        raw = to_json(
            {
                "type": "decision.made",
                "data": data,
                "event_id": decision_id,
                "occurred_at": event.occurred_at,
                "customer_id": event.customer_id,
                "schema_version": SCHEMA_VERSION,
                "source": "goodwill",
            }
        )
        # Positional, and no generator for an empty part: most decisions charge nothing,
        # oblige nothing and route nowhere.
        effects = Effects(
            decision_id,
            outcome,
            rep_id,
            tuple([ref["id"] for ref in draft.fired]) if draft.fired else (),
            tuple([(r["to"], r["reason"]) for r in draft.routes]) if draft.routes else (),
            tuple(
                [
                    ChargeEffect(c["budget"], c["owner"], c["period"], c["amount"])
                    for c in draft.charges
                ]
            )
            if draft.charges
            else (),
            tuple(
                [
                    ObligationEffect(o["obligation_id"], o["case_id"], o["due_at"])
                    for o in draft.obligations
                ]
            )
            if draft.obligations
            else (),
        )
        alerts = tuple(draft.alerts) if draft.alerts else ()
        return Outcome(raw, effects, event.occurred_at, event.customer_id, alerts)


def _merged(grants: list[Doc]) -> list[Doc]:
    """One grant per remedy: where several policies authorize the same remedy, the rep
    may give up to the largest amount (in the order remedies were first authorized)."""
    if len(grants) < 2:
        return grants
    best: dict[str, Doc] = {}
    for g in grants:
        if g["remedy"] not in best or g["up_to"] > best[g["remedy"]]["up_to"]:
            best[g["remedy"]] = g
    return list(best.values())


def clause_text(cond: Cond, inside_and: bool = False) -> str:
    """The words of a condition as its `why` shows them: read as a condition, they test
    what `cond` tests (an `or` inside an `and` keeps its parentheses)."""
    if isinstance(cond, Leaf):
        return cond.text
    conj = isinstance(cond, All)
    texts = list(dict.fromkeys(clause_text(c, conj) for c in cond.items))
    if len(texts) == 1:
        return texts[0]
    text = (" and " if conj else " or ").join(texts)
    return f"({text})" if inside_and and not conj else text


_MONEY_PATHS = frozenset(
    path
    for fields in (STATE_FIELDS, BUDGET_FIELDS, *(event_fields(t) for t in CATALOG))
    for path, f in fields.items()
    if f.type == "money"
)


def _is_money(path: str) -> bool:
    return path in _MONEY_PATHS


def _threshold(policy: Policy) -> int:
    """The smallest reports count an alerting rule compares with, shown in the alert."""
    values = [
        leaf.value
        for rule in policy.rules
        if rule.alert is not None
        for leaf in leaves(rule.when)
        if leaf.path == "sku.reports_7d" and isinstance(leaf.value, int)
    ]
    return min(values, default=0)


def promising_policy(obligation_id: str) -> str | None:
    """The policy whose rule made a follow-up: obligation ids are
    `<decision id>:<policy id>:<index>` (`Decider._apply`)."""
    parts = obligation_id.split(":")
    return parts[-2] if len(parts) >= 3 else None


def overdue(
    due: list[tuple[str, str, str | None, str | None, datetime]],
    watermark: datetime,
    leads: Mapping[str, str],
) -> list[Envelope]:
    """`followup.overdue` for each obligation past the watermark, in (due_at, id) order."""
    out = []
    for obligation_id, case_id, customer_id, rep_id, due_at in due:
        lead = leads.get(rep_id or "")
        route = Route(
            to="team-lead",
            person=lead,
            reason="follow-up is overdue",
            context={
                "case_id": case_id,
                "customer_id": customer_id,
                "rep_id": rep_id,
                "due_at": due_at.isoformat(),
                "policy": promising_policy(obligation_id),
            },
        )
        data = FollowupOverdue(
            obligation_id=obligation_id,
            case_id=case_id,
            rep_id=rep_id,
            due_at=due_at,
            watermark=watermark,
            escalate_to=route,
        )
        out.append(
            make_output(
                "followup.overdue", f"overdue:{obligation_id}", watermark, data, customer_id
            )
        )
    return out
