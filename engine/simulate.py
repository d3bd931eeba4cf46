"""What a policy change would have done on real history, before it ships.

Both policy sets decide the same events from scratch, each in its own throwaway data
directory, and the two decision streams are compared event by event.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from engine.compile import CompiledSet
from engine.embedded import run_embedded
from engine.tally import Tally
from events.models import DecisionData, Envelope


@dataclass
class Totals:
    """What one policy set did over the history."""

    outcomes: Counter[str] = field(default_factory=Counter)
    granted: dict[str, Decimal] = field(default_factory=dict)  # remedy → sum of up_to
    charged: dict[str, Decimal] = field(default_factory=dict)  # budget → approved spend
    routed_to: Counter[str] = field(default_factory=Counter)

    def add(self, d: DecisionData) -> None:
        self.outcomes[d.outcome] += 1
        for g in d.grants:
            self.granted[g.remedy] = self.granted.get(g.remedy, Decimal(0)) + g.up_to
        for c in d.charges:
            self.charged[c.budget] = self.charged.get(c.budget, Decimal(0)) + c.amount
        self.routed_to.update(r.to for r in d.routes)


@dataclass(frozen=True)
class Change:
    caused_by: str
    cause_type: str
    before: str
    after: str


@dataclass
class Comparison:
    baseline: Totals
    candidate: Totals
    changes: list[Change]
    events: int


def _decisions(
    compiled: CompiledSet, source: Path, progress: Callable[[Tally], None] | None = None
) -> dict[str, DecisionData]:
    found: dict[str, DecisionData] = {}

    def keep(event: Envelope) -> None:
        if isinstance(event.data, DecisionData):
            found[event.data.caused_by] = event.data

    service_log = logging.getLogger("goodwill.service")
    level = service_log.level
    service_log.setLevel(logging.ERROR)  # dead letters were already reported by `run`
    try:
        with tempfile.TemporaryDirectory(prefix="goodwill-simulate-") as scratch:
            run_embedded(compiled, Path(scratch), source, 1000, keep, progress=progress)
    finally:
        service_log.setLevel(level)
    return found


def _brief(d: DecisionData) -> str:
    grants = ", ".join(f"{g.remedy} ≤ {g.up_to}" for g in d.grants)
    routes = ", ".join(r.to for r in d.routes)
    rules = ", ".join(f"{p.id}/{p.rule}" for p in d.policies)
    return f"{d.outcome} [{grants or '-'}] → {routes or '-'} ({rules or 'no policy'})"


def compare(
    baseline: CompiledSet,
    candidate: CompiledSet,
    source: Path,
    progress: Callable[[str], Callable[[Tally], None]] | None = None,
) -> Comparison:
    """Decide `source` with each set; `progress(label)` gives each run's progress callback."""
    before = _decisions(baseline, source, progress("current: ") if progress else None)
    after = _decisions(candidate, source, progress("candidate: ") if progress else None)
    result = Comparison(Totals(), Totals(), [], len(before))
    for cause in before:  # input order: dicts keep insertion order
        old, new = before[cause], after[cause]
        result.baseline.add(old)
        result.candidate.add(new)
        if _brief(old) != _brief(new):
            result.changes.append(Change(cause, old.cause_type, _brief(old), _brief(new)))
    return result


def report(c: Comparison, limit: int) -> list[str]:
    differ = "1 decision differs" if len(c.changes) == 1 else f"{len(c.changes)} decisions differ"
    lines = [f"{c.events} events decided by both policy sets; {differ}"]
    for name in ("authorized", "routed", "noted"):
        a, b = c.baseline.outcomes[name], c.candidate.outcomes[name]
        lines.append(f"  {name:<10} {a:>6} → {b:<6} ({b - a:+d})")
    for label, attr in (("granted up to", "granted"), ("charged", "charged")):
        old: dict[str, Decimal] = getattr(c.baseline, attr)
        new: dict[str, Decimal] = getattr(c.candidate, attr)
        for key in sorted(set(old) | set(new)):
            was, now = old.get(key, Decimal(0)), new.get(key, Decimal(0))
            lines.append(f"  {label} {key:<12} {was:>10} → {now:<10} ({now - was:+})")
    for to in sorted(set(c.baseline.routed_to) | set(c.candidate.routed_to)):
        a, b = c.baseline.routed_to[to], c.candidate.routed_to[to]
        lines.append(f"  routed to {to:<14} {a:>6} → {b:<6} ({b - a:+d})")
    for change in c.changes[:limit]:
        lines.append(f"  {change.caused_by} {change.cause_type}")
        lines.append(f"      before  {change.before}")
        lines.append(f"      after   {change.after}")
    if len(c.changes) > limit:
        lines.append(f"  … {len(c.changes) - limit} more (use --show N)")
    return lines
