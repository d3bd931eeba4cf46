"""`goodwill simulate`: the cost of a policy change on real history, before it ships."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

from engine.compile import load
from engine.simulate import compare, report

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop-day.jsonl"


def test_the_same_policies_change_nothing() -> None:
    current = load(ROOT / "policies")
    result = compare(current, current, EXAMPLE)
    assert result.events == 601 and result.changes == []
    assert report(result, 5)[0] == "601 events decided by both policy sets; 0 decisions differ"


def test_a_lower_expedite_limit_shows_which_decisions_change_and_the_spend(tmp_path: Path) -> None:
    candidate = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", candidate)
    f = candidate / "expedite-within-budget.yaml"
    f.write_text(f.read_text().replace("event.amount <= 50\n", "event.amount <= 20\n"))
    result = compare(load(ROOT / "policies"), load(candidate), EXAMPLE)
    assert result.changes, "expedites between $20 and $50 are no longer authorized"
    assert all(c.cause_type == "remedy.requested" for c in result.changes)
    assert all("expedite-within-budget" in c.before + c.after for c in result.changes)
    # with less spent early, a later request fits the budget it overflowed before
    assert any(
        c.before.startswith("routed") and c.after.startswith("authorized [expedite")
        for c in result.changes
    )
    before = result.baseline.charged["expedite"]
    after = result.candidate.charged["expedite"]
    assert after < before
    lines = report(result, 1)
    assert any(
        line.startswith("  charged expedite") and f"({after - before:+})" in line for line in lines
    )
    assert lines[-1].startswith(f"  … {len(result.changes) - 1} more")
    assert result.baseline.granted["expedite"] - result.candidate.granted["expedite"] > Decimal(0)
