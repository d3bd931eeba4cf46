"""One scenario's world: a fresh state store, the real Processor and compiled policy set, and
the scenario's clock.

Steps change the world only by appending events through the Processor, exactly as the
service does, and read back what the engine emitted: the world never decides anything
itself. It also knows enough about the scenario (name, step, line) to say, when a Then step
fails, what was expected and what the decision actually was.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import pytest

from engine.compile import CompiledSet
from engine.decide import Decider
from engine.service import Processor
from engine.specs import FEATURES_ENV, POLICIES_ENV, REPO
from engine.state import StateStore
from events.codec import DecodeError, decode
from events.log import Record
from events.models import DecisionData, Envelope


def policies_dir() -> Path:
    return Path(os.environ.get(POLICIES_ENV) or REPO / "policies")


def features_dir() -> Path:
    return Path(os.environ.get(FEATURES_ENV) or REPO / "features")


def dollars(amount: Decimal | str) -> str:
    return f"${Decimal(amount):,.2f}"


def span_text(span: timedelta) -> str:
    hours, rest = divmod(int(span.total_seconds()), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "hour"), (minutes, "minute"), (seconds, "second")]
    said = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " and ".join(said) or "no time"


@dataclass(frozen=True)
class Output:
    """Something the engine emitted, and the step that made it happen."""

    phase: str  # given, when
    step: str
    event: Envelope


class World:
    def __init__(self, compiled: CompiledSet, directory: Path) -> None:
        self.policy_set = compiled.policy_set
        self.currency = compiled.policy_set.currency
        self.store = StateStore.open(directory / "state.db")
        self.processor = Processor(self.store, Decider(compiled), self._collect)
        self.now: datetime | None = None
        self.scenario = "this scenario"
        self.phase = "given"
        self.step = ""
        self.failed = False
        self.steps: dict[str, int] = {}  # steps run, by type
        self.outputs: list[Output] = []
        self.block: list[Output] = []  # what the current run of When steps produced
        self.customer: str | None = None
        self.open_case: dict[str, str] = {}  # customer → case
        self.case_rep: dict[str, str] = {}
        self.case_order: dict[str, str] = {}
        self.skus: dict[str, str] = {}  # order → the part it holds
        self.promised: dict[str, datetime] = {}  # order → delivery promised by
        # The routes the last routing step of a decision matched (its decision id, them):
        # later reason and handover steps read those, not any route of the decision.
        self.focus: tuple[str, list[Any]] | None = None
        self._events = itertools.count(1)
        self._names = itertools.count(1)
        self.sent = 0
        self.processor.activate()

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ scenario and steps

    def begin(self, phase: str, text: str, line: int) -> None:
        if phase == "when" and self.phase != "when":
            self.block = []
        self.phase, self.step = phase, f"{text} (line {line})"
        self.steps[phase] = self.steps.get(phase, 0) + 1

    def _collect(self, event: Envelope) -> None:
        out = Output(self.phase, self.step, event)
        self.outputs.append(out)
        if self.phase == "when":
            self.block.append(out)

    def record(self) -> list[dict[str, Any]]:
        """The decisions on the When steps' events, with the rules that made them, for the gate."""
        return [
            {
                "phase": o.phase,
                "step": o.step,
                "cause_type": o.event.data.cause_type,
                "outcome": o.event.data.outcome,
                "fired": [[p.id, p.rule] for p in o.event.data.policies],
            }
            for o in self.outputs
            if o.phase == "when" and isinstance(o.event.data, DecisionData)
        ]

    # ------------------------------------------------------------------ appending events

    def clock(self) -> datetime:
        if self.now is None:
            self.fail_step("the scenario has no time yet: start with e.g. "
                           "`Given it is Monday 2 November 2026, 09:00`")  # fmt: skip
        return self.now

    def who(self) -> str:
        if self.customer is None:
            self.fail_step('no customer yet: name one, e.g. `Given a customer "c-1"`')
        return self.customer

    def name(self, prefix: str) -> str:
        return f"{prefix}-{next(self._names)}"

    def send(
        self, type_: str, data: dict[str, Any], customer: str | None, at: datetime | None = None
    ) -> Envelope:
        """Append one event through the Processor; returns the decision it got."""
        if self.phase == "then":
            self.fail_step("a Then step cannot append events; move it to Given or When")
        offset = next(self._events)
        self.sent += 1
        raw = {
            "type": type_,
            "event_id": f"e-{offset}",
            "occurred_at": (at or self.clock()).isoformat(),
            "schema_version": 1,
            "source": "specs",
            "data": data,
            **({"customer_id": customer} if customer else {}),
        }
        value = json.dumps(raw).encode()
        try:
            decode(value)
        except DecodeError as err:  # a bug in a step, never in a feature
            msg = f"step built an invalid {type_}: {err.reason}: {err.detail}"
            raise AssertionError(msg) from None
        key = customer.encode() if customer else None
        self.processor.process([Record("specs", 0, offset, key, value)])
        return next(
            o.event
            for o in reversed(self.outputs)
            if isinstance(o.event.data, DecisionData) and o.event.data.caused_by == raw["event_id"]
        )

    # ------------------------------------------------------------------ reading decisions

    def decision(self) -> Envelope:
        """The decision on the latest event of the When steps (time passing decides nothing)."""
        for o in reversed(self.block):
            if isinstance(o.event.data, DecisionData) and o.event.data.cause_type != "clock.tick":
                return o.event
        self.fail_step("no When step has appended an event whose decision this could check")

    def emitted(self, type_: str) -> list[Envelope]:
        """Outputs of that type the When steps produced."""
        return [o.event for o in self.block if o.event.type == type_]

    @staticmethod
    def rules(d: DecisionData) -> str:
        fired = [f"{p.id}/{p.rule}" for p in d.policies]
        if not fired:
            return "no policy applied"
        return ("rule " if len(fired) == 1 else "rules ") + ", ".join(fired)

    @staticmethod
    def grants(d: DecisionData) -> str:
        return ", ".join(f"{g.remedy} up to {dollars(g.up_to)}" for g in d.grants) or "nothing"

    @staticmethod
    def routes(d: DecisionData) -> str:
        return "; ".join(
            f"{r.to}{f' ({r.person})' if r.person else ''}: {r.reason}" for r in d.routes
        )

    def describe(self, envelope: Envelope) -> str:
        d = envelope.data
        assert isinstance(d, DecisionData)
        lines = [f"the decision on {d.cause_type} from step {self._step_of(envelope)}:"]
        lines.append(f"  outcome    {d.outcome}" + (f" (rep {d.rep_id})" if d.rep_id else ""))
        lines.append(f"  may give   {self.grants(d)}")
        for r in d.routes:
            context = ", ".join(f"{k}={v}" for k, v in r.context.items())
            lines.append(f"  routed to  {r.to}{f' ({r.person})' if r.person else ''}: {r.reason}")
            if context:
                lines.append(f"             handover: {context}")
        for c in d.charges:
            lines.append(
                f"  charged    {dollars(c.amount)} to the {c.budget} budget of {c.owner} "
                f"({c.period}), {dollars(c.remaining)} left"
            )
        for o in d.obligations:
            lines.append(f"  follow-up  due {span_text(o.due_at - envelope.occurred_at)} later")
        lines += [f'  says       "{s}"' for s in d.say]
        lines.append(f"  made by    {self.rules(d)}")
        for why in d.why:
            for c in why.clauses:
                seen = ", ".join(f"{k}={v}" for k, v in c.values.items())
                lines.append(f"  why        {why.policy}/{why.rule}: {c.text} [{seen}]")
        return "\n".join(lines)

    def _step_of(self, envelope: Envelope) -> str:
        return next((o.step for o in self.outputs if o.event is envelope), "?")

    # ------------------------------------------------------------------ failing for people

    def fail_step(self, message: str) -> NoReturn:
        self.failed = True
        pytest.fail(f"{self.scenario}\n  step: {self.step}\n  {message}", pytrace=False)

    def fail(self, expected: str, but: str, envelope: Envelope | None = None) -> NoReturn:
        detail = f"\n\n{self.describe(envelope)}" if envelope is not None else ""
        self.fail_step(f"expected {expected},\n  but {but}{detail}")
