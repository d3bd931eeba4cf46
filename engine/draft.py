"""The decision while it is assembled: each fired policy's part as plain data (`Draft`),
and the half-made decision the customer stage hands to the budget stage (`Partial`).

Its own module because two stages and two processes share it: the `Decider` fills it,
`engine.outcome` serializes it, and in split mode it crosses the `goodwill.budget` topic
as JSON (`Partial.dump`/`load`), whose shape changes with the parts and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic_core import to_json

from engine.facts import Scalar
from engine.policy import Rule
from events.codec import decode, encode
from events.models import Envelope

Doc = dict[str, Any]
"""A part of the decision as plain data, in the shape of its model in `events.models`."""


@dataclass
class Draft:
    """The decision being assembled across the policies that apply to one event.

    Its parts are plain dicts shaped like `Grant`, `Charge`, `Obligation`, `Route`,
    `PolicyRef` and `Why`, keys in model order; `engine.outcome.finish` serializes them
    as they are.
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

    def add(self, part: Draft) -> None:
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
    parts: dict[str, Draft]
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
            part = Draft(**{name: found.get(name, []) for name in cls._PARTS})
            for g in part.grants:  # compared by amount when grants are merged
                g["up_to"] = Decimal(g["up_to"])
            for o in part.obligations:  # folded as times
                o["due_at"] = datetime.fromisoformat(o["due_at"])
            parts[policy] = part
        return cls(decode(doc["event"].encode()), doc["fact"], doc["decision_id"], parts)
