"""pytest-bdd glue for `features/`: the compiled policy set (once per session), one world
per scenario, the decision records the spec gate reads, and failures that help a reader.

Environment (set by `goodwill check --specs`, or by hand to try a change):
- GOODWILL_POLICIES, GOODWILL_FEATURES: run the features in one directory against the
  policies in another (default: the repository's `policies/` and `features/`);
- GOODWILL_SPEC_RECORDS: write every scenario's decisions, with the rules that made them,
  to that JSON file.

When every scenario of the repository's own features ran, the run is also kept for the
handbook: `.goodwill/last-run.cucumber.json` (unless --cucumberjson says elsewhere), its
`last-run.meta.json` stamp and `last-run.records.json` (`engine.specs.coverage`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_bdd.cucumber_json import LogBDDCucumberJSON
from pytest_bdd.feature import get_features
from pytest_bdd.parser import Feature, Scenario, Step

from engine import specs
from engine.compile import CompiledSet, load
from engine.errors import PolicyError, relpath
from engine.load import load_policy_set
from engine.steps import closest
from tests.bdd.steps import *  # noqa: F403  (pytest-bdd keeps step definitions as fixtures of their module)
from tests.bdd.world import World, features_dir, policies_dir

LAST_RUN = ".goodwill/last-run"
_RUN_KEY = pytest.StashKey["_Run"]()


@pytest.fixture(scope="session")
def compiled() -> CompiledSet:
    try:
        return load(policies_dir())
    except PolicyError as err:
        pytest.fail(f"the policy set is refused:\n{err.render()}", pytrace=False)


@pytest.fixture
def world(compiled: CompiledSet, tmp_path: Path) -> Iterator[World]:
    w = World(compiled, tmp_path)
    yield w
    w.close()


# ---------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "policy(id): the scenario specifies that policy")
    run = _Run(config)
    config.stash[_RUN_KEY] = run
    config.pluginmanager.register(run, "goodwill-specs-run")
    if config.option.cucumber_json_path is None and not hasattr(config, "workerinput"):
        run.cucumber = _Cucumber(str(config.rootpath / f"{LAST_RUN}.cucumber.json"))
        config.pluginmanager.register(run.cucumber, "goodwill-specs-cucumber")


def pytest_bdd_apply_tag(tag: str, function: Any) -> Any:
    if tag.startswith(specs.POLICY_TAG):
        pytest.mark.policy(tag.removeprefix(specs.POLICY_TAG))(function)
        return True
    return None


def pytest_bdd_before_scenario(
    request: pytest.FixtureRequest, feature: Feature, scenario: Scenario
) -> None:
    world: World = request.getfixturevalue("world")
    world.scenario = f'Scenario "{scenario.name}" ({relpath(Path(feature.filename))}:' + (
        f"{scenario.line_number})"
    )


def pytest_bdd_before_step(request: pytest.FixtureRequest, step: Step) -> None:
    world: World = request.getfixturevalue("world")
    world.begin(step.type, f"{step.keyword} {step.name}", step.line_number)


def pytest_bdd_step_error(request: pytest.FixtureRequest) -> None:
    world: World = request.getfixturevalue("world")
    world.failed = True


def pytest_bdd_step_func_lookup_error(
    request: pytest.FixtureRequest, feature: Feature, step: Step
) -> None:
    request.getfixturevalue("world").failed = True
    lines = [
        f'no step of the vocabulary reads {step.type.capitalize()} "{step.name}" '
        f"({relpath(Path(feature.filename))}:{step.line_number})",
        "  closest known steps:",
    ]
    for p in closest(step.name, step.type):
        lines.append(f"    {p.keyword} {p.skeleton}")
        lines.append(f"        e.g. {p.keyword.split('/')[0]} {p.example}")
    lines.append("  every step: features/STEPS.md, or `goodwill steps`")
    pytest.fail("\n".join(lines), pytrace=False)


def pytest_bdd_after_scenario(
    request: pytest.FixtureRequest, feature: Feature, scenario: Scenario
) -> None:
    world: World = request.getfixturevalue("world")
    template = next(
        (t for t in feature.scenarios.values() if t.line_number == scenario.line_number), None
    )
    request.config.stash[_RUN_KEY].records.append(
        {
            "feature": feature.filename,
            "policies": sorted(
                t.removeprefix(specs.POLICY_TAG)
                for t in feature.tags
                if t.startswith(specs.POLICY_TAG)
            ),
            "scenario": template.name if template else scenario.name,
            "line": scenario.line_number,
            "example": request.getfixturevalue("_pytest_bdd_example"),
            "failed": world.failed,
            "steps": world.steps,
            "decisions": world.record(),
        }
    )


class _Cucumber(LogBDDCucumberJSON):
    """pytest-bdd's cucumber JSON, written by `_Run` only when every scenario ran."""

    def pytest_sessionfinish(self) -> None:
        pass

    def pytest_terminal_summary(self) -> None:
        pass

    def write(self) -> None:
        Path(self.logfile).write_text(json.dumps(list(self.features.values())), "utf-8")


class _Run:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict[str, Any]] = []
        self.cucumber: _Cucumber | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        try:
            verified: str | None = load_policy_set(policies_dir()).hash
        except PolicyError:
            verified = None  # every scenario failed on it; nothing to keep for the handbook
        doc = {"policy_set": verified, "scenarios": self.records}
        target = os.environ.get(specs.RECORDS_ENV)
        if target:
            Path(target).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        if verified is None or not self._whole_suite():
            return
        last = self.config.rootpath / LAST_RUN
        last.parent.mkdir(exist_ok=True)
        Path(f"{last}.records.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        from engine.handbook import record_run_meta

        if self.cucumber is not None:
            self.cucumber.write()
        record_run_meta(Path(self.cucumber.logfile if self.cucumber else self._asked()), verified)

    def _asked(self) -> str:
        """The cucumber JSON path given with --cucumberjson (pytest-bdd writes that file)."""
        asked = os.path.expandvars(os.path.expanduser(self.config.option.cucumber_json_path))
        return os.path.abspath(asked)  # as pytest-bdd resolves it

    def _whole_suite(self) -> bool:
        """The repository's own features, each scenario and example run."""
        mine = (specs.REPO / "policies", specs.REPO / "features")
        if (policies_dir().resolve(), features_dir().resolve()) != mine:
            return False
        expected = sum(
            max(1, sum(len(ex.examples) for ex in t.examples))
            for f in get_features([str(features_dir())])
            for t in f.scenarios.values()
        )
        return expected > 0 and len(self.records) == expected
