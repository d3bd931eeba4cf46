"""Living specs: the gate that proves the features of `features/` cover the policies
(`goodwill check --specs`).

Which rule decided what is never read from step text: while the feature suite runs, every
decision's `policies` (id and rule) is recorded per scenario; the gate and `coverage` read
those records. A rule is covered when, in its policy's own feature, a scenario's When step
is decided by it, and another scenario's When step on the policy's event is decided without
it. pytest and pytest-bdd are imported only when the gate runs (they come with `.[test]`).
The step vocabulary the features are written in is `engine.steps`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from engine.errors import did_you_mean, relpath
from engine.policy import Policy, PolicySet

REPO: Final = Path(__file__).resolve().parents[1]
SUITE: Final = REPO / "tests" / "bdd" / "test_features.py"
RECORDS_ENV: Final = "GOODWILL_SPEC_RECORDS"
FEATURES_ENV: Final = "GOODWILL_FEATURES"
POLICIES_ENV: Final = "GOODWILL_POLICIES"
POLICY_TAG: Final = "policy:"


# ------------------------------------------------------------------------------ records


def load_records(path: Path) -> list[dict[str, Any]]:
    """The scenario records a feature run wrote (see tests/bdd/conftest.py)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    scenarios: list[dict[str, Any]] = doc["scenarios"]
    return scenarios


def _fired(record: dict[str, Any], policy: Policy) -> Iterable[tuple[bool, set[str]]]:
    """(decided when-event on the policy's event type, rules of the policy that fired)."""
    for d in record["decisions"]:
        if d["phase"] == "when":
            rules = {rule for pid, rule in d["fired"] if pid == policy.id}
            yield d["cause_type"] == policy.on, rules


def coverage(records_path: Path) -> dict[str, dict[str, set[str]]]:
    """policy id → rule name → the scenarios of the policy's own feature (template names, an
    outline not expanded) in which that rule decided the event of a When step."""
    out: dict[str, dict[str, set[str]]] = {}
    for record in load_records(records_path):
        for pid in record["policies"]:
            for d in record["decisions"]:
                if d["phase"] != "when":
                    continue
                for fired_pid, rule in d["fired"]:
                    if fired_pid == pid:
                        out.setdefault(pid, {}).setdefault(rule, set()).add(record["scenario"])
    return out


def rules_by_scenario(records_path: Path) -> dict[str, dict[str, set[str]]]:
    """The same, the other way round: policy id → scenario → rules (`handbook.Coverage`)."""
    out: dict[str, dict[str, set[str]]] = {}
    for pid, rules in coverage(records_path).items():
        for rule, scenarios in rules.items():
            for s in scenarios:
                out.setdefault(pid, {}).setdefault(s, set()).add(rule)
    return out


# ------------------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class Gap:
    """Something the specs do not show, said where to fix it."""

    where: str  # path:line
    message: str
    hint: str

    def render(self) -> str:
        return f"{self.where}: {self.message}\n  {self.hint}"


@dataclass(frozen=True)
class FeatureFile:
    path: Path
    line: int
    policies: tuple[str, ...]
    description: str
    scenarios: dict[str, int]  # template name → line
    duplicates: tuple[tuple[str, int], ...]
    error: str | None = None  # the file is not valid Gherkin


_SCENARIO_LINE = re.compile(r"^\s*(?:Scenario|Scenario Outline|Scenario Template|Example):\s*(.*)$")


def read_features(directory: Path) -> list[FeatureFile]:
    # the test extra; only the gate reads features
    from pytest_bdd.exceptions import GherkinParseError
    from pytest_bdd.parser import FeatureParser

    out = []
    for path in sorted(directory.glob("*.feature")):
        try:
            feature = FeatureParser(str(directory), path.name).parse()
        except GherkinParseError as err:
            said = err.message.splitlines()[-1]
            out.append(FeatureFile(path, err.line, (), "", {}, (), f"not valid Gherkin: {said}"))
            continue
        seen: dict[str, int] = {}
        duplicates = []
        for number, row in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = _SCENARIO_LINE.match(row)
            if m and m.group(1).strip() in seen:
                duplicates.append((m.group(1).strip(), number))
            elif m:
                seen[m.group(1).strip()] = number
        out.append(
            FeatureFile(
                path,
                feature.line_number,
                tuple(
                    sorted(t[len(POLICY_TAG) :] for t in feature.tags if t.startswith("policy:"))
                ),
                feature.description,
                {name: s.line_number for name, s in feature.scenarios.items()},
                tuple(duplicates),
            )
        )
    return out


def static_gaps(policy_set: PolicySet, features: list[FeatureFile]) -> list[Gap]:
    """Every policy has one feature, named after it, quoting its principle and owner."""
    gaps: list[Gap] = []
    ids = {p.id: p for p in policy_set.policies}
    by_policy: dict[str, list[FeatureFile]] = {}
    for f in features:
        where = f"{relpath(f.path)}:{f.line}"
        if f.error is not None:
            gaps.append(Gap(where, f.error, "see features/STEPS.md for the shape of a feature"))
            continue
        if len(f.policies) != 1:
            gaps.append(
                Gap(
                    where,
                    f"a feature names exactly one policy; this one names {len(f.policies)}",
                    "tag the Feature line with @policy:<policy id>",
                )
            )
        for pid in f.policies:
            if pid not in ids:
                hint = did_you_mean(pid, ids) or "policies: " + ", ".join(sorted(ids))
                gaps.append(Gap(where, f"@policy:{pid} names no policy in the set", hint))
                continue
            by_policy.setdefault(pid, []).append(f)
            policy = ids[pid]
            if f.path.name != f"{pid}.feature":
                gaps.append(Gap(where, f"the feature of {pid} is not named {pid}.feature",
                                f"rename it to {pid}.feature"))  # fmt: skip
            for label, said in (("principle", policy.principle), ("owner", policy.owner)):
                if said not in f.description:
                    gaps.append(
                        Gap(
                            where,
                            f"the description does not quote the policy's {label}",
                            f"{label} in {policy.path}: {said}",
                        )
                    )
        for name, line in f.duplicates:
            gaps.append(Gap(f"{relpath(f.path)}:{line}", f"scenario name '{name}' is used twice",
                            "give each scenario its own name"))  # fmt: skip
    for policy in policy_set.policies:
        found = by_policy.get(policy.id, [])
        if not found:
            gaps.append(
                Gap(
                    f"{policy.path}:1",
                    f"policy {policy.id} has no feature",
                    f"write features/{policy.id}.feature tagged @policy:{policy.id} "
                    "(docs/specs.md)",
                )
            )
        elif len(found) > 1:
            names = ", ".join(relpath(f.path) for f in found)
            gaps.append(Gap(f"{policy.path}:1", f"policy {policy.id} has several features: "
                            f"{names}", "keep one feature per policy"))  # fmt: skip
    return gaps


def coverage_gaps(
    policy_set: PolicySet, features: list[FeatureFile], records: list[dict[str, Any]]
) -> list[Gap]:
    """Every rule decides a When event in one scenario of its feature and not in another
    (two rows of one outline are two scenarios here)."""
    gaps: list[Gap] = []
    said: set[tuple[str, str]] = set()
    for r in records:
        where = f"{relpath(Path(r['feature']))}:{r['line']}"
        if r["failed"]:  # its steps stop where it failed: that is the one problem
            gaps.append(Gap(where, f"scenario '{r['scenario']}' fails", "see the output above"))
            continue
        for kind in ("when", "then"):
            if not r["steps"].get(kind) and (where, kind) not in said:
                said.add((where, kind))
                gaps.append(Gap(where, f"scenario '{r['scenario']}' has no {kind.capitalize()} "
                                "step, so it shows nothing", "see features/STEPS.md"))  # fmt: skip
    for policy in policy_set.policies:
        own = [f for f in features if policy.id in f.policies]
        if not own:
            continue  # reported by static_gaps
        where = f"{relpath(own[0].path)}:{own[0].line}"
        mine = [r for r in records if policy.id in r["policies"]]
        for rule in policy.rules:
            matched, missed = set(), set()  # scenario runs: an outline's rows are apart
            for r in mine:
                run = json.dumps([r["scenario"], r["example"]], sort_keys=True)
                for on_event, rules in _fired(r, policy):
                    if rule.name in rules:
                        matched.add(run)
                    elif on_event:
                        missed.add(run)
            label = f"rule '{rule.name}' of {policy.id}"
            at = f"({policy.path}:{rule.line}, when: {rule.when_text})"
            if not matched:
                gaps.append(
                    Gap(
                        where,
                        f"no scenario shows {label} deciding {at}",
                        f"add a scenario in which this rule decides the {policy.on} of a When step",
                    )
                )
            always = rule.index == 0 and rule.when_text == "always"
            if not always and not (missed and len(matched | missed) >= 2):
                gaps.append(
                    Gap(
                        where,
                        f"no scenario shows {label} not applying {at}",
                        f"add a scenario in which it does not decide the {policy.on} of a "
                        "When step, and say what happens instead",
                    )
                )
    return gaps


def run_suite(policies: Path, features: Path, records: Path, args: Iterable[str] = ()) -> int:
    """Run the feature suite in this process against `policies` and `features`; returns
    pytest's exit code. The suite writes its decision records to `records`."""
    import pytest  # the test extra

    env = {
        POLICIES_ENV: str(policies.resolve()),
        FEATURES_ENV: str(features.resolve()),
        RECORDS_ENV: str(records.resolve()),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        flags = ["-q", "-p", "no:cacheprovider", "--rootdir", str(REPO), *args, str(SUITE)]
        return int(pytest.main(flags))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check(
    policies_dir: Path, policy_set: PolicySet, features_dir: Path, echo: Callable[[str], None]
) -> int:
    """The gate: static checks, the feature suite, then rule coverage. Exit code 0, 1 or 2."""
    if importlib.util.find_spec("pytest_bdd") is None:
        echo("goodwill: the spec gate runs the features with pytest-bdd: pip install -e '.[test]'")
        return 2
    with tempfile.TemporaryDirectory(prefix="goodwill-specs-") as tmp:
        records_path = Path(tmp) / "records.json"
        code = run_suite(policies_dir, features_dir, records_path)
        records = load_records(records_path) if records_path.exists() else []
    features = read_features(features_dir)  # after the run: pytest wants pytest_bdd unimported
    gaps = static_gaps(policy_set, features)
    if code in (0, 1):
        gaps += coverage_gaps(policy_set, features, records)
    else:  # not run at all (a file pytest-bdd cannot read, …): coverage would be noise
        gaps.append(Gap(relpath(SUITE), f"the feature suite did not run (pytest exit {code})",
                        "see the output above"))  # fmt: skip
    rules = sum(len(p.rules) for p in policy_set.policies)
    if gaps:
        echo("")
        for gap in gaps:
            echo(gap.render())
        echo(f"goodwill: specs incomplete ({len(gaps)} problem(s))")
        return 1
    echo(
        f"specs ok: {len(features)} features, {len(records)} scenarios run, every one of "
        f"{rules} rules shown deciding and not deciding"
    )
    return 0
