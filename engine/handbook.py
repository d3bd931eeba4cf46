"""The handbook: a static, offline HTML site of the policy set, its specs and their last run.

Inputs, all read-only:
- the policy files (`load_policy_set`), one page per policy with its YAML;
- the feature files, `features/<policy-id>.feature`, parsed with pytest-bdd's own parser so a
  scenario here is exactly the scenario the test run executed (outlines expanded the same way);
- pytest-bdd's cucumber JSON of the last run (`pytest --cucumberjson=PATH`) and the small
  `*.meta.json` next to it that `record_run_meta` writes, naming the policy set the run
  verified;
- optionally, which policy rules each scenario matched (`Coverage`).

The result is deterministic for the same inputs (no build time is stamped), uses no network at
view time (inline CSS, no scripts, a Content-Security-Policy forbidding any fetch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.handbook_assets import index_html, policy_html, tally_statuses
from engine.load import load_policy_set
from engine.policy import Policy

if TYPE_CHECKING:
    from pytest_bdd.parser import Feature, Scenario, ScenarioTemplate

DEFAULT_RESULTS = Path(".goodwill/last-run.cucumber.json")

Coverage = Mapping[str, Mapping[str, Collection[str]]]
"""policy id → scenario name (as written in the feature, outline not expanded) → names of the
policy's rules that scenario matched. A policy missing from a given mapping covers no rule;
`None` instead of a mapping means coverage is unknown and is shown as "n/a"."""

_FAILING = ("failed", "incomplete")


class HandbookError(Exception):
    """A bad input path or file, said in one line."""


def meta_path(results: Path) -> Path:
    """`x.cucumber.json` (or `x.json`) → `x.meta.json`, in the same directory."""
    name = results.name.removesuffix(".cucumber.json").removesuffix(".json")
    return results.with_name(f"{name}.meta.json")


def record_run_meta(path: Path, policy_set_hash: str) -> Path:
    """Stamp the results at `path` with the policy set the run verified; returns the meta file.

    Call it once the cucumber JSON is written (pytest_sessionfinish, trylast).
    """
    meta = meta_path(path)
    meta.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "policy_set": policy_set_hash,
        "results": path.name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = meta.with_name(meta.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, meta)
    return meta


@dataclass(frozen=True)
class LastRun:
    """The last test run as far as the handbook knows it."""

    path: Path
    found: bool
    by_feature: Mapping[str, tuple[dict[str, Any], ...]]  # feature file name → scenario results
    policy_set: str | None = None
    finished_at: str | None = None


def load_last_run(results: Path) -> LastRun:
    if results.is_dir():
        raise HandbookError(f"test results path is a directory, not a file: {results}")
    if not results.exists():
        return LastRun(results, False, {})
    try:
        doc = json.loads(results.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HandbookError(f"cannot read test results {results}: {err}") from None
    if not isinstance(doc, list) or not all(
        isinstance(f, dict)
        and isinstance(f.get("uri"), str)
        and isinstance(f.get("elements"), list)
        for f in doc
    ):
        raise HandbookError(
            f"{results} is not pytest-bdd cucumber JSON (a list of features with 'uri' and "
            "'elements'); write it with `pytest --cucumberjson=PATH`"
        )
    by_feature: dict[str, list[dict[str, Any]]] = {}
    for feature in doc:
        name = feature["uri"].replace("\\", "/").rsplit("/", 1)[-1]
        elements = [e for e in feature["elements"] if isinstance(e, dict)]
        by_feature.setdefault(name, []).extend(elements)
    meta: Any = {}
    with suppress(OSError, UnicodeDecodeError, json.JSONDecodeError):  # unstamped: shown so
        meta = json.loads(meta_path(results).read_text(encoding="utf-8"))
    stamp = meta if isinstance(meta, dict) else {}
    return LastRun(
        results,
        True,
        {k: tuple(v) for k, v in by_feature.items()},
        str(stamp["policy_set"]) if "policy_set" in stamp else None,
        str(stamp["finished_at"]) if "finished_at" in stamp else None,
    )


@dataclass(frozen=True)
class StepResult:
    keyword: str
    text: str
    status: str  # passed, failed, skipped, not reached, no result, not run
    background: bool
    table: tuple[tuple[str, ...], ...] = ()
    docstring: str | None = None
    error: str = ""


@dataclass(frozen=True)
class Run:
    """One executed instance of a scenario: a plain scenario or one row of an outline."""

    name: str
    example: tuple[tuple[str, str], ...]  # (parameter, value) of an outline row
    steps: tuple[StepResult, ...]
    status: str  # passed, failed, incomplete, skipped, not run


@dataclass(frozen=True)
class Examples:
    name: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class ScenarioDoc:
    keyword: str
    name: str
    tags: tuple[str, ...]
    rule: str | None  # the Gherkin `Rule:` it sits under
    written: tuple[tuple[str, str], ...]  # its own steps as written: (keyword, text)
    examples: tuple[Examples, ...]
    runs: tuple[Run, ...]  # one per outline row, in example order; one for a plain scenario
    matched: tuple[str, ...] | None  # policy rules it matched; None when unknown

    @property
    def status(self) -> str:
        return self.runs[0].status if len(self.runs) == 1 else _worst([r.status for r in self.runs])


@dataclass(frozen=True)
class PolicyDoc:
    policy: Policy
    source: str
    feature: str
    problem: str | None  # why there is no usable spec
    scenarios: tuple[ScenarioDoc, ...]
    covered: Mapping[str, tuple[str, ...]] | None  # rule name → scenarios matching it
    unmatched: int = 0  # results of the last run that match no scenario of the feature

    @property
    def feature_found(self) -> bool:
        return Path(self.feature).is_file()

    @property
    def runs(self) -> list[Run]:
        return [r for s in self.scenarios for r in s.runs]

    @property
    def status(self) -> str:
        """passed, failed, not run or no spec."""
        runs = self.runs
        if self.problem or not runs:
            return "no spec"
        worst = _worst([r.status for r in runs])
        return worst if worst in ("passed", "failed") else "not run"

    @property
    def counts(self) -> str:
        runs = self.runs
        if not runs:
            return "no scenarios"
        tally = tally_statuses(r.status for r in runs)
        return f"{len(runs)} scenario{'s' * (len(runs) != 1)}: {tally}"

    @property
    def coverage(self) -> str:
        if self.covered is None:
            return "n/a"
        return f"{sum(1 for s in self.covered.values() if s)}/{len(self.covered)} rules"


def _worst(statuses: list[str]) -> str:
    if any(s in _FAILING for s in statuses):
        return "failed"
    if statuses and all(s == "passed" for s in statuses):
        return "passed"
    return "skipped" if "skipped" in statuses else "not run"


def _parse_feature(path: Path) -> Feature | str:
    """The feature as pytest-bdd reads it, or why it cannot be read."""
    try:
        from pytest_bdd.exceptions import GherkinParseError
        from pytest_bdd.parser import FeatureParser
    except ImportError:
        hint = "reading feature files needs pytest-bdd: pip install -e '.[test]'"
        raise HandbookError(hint) from None
    try:
        return FeatureParser(str(path.parent), path.name).parse()
    except GherkinParseError as err:
        return f"{path}:{err.line}: {' '.join(err.message.split())}"
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot read {path}: {err}"


def _match(scenario: Scenario, pool: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Take the result of `scenario` out of `pool`: same line, name and steps (a prefix when the
    run stopped early); outline rows share a line and are told apart by their steps."""
    want = [(s.line_number, s.name) for s in scenario.steps]
    same = [
        e for e in pool if (e.get("line"), e.get("name")) == (scenario.line_number, scenario.name)
    ]
    for exact in (True, False):
        for element in same:
            got = [(s.get("line"), s.get("name")) for s in _steps(element)]
            if got == want or (not exact and got == want[: len(got)]):
                pool.remove(element)
                return element
    return None


def _steps(element: dict[str, Any]) -> list[dict[str, Any]]:
    steps = element.get("steps")
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def _run(scenario: Scenario, background: set[int], element: dict[str, Any] | None) -> Run:
    results = _steps(element) if element is not None else []
    steps: list[StepResult] = []
    failed = False
    for i, step in enumerate(scenario.steps):
        result = results[i].get("result") if i < len(results) else {}
        result = result if isinstance(result, dict) else {}
        status = "not run" if element is None else str(result.get("status", "no result"))
        if status == "failed":
            # pytest-bdd marks every step after the failing one as failed too; they never ran
            status, failed = ("not reached" if failed else "failed"), True
        table = (
            tuple(tuple(str(c) for c in row) for row in step.datatable.raw())
            if step.datatable
            else ()
        )
        steps.append(
            StepResult(
                step.keyword,
                step.name,
                status,
                step.line_number in background,
                table,
                step.docstring,
                str(result.get("error_message") or ""),
            )
        )
    states = [s.status for s in steps]
    if element is None:
        status = "not run"
    elif "failed" in states:
        status = "failed"
    elif "no result" in states:
        status = "incomplete"  # an undefined step or an error before a step ran
    else:
        status = _worst(states)
    return Run(scenario.name, (), tuple(steps), status)


def _scenario_doc(
    template: ScenarioTemplate,
    pool: list[dict[str, Any]],
    matched: Mapping[str, Collection[str]] | None,
) -> ScenarioDoc:
    background = {s.line_number for s in template.all_background_steps}
    runs: list[Run] = []
    examples: list[Examples] = []
    for ex in template.examples:
        rows = [tuple(str(v) for v in row) for row in ex.examples]
        examples.append(Examples(ex.name or "", tuple(ex.example_params), tuple(rows)))
        for context in ex.as_contexts():
            rendered = template.render(context)
            run = _run(rendered, background, _match(rendered, pool))
            runs.append(Run(run.name, tuple(context.items()), run.steps, run.status))
    if not template.templated:
        rendered = template.render({})
        runs.append(_run(rendered, background, _match(rendered, pool)))
    return ScenarioDoc(
        template.keyword,
        template.name,
        tuple(sorted(template.tags)),
        template.rule.name if template.rule else None,
        tuple((s.keyword, s.name) for s in template._steps),
        tuple(examples),
        tuple(runs),
        None if matched is None else tuple(sorted(matched.get(template.name, ()))),
    )


def _policy_doc(
    policy: Policy, policies_dir: Path, features_dir: Path, last: LastRun, cover: Coverage | None
) -> PolicyDoc:
    source = (policies_dir / Path(policy.path).name).read_text(encoding="utf-8")
    path = features_dir / f"{policy.id}.feature"
    matched = None if cover is None else cover.get(policy.id, {})
    covered = None
    if matched is not None:
        covered = {
            r.name: tuple(sorted(s for s, m in matched.items() if r.name in m))
            for r in policy.rules
        }
    if not path.is_file():
        return PolicyDoc(policy, source, str(path), f"no feature file {path}", (), covered)
    feature = _parse_feature(path)
    if isinstance(feature, str):
        return PolicyDoc(policy, source, str(path), feature, (), covered)
    pool = list(last.by_feature.get(path.name, ()))
    scenarios = tuple(_scenario_doc(t, pool, matched) for t in feature.scenarios.values())
    problem = None if scenarios else f"{path} has no scenarios"
    # results left over name scenarios the feature no longer has: it changed since the run
    return PolicyDoc(policy, source, str(path), problem, scenarios, covered, len(pool))


@dataclass(frozen=True)
class Handbook:
    """What `build_handbook` wrote and what it found."""

    out_dir: Path
    files: tuple[Path, ...]
    policy_set: str
    last_run: LastRun
    policies: tuple[PolicyDoc, ...]


def build_handbook(
    out_dir: Path,
    policies_dir: Path,
    features_dir: Path,
    results_path: Path,
    coverage: Coverage | None = None,
) -> Handbook:
    """Write `index.html` and one `policy-<id>.html` per policy into `out_dir`.

    A missing `results_path` means "not run", not an error. `coverage` is documented at
    `Coverage`. Raises `PolicyError` for a refused policy set, `HandbookError` for bad paths.
    """
    if not policies_dir.is_dir():
        raise HandbookError(f"no such policy directory: {policies_dir}")
    if not features_dir.is_dir():
        raise HandbookError(f"no such features directory: {features_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise HandbookError(f"output path exists and is not a directory: {out_dir}")
    policy_set = load_policy_set(policies_dir)
    last = load_last_run(results_path)
    docs = tuple(
        _policy_doc(p, policies_dir, features_dir, last, coverage) for p in policy_set.policies
    )
    pages = {"index.html": index_html(policy_set.hash, last, docs)}
    for doc in docs:
        pages[f"policy-{doc.policy.id}.html"] = policy_html(doc, policy_set.hash, last)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HandbookError(f"cannot write the handbook to {out_dir}: {err.strerror}") from err
    for name, text in pages.items():
        try:
            (out_dir / name).write_text(text, encoding="utf-8")
        except OSError as err:
            raise HandbookError(f"cannot write {out_dir / name}: {err.strerror}") from err
    return Handbook(out_dir, tuple(out_dir / n for n in pages), policy_set.hash, last, docs)


def summary_lines(book: Handbook) -> list[str]:
    """What `goodwill docs` says: the files written, the status tally, and any stale results."""
    lines = [f"wrote {path}" for path in book.files]
    counts = tally_statuses(doc.status for doc in book.policies)
    lines.append(f"{len(book.policies)} policies ({counts}); policy set {book.policy_set}")
    lines += [f"warning: {d.problem}" for d in book.policies if d.problem and d.feature_found]
    last = book.last_run
    if not last.found:
        lines.append(f"no test results at {last.path}: every spec is shown as not run")
    elif last.policy_set is None:
        lines.append(f"warning: {last.path} does not name the policy set it verified")
    elif last.policy_set != book.policy_set:
        lines.append(
            f"warning: results are from policy set {last.policy_set}, current is "
            f"{book.policy_set} — re-run the tests"
        )
    return lines
