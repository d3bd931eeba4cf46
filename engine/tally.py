"""The counts of a run: records read, duplicates, dead letters by reason, outcomes,
policies, routes, follow-ups, alerts. Its own module because the run summary
(`engine.report`), the metrics (`engine.metrics`) and every backend read it, and a new
count changes it and them, not the processing loop.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields


@dataclass
class Tally:
    """Counts for the run summary and for metrics."""

    read: int = 0
    duplicates: int = 0
    deadlettered: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    by_policy: Counter[str] = field(default_factory=Counter)
    routes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (to, reason)
    followups_promised: int = 0
    overdue: int = 0
    alerts: int = 0
    recalled: int = 0  # decisions folded as recorded facts during a rebuild
    deferred: int = 0  # split mode: decisions sent to the budget stage to finish
    time_jumps: int = 0  # events that moved event time forward by more than TIME_JUMP_DAYS

    def add(self, other: Tally) -> None:
        """Add `other`'s counts to these."""
        for f in fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, Counter):
                mine.update(getattr(other, f.name))
            else:
                setattr(self, f.name, mine + getattr(other, f.name))
