"""What one event produced: the decision's canonical bytes and the effects the engine folds.

`finish` turns the decision a `Decider` assembled (`Draft`) into an `Outcome`; the state
store, the processing loop and a rebuild read outcomes without deciding anything, so the
shape of what a decision leaves behind is its own module, apart from how it is decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Literal, NamedTuple

from pydantic_core import to_json

from engine.draft import Doc, Draft
from engine.facts import Scalar
from events.codec import decode, encode
from events.models import SCHEMA_VERSION, DecisionData, Envelope


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


def finish(
    event: Envelope, fact: Mapping[str, Scalar], decision_id: str, draft: Draft, policy_set: str
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
        "policy_set": policy_set,
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
            [ChargeEffect(c["budget"], c["owner"], c["period"], c["amount"]) for c in draft.charges]
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
