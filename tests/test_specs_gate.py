"""The spec gate (`goodwill check --specs`) and its bars:

1. deleting a scenario that alone shows a rule deciding fails the gate, naming the rule;
2. changing a policy's limit without its feature fails the feature suite, naming the
   scenario, the amount expected and the amount decided;
3. every policy in policies/ has a feature whose scenarios show each of its rules deciding
   and not deciding.

The feature suite runs in subprocesses here (as `goodwill check --specs` runs it in its own
process): pytest-bdd binds scenarios at import time, once per process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine import specs
from engine.load import load_policy_set

REPO = specs.REPO
GOODWILL = Path(sys.executable).with_name("goodwill")
_HEADER = re.compile(r"^\s*(?:Scenario|Scenario Outline|Scenario Template|Example):\s*(.*)$")


def _goodwill(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(GOODWILL), *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def _suite(**env: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(specs.SUITE)]
    full = {**os.environ, **{k: str(v) for k, v in env.items()}}
    return subprocess.run(cmd, cwd=REPO, env=full, capture_output=True, text=True, timeout=300)


def delete_scenario(feature: Path, name: str) -> None:
    """Remove one scenario (its tags, steps and examples) from a feature file."""
    rows = feature.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, row in enumerate(rows) if (m := _HEADER.match(row)) and m[1] == name)
    end = next((j for j in range(start + 1, len(rows)) if _HEADER.match(rows[j])), len(rows))
    while rows[end - 1].lstrip().startswith("@") or not rows[end - 1].strip():
        end -= 1  # the next scenario's tags and the blank line before them stay
    while start > 0 and rows[start - 1].lstrip().startswith("@"):
        start -= 1
    feature.write_text("".join(rows[:start] + rows[end:]), encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the whole feature suite on a copy of features/, with its records."""
    root = tmp_path_factory.mktemp("specs")
    shutil.copytree(REPO / "features", root / "features")
    records = root / "records.json"
    done = _suite(
        GOODWILL_FEATURES=root / "features",
        GOODWILL_POLICIES=REPO / "policies",
        GOODWILL_SPEC_RECORDS=records,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"features": root / "features", "path": records, "records": specs.load_records(records)}


def _sole(records_path: Path) -> dict[tuple[str, str], str]:
    """(policy, rule) → the one scenario of its feature showing it deciding, where only one does."""
    out = {}
    for pid, rules in specs.coverage(records_path).items():
        for rule, scenarios in rules.items():
            if len(scenarios) == 1:
                out[(pid, rule)] = next(iter(scenarios))
    return out


# ---------------------------------------------------------------------- bar 3


def test_every_policy_has_a_feature_covering_every_rule(run: dict[str, Any]) -> None:
    policy_set = load_policy_set(REPO / "policies")
    features = specs.read_features(run["features"])
    assert {f.policies for f in features} == {(p.id,) for p in policy_set.policies}
    assert specs.static_gaps(policy_set, features) == []
    assert specs.coverage_gaps(policy_set, features, run["records"]) == []
    covered = specs.coverage(run["path"])
    for policy in policy_set.policies:
        assert set(covered[policy.id]) == {r.name for r in policy.rules}, policy.id


def test_goodwill_check_specs_passes_and_keeps_the_run_for_the_handbook() -> None:
    started = time.time()
    done = _goodwill("check", "--specs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "specs ok: 10 features" in done.stdout
    rules = sum(len(p.rules) for p in load_policy_set(REPO / "policies").policies)
    assert f"every one of {rules} rules shown deciding and not deciding" in done.stdout
    last = REPO / ".goodwill"
    for name in ("cucumber", "meta", "records"):
        assert (last / f"last-run.{name}.json").stat().st_mtime >= started - 1, name
    rules = specs.rules_by_scenario(last / "last-run.records.json")
    assert (
        "unusual-history"
        in rules["replace-broken-part"][
            "A customer with three remedies in 90 days is looked at by the team lead"
        ]
    )


def test_a_partial_run_leaves_the_last_whole_run_alone(tmp_path: Path) -> None:
    kept = REPO / ".goodwill" / "last-run.cucumber.json"
    before = kept.stat().st_mtime if kept.exists() else None
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "fifth"]
    done = subprocess.run([*cmd, str(specs.SUITE)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert (kept.stat().st_mtime if kept.exists() else None) == before


# ---------------------------------------------------------------------- bar 1


def test_without_its_only_scenario_a_rule_fails_the_gate(run: dict[str, Any]) -> None:
    """Every scenario that alone shows a rule deciding, left out one at a time."""
    policy_set = load_policy_set(REPO / "policies")
    features = specs.read_features(run["features"])
    sole = _sole(run["path"])
    assert sole, "no rule is shown by a single scenario: nothing to delete"
    for (pid, rule), scenario in sole.items():
        kept = [
            r for r in run["records"] if not (pid in r["policies"] and r["scenario"] == scenario)
        ]
        gaps = specs.coverage_gaps(policy_set, features, kept)
        said = [g.render() for g in gaps if f"rule '{rule}' of {pid}" in g.message]
        assert any("no scenario shows" in s and "deciding" in s for s in said), (pid, rule)


def test_without_a_scenario_where_it_does_not_apply_a_rule_fails_the_gate(
    run: dict[str, Any],
) -> None:
    """For every rule with a condition, the scenario runs (outline rows too) where it does not
    decide, left out."""
    policy_set = load_policy_set(REPO / "policies")
    features = specs.read_features(run["features"])
    checked = 0
    for policy in policy_set.policies:
        for rule in policy.rules:
            if rule.index == 0 and rule.when_text == "always":
                continue  # decides every event of its type: nothing to leave out
            kept = [
                r
                for r in run["records"]
                if policy.id not in r["policies"]
                or any(d["phase"] == "when" and [policy.id, rule.name] in d["fired"]
                       for d in r["decisions"])
            ]  # fmt: skip
            said = "\n".join(g.message for g in specs.coverage_gaps(policy_set, features, kept))
            wanted = f"no scenario shows rule '{rule.name}' of {policy.id} not applying"
            assert wanted in said, (policy.id, rule.name)
            checked += 1
    assert checked >= 10


def test_deleting_sole_scenarios_from_the_features_fails_goodwill_check_specs(
    run: dict[str, Any], tmp_path: Path
) -> None:
    features = tmp_path / "features"
    shutil.copytree(REPO / "features", features)
    sole = _sole(run["path"])
    for (pid, _), scenario in sorted(sole.items()):
        if any(_HEADER.match(r) and scenario in r for r in (features / f"{pid}.feature").open()):
            delete_scenario(features / f"{pid}.feature", scenario)
    done = _goodwill("check", "--specs", "--features", features)
    assert done.returncode == 1, done.stdout + done.stderr
    for pid, rule in sole:
        line = next(
            row
            for row in done.stdout.splitlines()
            if f"no scenario shows rule '{rule}' of {pid}" in row
        )
        assert re.match(rf"^\S*features/{pid}\.feature:2: ", line), line
        assert f"policies/{pid}.yaml:" in line
    assert done.stdout.rstrip().endswith("problem(s))")


def test_delete_scenario_removes_exactly_one_scenario(tmp_path: Path) -> None:
    path = tmp_path / "x.feature"
    shutil.copy(REPO / "features" / "replace-broken-part.feature", path)
    before = specs.read_features(tmp_path)[0].scenarios
    delete_scenario(path, "An order placed exactly a year ago is still replaced")
    after = specs.read_features(tmp_path)[0].scenarios
    assert set(before) - set(after) == {"An order placed exactly a year ago is still replaced"}
    assert len(after) == len(before) - 1


def test_the_gate_names_a_missing_or_mistagged_feature(run: dict[str, Any], tmp_path: Path) -> None:
    shutil.copytree(run["features"], tmp_path / "f")
    (tmp_path / "f" / "warm-handoff.feature").unlink()
    text = (tmp_path / "f" / "follow-through.feature").read_text()
    (tmp_path / "f" / "follow-through.feature").write_text(
        text.replace("@policy:follow-through", "@policy:follow-thru")
    )
    gaps = specs.static_gaps(
        load_policy_set(REPO / "policies"), specs.read_features(tmp_path / "f")
    )
    said = "\n".join(g.render() for g in gaps)
    assert "policies/warm-handoff.yaml:1: policy warm-handoff has no feature" in said
    assert "follow-through.feature:2: @policy:follow-thru names no policy" in said
    assert "did you mean 'follow-through'?" in said


# ---------------------------------------------------------------------- bar 2


@pytest.mark.parametrize(
    ("policy", "old", "new", "scenario", "expected", "actual"),
    [
        (
            "replace-broken-part",
            "up_to: 20",
            "up_to: 25",
            "A customer with three remedies in 90 days is looked at by the team lead",
            "expected ana may give a credit of up to $20.00",
            "the decision authorized: credit up to $25.00",
        ),
        (
            "goodwill-by-lifetime-value",
            "customer.tier == 'gold' and event.amount <= 150",
            "customer.tier == 'gold' and event.amount <= 200",
            "Above its authority the rep credits the tier's amount now and asks the team lead",
            "expected ana may give a credit of up to $150.00",
            "the decision authorized: credit up to $150.01",
        ),
    ],
)
def test_a_changed_limit_fails_the_specs_naming_scenario_and_amounts(
    tmp_path: Path, policy: str, old: str, new: str, scenario: str, expected: str, actual: str
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    path = policies / f"{policy}.yaml"
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    done = _suite(GOODWILL_POLICIES=policies)
    out = done.stdout
    assert done.returncode == 1, out
    assert f'Scenario "{scenario}" (features/{policy}.feature:' in out, out
    assert expected in out and actual in out, out
    if policy == "replace-broken-part":  # docs/specs.md quotes this failure: it must be real
        quoted = _block("", 'Scenario "A customer with three remedies')
        assert quoted in out.replace(out.split('Scenario "')[0], "", 1), out


# ---------------------------------------------------------------------- docs/specs.md


DOC = (REPO / "docs" / "specs.md").read_text(encoding="utf-8")


def _block(lang: str, starts: str) -> str:
    """The fenced block of docs/specs.md in `lang` whose text starts with `starts`."""
    found, current, inside = [], [], None
    for row in DOC.splitlines(keepends=True):
        if row.startswith("```"):
            if inside is None:
                inside, current = row[3:].strip(), []
            else:
                found += ["".join(current)] if inside == lang else []
                inside = None
        elif inside is not None:
            current.append(row)
    [text] = [b for b in found if b.startswith(starts)]
    return text


def test_the_walkthrough_policy_and_feature_pass_the_gate_as_documented(tmp_path: Path) -> None:
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    shutil.copytree(REPO / "features", tmp_path / "features")
    (tmp_path / "policies" / "chasing-us.yaml").write_text(_block("yaml", "policy: chasing-us"))
    checked = _goodwill("check", tmp_path / "policies")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == _block("", "ok: ")
    policy_set = load_policy_set(tmp_path / "policies")
    before = specs.read_features(tmp_path / "features")
    [gap] = specs.static_gaps(policy_set, before)
    shown = gap.render().replace(f"{tmp_path}/", "")
    assert shown in _block("", "policies/chasing-us.yaml:1:")

    (tmp_path / "features" / "chasing-us.feature").write_text(_block("gherkin", "@policy:"))
    records = tmp_path / "records.json"
    done = _suite(
        GOODWILL_POLICIES=tmp_path / "policies",
        GOODWILL_FEATURES=tmp_path / "features",
        GOODWILL_SPEC_RECORDS=records,
    )
    assert done.returncode == 0, done.stdout
    features = specs.read_features(tmp_path / "features")
    run = specs.load_records(records)
    assert specs.static_gaps(policy_set, features) == []
    assert specs.coverage_gaps(policy_set, features, run) == []

    first_only = [
        r for r in run if r["policies"] != ["chasing-us"] or "again while" in r["scenario"]
    ]
    [gap] = specs.coverage_gaps(policy_set, features, first_only)
    shown = gap.render().replace(f"{tmp_path}/", "")
    assert shown in _block("", "features/chasing-us.feature:2:")


def test_a_failed_scenario_is_one_problem_not_also_an_empty_one(tmp_path: Path) -> None:
    policy_set = load_policy_set(REPO / "policies")
    features = specs.read_features(REPO / "features")
    record = {"feature": str(tmp_path / "x.feature"), "line": 7, "example": None}
    record |= {"policies": [], "steps": {"when": [], "then": []}}
    failed = {**record, "scenario": "broken", "failed": True}
    empty = {**record, "scenario": "empty", "failed": False, "line": 9}
    said = [g.message for g in specs.coverage_gaps(policy_set, features, [failed, empty])]
    assert [m for m in said if "'broken'" in m] == ["scenario 'broken' fails"]
    assert [m for m in said if "'empty'" in m] == [
        "scenario 'empty' has no When step, so it shows nothing",
        "scenario 'empty' has no Then step, so it shows nothing",
    ]
