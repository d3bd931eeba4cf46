"""What a replay of a history found (`engine.verify`), and how it reads to an auditor.

Its own module because what is counted and how a difference is named change with what an
auditor asks, apart from how the history is replayed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mismatch:
    kind: str  # "differs", "missing" (recorded, not made again) or "extra" (the reverse)
    ident: str
    type: str
    cause: str | None
    detail: str


@dataclass
class Verdict:
    """What a replay made of a recorded history."""

    recorded: int = 0  # outputs compared: the log's outputs except activations, by id
    republished: int = 0  # later copies of an output already in the log, each compared too
    activations: int = 0  # recorded
    switches: int = 0  # activations the replay made: its first set, then each change
    reproduced: Counter[str] = field(default_factory=Counter)  # by output type
    mismatches: list[Mismatch] = field(default_factory=list)  # the first `keep`
    counts: Counter[str] = field(default_factory=Counter)  # mismatches by kind
    decided_by: dict[str, int] = field(default_factory=dict)  # policy set → decisions
    lacking: dict[str, int] = field(default_factory=dict)  # sets not given → decisions
    stopped_at: str | None = None  # the event whose set was not given: the replay ends there
    unreplayed: int = 0  # recorded outputs not reached for that reason
    records: int = 0  # input records replayed
    retain_days: int | None = None  # the retention the data directory keeps, kept by the replay
    deadlettered: int = 0
    failed: int = 0  # of those, records the history failed to decide (processing_failed)

    @property
    def ok(self) -> bool:
        return not self.counts and self.stopped_at is None


def difference(key: bytes | None, value: bytes, replayed_key: bytes | None, doc: Any) -> str:
    """Where a recorded output (`key`, `value`) differs from the replay's (`doc`)."""
    if key != replayed_key:
        return f"the key: recorded {_key(key)}, replayed {_key(replayed_key)}"
    return first_difference(json.loads(value), doc)


def first_difference(recorded: Any, replayed: Any, path: str = "") -> str:
    """The first place two JSON documents differ, as a dotted path with both values."""
    if recorded == replayed:
        return f"{path or 'the bytes'}: the same values, written otherwise"
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for name in sorted(set(recorded) | set(replayed)):
            a, b = recorded.get(name, _ABSENT), replayed.get(name, _ABSENT)
            if a != b:
                return first_difference(a, b, f"{path}.{name}" if path else name)
    if isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        for i, (a, b) in enumerate(zip(recorded, replayed, strict=True)):
            if a != b:
                return first_difference(a, b, f"{path}[{i}]")
    return f"{path or 'the document'}: recorded {_shown(recorded)}, replayed {_shown(replayed)}"


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT: Any = _Absent()


def _key(key: bytes | None) -> str:
    return "none" if key is None else json.dumps(key.decode("utf-8", "replace"))


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def report(v: Verdict) -> list[str]:
    """The verdict as lines for a terminal: what was compared, then what did not match."""
    shown = ", ".join(f"{n:,} {kind}" for kind, n in sorted(v.reproduced.items())) or "nothing"
    lines = [
        f"{v.records:,} input records replayed ({v.deadlettered:,} dead-lettered"
        + (f", {v.failed:,} of them as the history did: processing_failed" if v.failed else "")
        + ");"
        f" {v.recorded:,} recorded outputs compared"
        f" ({v.activations} policy_set.activated not compared: they record when a run started;"
        f" the replay activated {v.switches})",
        "decisions by policy set: "
        + (", ".join(f"{h} {n:,}" for h, n in v.decided_by.items()) or "none recorded"),
        f"reproduced byte for byte: {shown}",
    ]
    if v.retain_days is not None:
        lines.insert(
            1,
            f"replayed with the retention the data directory keeps, {v.retain_days}"
            f" day{'s' if v.retain_days != 1 else ''} (--retain-days): an older event is"
            " dead-lettered as late, from the first one on",
        )
    if v.republished:
        lines.insert(
            1,
            f"{v.republished:,} later copies of outputs the log holds twice (a run stopped before"
            " it marked them sent publishes them again), each compared too",
        )
    for h, n in v.lacking.items():
        lines.append(
            f"not verified: {n:,} recorded decisions name policy set {h}, which no --policies"
            " directory given holds; give its directory too (the history's"
            " policy_set.activated outputs list its files and their hashes)"
        )
    if v.stopped_at is not None:
        lines.append(
            f"the replay stopped at the first event that set decided ({v.stopped_at});"
            f" {v.unreplayed:,} recorded outputs after it were not reached"
        )
    if v.counts:
        counts = ", ".join(f"{v.counts[k]:,} {k}" for k in ("differs", "missing", "extra"))
        lines.append(f"NOT reproduced: {counts}")
        for m in v.mismatches:
            cause = f" (cause {m.cause})" if m.cause else ""
            lines.append(f"  {m.kind:<8} {m.type} {m.ident}{cause}: {m.detail}")
        if sum(v.counts.values()) > len(v.mismatches):
            lines.append(f"  … {sum(v.counts.values()) - len(v.mismatches):,} more (use --show N)")
        if v.counts["extra"]:
            lines.append(
                "  an extra output is one the record does not hold: the decision of an input"
                " the history never read, an output a stopped run left unpublished (the next"
                " run publishes it), or one lost from the log"
            )
    elif v.ok:
        lines.append("verified: every recorded output was made again, byte for byte")
    return lines
