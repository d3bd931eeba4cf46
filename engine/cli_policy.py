"""`goodwill check`, `steps`, `fields`, `simulate` and `docs`: the commands of a policy
owner — validating a policy set (for people, machines or a pull request), the vocabulary
specs and conditions are written in, what a change would decide differently, and the
handbook.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli_options import (
    SCRATCH_HINT,
    Policies,
    Progress,
    compile_policies,
    fail,
    room_hint,
)
from engine.errors import Diagnostic, PolicyError


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


def check(
    directory: Annotated[Path, typer.Argument(help="policy directory")] = Path("policies"),
    specs: Annotated[
        bool, typer.Option("--specs", help="also run features/ and check every rule is shown")
    ] = False,
    features: Annotated[
        Path, typer.Option("--features", help="feature directory (with --specs)")
    ] = Path("features"),
    output: Annotated[
        CheckFormat,
        typer.Option(
            "--format",
            help="text (positions, a caret and a hint on stderr), json (one object on"
            " stdout), or github (workflow annotations on the lines of a pull request)",
        ),
    ] = CheckFormat.text,
) -> None:
    """Validate a policy set; print positioned errors and exit 1 if it is refused."""
    if output is CheckFormat.text:
        compiled = compile_policies(directory)
    else:
        from engine.compile import load

        try:
            compiled = load(directory)
        except PolicyError as err:
            if output is CheckFormat.json:
                problems = [_problem(d) for d in err.diagnostics]
                typer.echo(json.dumps({"ok": False, "problems": problems}))
            else:
                for d in err.diagnostics:
                    typer.echo(_annotation(d))
            raise typer.Exit(1) from None
    ps = compiled.policy_set
    rules = sum(len(p.rules) for p in ps.policies)
    if output is CheckFormat.json:
        counts = {"policies": len(ps.policies), "rules": rules, "budgets": len(ps.budgets)}
        typer.echo(json.dumps({"ok": True, **counts, "policy_set": ps.hash}))
    else:
        typer.echo(
            f"ok: {len(ps.policies)} policies, {rules} rules, {len(ps.budgets)} budgets; "
            f"policy set {ps.hash}"
        )
    if specs:
        from engine import specs as gate

        if not features.is_dir():
            raise fail(f"no such features directory: {features}")
        if not gate.SUITE.is_file():
            raise fail(f"the spec gate runs from a source checkout; no {gate.SUITE}")
        raise typer.Exit(gate.check(directory, ps, features, typer.echo))


def _problem(d: Diagnostic) -> dict[str, Any]:
    span = d.span
    return {
        "file": d.file,
        "line": span.line if span else None,
        "column": span.col if span else None,
        "end_column": span.end_col if span else None,
        "message": d.message,
        "hint": d.hint,
    }


def _annotation(d: Diagnostic) -> str:
    """A GitHub Actions workflow command: `::error file=…,line=…,col=…::message`."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    where = [f"file={prop(d.file)}"]
    if d.span is not None:
        where += [f"line={d.span.line}", f"col={d.span.col}", f"endColumn={d.span.end_col}"]
    message = d.message + (f"\n{d.hint}" if d.hint else "")
    return f"::error {','.join(where)},title=goodwill check::{data(message)}"


def steps(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="as features/STEPS.md (Markdown)")
    ] = False,
) -> None:
    """List the step vocabulary features are written in, each with an example."""
    from engine.steps import text

    typer.echo(text(markdown), nl=False)


def fields(
    event_type: Annotated[str, typer.Argument(help="event type, e.g. remedy.requested")],
    budget: Annotated[
        bool, typer.Option(help="include budget.* (policies naming a budget)")
    ] = False,
) -> None:
    """List the fields a policy on EVENT_TYPE may read, with their types."""
    from engine.errors import did_you_mean
    from engine.facts import vocabulary
    from events.models import CATALOG

    if event_type not in CATALOG:
        hint = did_you_mean(event_type, CATALOG) or "see `goodwill schema`"
        raise fail(f"unknown event type '{event_type}'; {hint}")
    for f in vocabulary(event_type, budget).values():
        typer.echo(f"{f.path:28} {f.type:6} {f.doc}")


def simulate(
    source: Annotated[Path, typer.Argument(help="a .jsonl file of real events to replay")],
    candidate: Annotated[Path, typer.Option("--candidate", help="the changed policy directory")],
    policies: Policies = Path("policies"),
    show: Annotated[int, typer.Option(min=0, help="how many changed decisions to list")] = 20,
) -> None:
    """Compare what CANDIDATE policies would have decided on SOURCE with the current ones."""
    from engine.simulate import compare, report

    if not source.is_file():
        raise fail(f"no such input file: {source}")
    baseline, changed = compile_policies(policies), compile_policies(candidate)
    typer.echo(f"policy set {baseline.hash} (current) vs {changed.hash} (candidate)")
    try:
        comparison = compare(baseline, changed, source, Progress)
    except sqlite3.Error as err:  # its databases are scratch ones, under TMPDIR
        where = f"the simulation's scratch files under {tempfile.gettempdir()}"
        raise fail(f"{where}: {err}{SCRATCH_HINT}", 1) from None
    for line in report(comparison, show):
        typer.echo(line)


def docs(
    out: Annotated[Path, typer.Option("--out", help="directory to write the handbook to")],
    policies: Policies = Path("policies"),
    features: Annotated[Path, typer.Option("--features", help="feature directory")] = Path(
        "features"
    ),
    results: Annotated[
        Path, typer.Option("--results", help="pytest-bdd cucumber JSON of the last test run")
    ] = Path(".goodwill/last-run.cucumber.json"),
) -> None:
    """Write the handbook: static HTML of every policy, its specs and their last test run."""
    from engine.handbook import HandbookError, build_handbook, summary_lines

    # the spec run writes which rules each scenario matched next to its cucumber JSON
    records = results.with_name(results.name.replace(".cucumber.json", ".records.json"))
    coverage = None
    if records.name != results.name and records.is_file():
        from engine.specs import rules_by_scenario

        coverage = rules_by_scenario(records)
    try:
        book = build_handbook(out, policies, features, results, coverage)
    except HandbookError as err:
        written = isinstance(err.__cause__, OSError)  # the input was fine, the disk was not
        raise fail(f"{err}{room_hint(err.__cause__)}", 1 if written else 2) from None
    except PolicyError as err:
        typer.echo(err.render(), err=True)
        raise fail(f"policy set refused ({len(err.diagnostics)} problem(s))", 1) from None
    for line in summary_lines(book):
        typer.echo(line)
