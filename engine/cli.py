"""`goodwill` — run the engine, check policies, export schemas, explain decisions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from engine.errors import PolicyError

app = typer.Typer(
    name="goodwill",
    help="Event-sourced service-policy engine for customer support.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", help="where state and the embedded log live", envvar="GOODWILL_DATA_DIR"
    ),
]
Policies = Annotated[
    Path, typer.Option("--policies", help="policy directory", envvar="GOODWILL_POLICIES")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"goodwill: {message}", err=True)
    return typer.Exit(code)


def _compile(policies: Path):  # type: ignore[no-untyped-def]
    from engine.compile import load

    try:
        return load(policies)
    except PolicyError as err:
        typer.echo(err.render(), err=True)
        typer.echo(f"goodwill: policy set refused ({len(err.diagnostics)} problem(s))", err=True)
        raise typer.Exit(1) from None


@app.command()
def run(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="a .jsonl file of events; omit to read the embedded events log", show_default=False
        ),
    ] = None,
    data_dir: DataDir = Path("goodwill-data"),
    policies: Policies = Path("policies"),
    as_json: Annotated[bool, typer.Option("--json", help="print decisions as JSON lines")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the summary")] = False,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="records per transaction")] = 500,
) -> None:
    """Decide every event from SOURCE (or the embedded log) and print the decisions."""
    from engine.embedded import run_embedded
    from engine.report import Printer

    compiled = _compile(policies)
    if source is not None and not source.is_file():
        raise fail(f"no such input file: {source}")
    printer = Printer(json_lines=as_json, quiet=quiet, currency=compiled.policy_set.currency)
    summary = run_embedded(compiled, data_dir, source, batch, printer.output)
    printer.summary(summary)


@app.command()
def check(
    directory: Annotated[Path, typer.Argument(help="policy directory")] = Path("policies"),
) -> None:
    """Validate a policy set; print positioned errors and exit 1 if it is refused."""
    compiled = _compile(directory)
    ps = compiled.policy_set
    rules = sum(len(p.rules) for p in ps.policies)
    typer.echo(
        f"ok: {len(ps.policies)} policies, {rules} rules, {len(ps.budgets)} budgets; "
        f"policy set {ps.hash}"
    )


@app.command()
def schema(
    out: Annotated[Path, typer.Option("--out", help="directory to write the schemas to")],
) -> None:
    """Write a JSON Schema per event type for producers."""
    from events.schema import write_schemas

    written = write_schemas(out)
    typer.echo(f"wrote {len(written)} files to {out}")


@app.command()
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


@app.command()
def explain(
    ident: Annotated[str, typer.Argument(help="a decision id or the id of the event it decided")],
    data_dir: DataDir = Path("goodwill-data"),
) -> None:
    """Show why a decision was made: the rules that fired and the values they saw."""
    from engine.report import explain_text
    from engine.state import StateStore

    db = data_dir / "state.db"
    if not db.exists():
        raise fail(f"no state in {data_dir} (run `goodwill run` first)")
    store = StateStore.open(db)
    try:
        for value in store.outputs("decision.made"):
            doc = json.loads(value)
            if ident in (doc["event_id"], doc["data"]["caused_by"]):
                typer.echo(explain_text(doc))
                return
    finally:
        store.close()
    raise fail(f"no decision with id or cause '{ident}' in {data_dir}", 1)


@app.command()
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

    try:
        book = build_handbook(out, policies, features, results)
    except HandbookError as err:
        raise fail(str(err)) from None
    except PolicyError as err:
        typer.echo(err.render(), err=True)
        raise fail(f"policy set refused ({len(err.diagnostics)} problem(s))", 1) from None
    for line in summary_lines(book):
        typer.echo(line)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a bad flag is one line on stderr and exit 2, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args or ["--help"], prog_name="goodwill", standalone_mode=False)
    except typer.Exit as err:
        code = err.exit_code
    except typer.Abort:
        typer.echo("goodwill: interrupted", err=True)
        code = 130
    except typer.TyperException as err:  # every usage error of the CLI library derives from it
        ctx = getattr(err, "ctx", None)
        where = ctx.command_path if ctx is not None else "goodwill"
        typer.echo(f"{where}: {err.format_message()} (see `{where} --help`)", err=True)
        code = getattr(err, "exit_code", 2)
    sys.exit(code if isinstance(code, int) else 0)
