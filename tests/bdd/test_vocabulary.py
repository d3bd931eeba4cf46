"""The step vocabulary: documented once (`engine.steps`), bound once (`tests.bdd.steps`),
unambiguous, all of it used, and `features/STEPS.md` in sync with it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pytest_bdd import parsers
from pytest_bdd.parser import FeatureParser

from engine import specs
from engine.steps import PHRASES, TYPES, VOCABULARY, Kind, Phrase, text
from tests.bdd import steps

REPO = specs.REPO
PARSERS = {
    p.key: parsers.cfparse(p.pattern, extra_types=TYPES, case_sensitive=True) for p in VOCABULARY
}


def _compatible(a: Kind, b: Kind) -> bool:
    return a == b or ("step" in (a, b) and "then" not in (a, b))


def test_every_phrase_has_exactly_one_step_definition() -> None:
    assert set(PHRASES) == steps.BOUND
    defined = [name for name in vars(steps) if name.startswith("pytestbdd_stepdef_")]
    assert len(defined) == len(VOCABULARY), "a step defined outside the vocabulary"


@pytest.mark.parametrize("phrase", VOCABULARY, ids=lambda p: p.key)
def test_each_example_reads_as_its_phrase_and_no_other(phrase: Phrase) -> None:
    assert PARSERS[phrase.key].is_matching(phrase.example), phrase.example
    others = [
        p.key
        for p in VOCABULARY
        if p is not phrase and _compatible(p.kind, phrase.kind)
        if PARSERS[p.key].is_matching(phrase.example)
    ]
    assert others == [], f"{phrase.example!r} also reads as {others}"


def _written_steps() -> list[tuple[str, str]]:
    """(step type, text) of every step in features/, outlines expanded."""
    out = []
    for path in sorted((REPO / "features").glob("*.feature")):
        feature = FeatureParser(str(path.parent), path.name).parse()
        for template in feature.scenarios.values():
            contexts = [c for ex in template.examples for c in ex.as_contexts()] or [{}]
            for context in contexts:
                out += [(s.type, s.name) for s in template.render(context).steps]
    return out


def test_every_phrase_is_used_by_some_feature_and_every_step_is_a_phrase() -> None:
    written = _written_steps()
    unused = [
        p.key
        for p in VOCABULARY
        if not any(_compatible(p.kind, t) and PARSERS[p.key].is_matching(s) for t, s in written)
    ]
    assert unused == [], "phrases no feature uses"
    unknown = [s for t, s in written if not any(PARSERS[k].is_matching(s) for k in PARSERS)]
    assert unknown == []


def test_steps_md_is_generated_from_the_vocabulary() -> None:
    path = REPO / "features" / "STEPS.md"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    assert current == text(markdown=True), (
        "features/STEPS.md is out of date: run `goodwill steps --markdown > features/STEPS.md`"
    )


@pytest.mark.parametrize(
    ("written", "amount"),
    [("$2,400", Decimal("2400")), ("$180.50", Decimal("180.50")), ("$0.01", Decimal("0.01")),
     ("$1,999.99", Decimal("1999.99")), ("$2400", Decimal("2400"))],
)  # fmt: skip
def test_money_is_read_exactly(written: str, amount: Decimal) -> None:
    parsed = PARSERS["ask-credit"].parse_arguments(f"ana asks to credit the customer {written}")
    assert parsed["amount"] == amount
    assert isinstance(parsed["amount"], Decimal)


@pytest.mark.parametrize("written", ["$2,40", "$180.5", "2400", "$1.999", "$ 30", "$30.001"])
def test_money_that_is_not_money_is_no_step(written: str) -> None:
    assert not PARSERS["ask-credit"].is_matching(f"ana asks to credit the customer {written}")


@pytest.mark.parametrize(
    ("written", "span"),
    [("3 days", timedelta(days=3)), ("1 day", timedelta(days=1)),
     ("7 days and 1 second", timedelta(days=7, seconds=1)),
     ("47 hours, 59 minutes and 59 seconds", timedelta(hours=48) - timedelta(seconds=1))],
)  # fmt: skip
def test_durations(written: str, span: timedelta) -> None:
    verb = "passes" if written.startswith("1 ") else "pass"
    assert PARSERS["time"].parse_arguments(f"{written} {verb}")["span"] == span


def _run_features(tmp_path: Path, feature: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "replace-broken-part.feature").write_text(feature)
    env = {**os.environ, specs.FEATURES_ENV: str(tmp_path / "features")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(specs.SUITE)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_an_unknown_step_fails_naming_the_closest_known_steps(tmp_path: Path) -> None:
    done = _run_features(
        tmp_path,
        "@policy:replace-broken-part\nFeature: typo\n  Scenario: a typo\n"
        "    Given it is Monday 2 November 2026, 09:00\n"
        '    And a customer "c-7" who spent $2,400 with us in 14 orders\n',
    )
    out = done.stdout
    assert done.returncode == 1, out
    assert 'no step of the vocabulary reads Given "a customer "c-7" who spent' in out, out
    assert "replace-broken-part.feature:5" in out
    closest = out.split("closest known steps:")[1]
    first = closest.strip().splitlines()[0]
    assert first == PHRASES["customer-spent"].keyword + " " + (
        'a customer "<customer>" who has spent <money> with us over <orders> orders'
    )
    assert "features/STEPS.md" in out


def test_a_wrong_weekday_is_caught(tmp_path: Path) -> None:
    done = _run_features(
        tmp_path,
        "@policy:replace-broken-part\nFeature: dates\n  Scenario: a wrong day\n"
        "    Given it is Tuesday 2 November 2026, 09:00\n",
    )
    assert done.returncode == 1
    assert "2 November 2026 is a Monday, not a Tuesday" in done.stdout, done.stdout


def test_we_is_a_decision_no_rep_acts_on(tmp_path: Path) -> None:
    # `we` passed whatever the decision's rep: a step read "we may ..." of ana's decision.
    done = _run_features(
        tmp_path,
        "@policy:replace-broken-part\nFeature: we\n  Scenario: a rep acts\n"
        "    Given it is Monday 2 November 2026, 09:00\n"
        '    And a customer "c-7"\n'
        '    And the customer placed order "A-1" for $180 today\n'
        '    And the customer contacts ana about "defect" on order "A-1"\n'
        '    When the customer reports the part from order "A-1" as broken\n'
        "    Then we may send a free replacement worth up to $180\n",
    )
    assert done.returncode == 1, done.stdout
    assert "the decision is for rep ana (say `ana`)" in done.stdout, done.stdout


def test_a_reason_is_read_from_the_route_the_routing_step_matched(tmp_path: Path) -> None:
    # Two routes: the review desk (an outlier) and the team lead (over the budget). "The
    # reason given" passed with the team lead's reason under "routed to review-desk".
    done = _run_features(
        tmp_path,
        "@policy:replace-broken-part\nFeature: two routes\n  Scenario: an outlier over budget\n"
        "    Given it is Monday 2 November 2026, 09:00\n"
        '    And rep "ana" works in team "north", led by "lee"\n'
        '    And a customer "c-7" who has spent $2,400 with us over 14 orders\n'
        '    And the customer placed order "A-1" for $180 today\n'
        '    And the customer contacts ana about "late_delivery" on order "A-1"\n'
        "    And the customer has received 3 remedies in the last 90 days\n"
        '    And rep "ana" has $10 left in her expedite budget this month\n'
        '    When ana asks to upgrade shipping on order "A-1" for $40\n'
        '    Then it is routed to team lead "lee"\n'
        '    And the reason given is "over the expedite budget"\n'
        '    And it is routed to "review-desk"\n'
        '    And the reason given is "over the expedite budget"\n',
    )
    assert done.returncode == 1, done.stdout
    # the first reason step passes (the team lead's route); the second fails
    assert 'step: And the reason given is "over the expedite budget" (line 15)' in done.stdout
