"""`goodwill` — run the engine, check policies, export schemas, explain decisions."""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.errors import Diagnostic, PolicyError
from engine.ledger import StateModeError

if TYPE_CHECKING:
    from events.kafka import KafkaConfig

EMBEDDED_EVENTS = "goodwill.events"  # engine.embedded.EVENTS_TOPIC, without importing the engine

app = typer.Typer(
    name="goodwill",
    help="Event-sourced service-policy engine for customer support.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _directory(path: Path) -> Path:
    """A directory option: refused at once if it names something that is not a directory
    (one that does not exist yet is created where it is needed)."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} exists and is not a directory")
    return path


DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        help="where state and the embedded log live",
        envvar="GOODWILL_DATA_DIR",
        callback=_directory,
    ),
]
Policies = Annotated[
    Path, typer.Option("--policies", help="policy directory", envvar="GOODWILL_POLICIES")
]


class BudgetStageMode(StrEnum):
    local = "local"
    kafka = "kafka"


Embedded = Annotated[
    bool, typer.Option("--embedded", help="ignore Kafka settings in the environment")
]
BudgetStageOption = Annotated[
    BudgetStageMode,
    typer.Option(
        "--budget-stage",
        envvar="GOODWILL_BUDGET_STAGE",
        help="Kafka mode: local checks budgets in this process (run one instance); kafka"
        " has the budget stage, on the budget topic, check them for every instance. The"
        " same for all instances of a group.",
    ),
]


RetainDays = Annotated[
    int | None,
    typer.Option(
        "--retain-days",
        min=1,
        envvar="GOODWILL_RETAIN_DAYS",
        show_default=False,
        help="keep this many days of event time before the watermark and forget older"
        " history (event ids, escalated follow-ups, remedies and defect reports beyond their"
        " windows); older events are dead-lettered as late. Stored with the state: later"
        " runs keep it. [keep everything]",
    ),
]


def _time_text(us: int | None) -> str | None:
    from engine.ledger import datetime_of

    return None if us is None else datetime_of(us).isoformat()


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"goodwill: {message}", err=True)
    return typer.Exit(code)


# Kafka settings every Kafka command takes; each also reads GOODWILL_KAFKA_<FIELD> (see
# events.kafka.KafkaConfig.from_env), and a flag wins over its variable.
_KAFKA_FLAGS: dict[str, tuple[str, type, str]] = {
    "bootstrap_servers": (
        "--kafka",
        str,
        "Kafka brokers HOST:PORT[,...] (env GOODWILL_KAFKA_BOOTSTRAP_SERVERS or "
        "KAFKA_BOOTSTRAP_SERVERS)",
    ),
    "events_topic": ("--events-topic", str, "input topic [goodwill.events]"),
    "decisions_topic": ("--decisions-topic", str, "output topic [goodwill.decisions]"),
    "deadletter_topic": ("--deadletter-topic", str, "rejected records [goodwill.deadletter]"),
    "budget_topic": (
        "--budget-topic",
        str,
        "with --budget-stage kafka: decisions the budget stage finishes [goodwill.budget]",
    ),
    "group_id": ("--group-id", str, "consumer group [goodwill]"),
    "client_id": ("--client-id", str, "client id [goodwill]"),
    "security_protocol": (
        "--security-protocol",
        str,
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [PLAINTEXT]",
    ),
    "sasl_mechanism": ("--sasl-mechanism", str, "e.g. PLAIN, SCRAM-SHA-512"),
    "sasl_plain_username": ("--sasl-username", str, "SASL user"),
    "sasl_plain_password": (
        "--sasl-password",
        str,
        "SASL password (prefer env GOODWILL_KAFKA_SASL_PLAIN_PASSWORD)",
    ),
    "ssl_cafile": ("--ssl-cafile", str, "CA certificate (PEM)"),
    "ssl_certfile": ("--ssl-certfile", str, "client certificate (PEM)"),
    "ssl_keyfile": ("--ssl-keyfile", str, "client key (PEM)"),
    "session_timeout_ms": ("--session-timeout-ms", int, "group session timeout [10000]"),
    "heartbeat_interval_ms": ("--heartbeat-interval-ms", int, "group heartbeat [3000]"),
    "max_message_bytes": ("--max-message-bytes", int, "largest record produced [1048576]"),
}


# What every Kafka client needs: where the brokers are, who it is, how it authenticates.
_CONNECTION: tuple[str, ...] = (
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)


def kafka_options(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the Kafka flags to a command, which receives the ones given as `kafka: dict`.
    Its --help shows the connection's and `names` (no names: every flag); it accepts the
    others too, unlisted, so one set of flags can be passed to every command."""
    unknown = set(names) - _KAFKA_FLAGS.keys()
    if unknown:
        raise ValueError(f"no such Kafka flag: {sorted(unknown)}")

    def add(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        added = []
        for name, (flag, kind, text) in _KAFKA_FLAGS.items():
            shown = not names or name in names or name in _CONNECTION
            option = typer.Option(flag, help=text, show_default=False, hidden=not shown)
            added.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[kind | None, option],
                )
            )
        kept = [p for p in signature.parameters.values() if p.name != "kafka"]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            flags = {name: kwargs.pop(name, None) for name in _KAFKA_FLAGS}
            command(kafka={k: v for k, v in flags.items() if v is not None}, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must see the new signature, not the original one
        return wrapper

    return add


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(default: str) -> str:
    """GOODWILL_LOG_LEVEL, checked: a misspelt level is a usage error, not a traceback."""
    level = os.environ.get("GOODWILL_LOG_LEVEL", "").strip().upper() or default
    if level not in _LOG_LEVELS:
        raise fail(f"GOODWILL_LOG_LEVEL={level!r}: use one of {', '.join(_LOG_LEVELS)}")
    return level


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was given on the command line (not from its default or an
    environment variable)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def wants_kafka(flags: dict[str, Any]) -> bool:
    return bool(
        flags.get("bootstrap_servers")
        or os.environ.get("GOODWILL_KAFKA_BOOTSTRAP_SERVERS", "").strip()
        or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    )


def kafka_config(flags: dict[str, Any]) -> KafkaConfig:
    from events.kafka import KafkaConfig

    try:
        return KafkaConfig.from_env(os.environ, **flags)
    except ValueError as err:
        raise fail(str(err)) from None


def _compile(policies: Path):  # type: ignore[no-untyped-def]
    from engine.compile import load

    try:
        return load(policies)
    except PolicyError as err:
        typer.echo(err.render(), err=True)
        typer.echo(f"goodwill: policy set refused ({len(err.diagnostics)} problem(s))", err=True)
        raise typer.Exit(1) from None


@app.command()
@kafka_options()
def run(
    ctx: typer.Context,
    source: Annotated[
        Path | None,
        typer.Argument(
            help="a .jsonl file of events; omit to read the embedded events log", show_default=False
        ),
    ] = None,
    data_dir: DataDir = Path("goodwill-data"),
    policies: Policies = Path("policies"),
    as_json: Annotated[bool, typer.Option("--json", help="print decisions as JSON lines")] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="print only the summary (and dead letters, on stderr)"),
    ] = False,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="records per transaction")] = 500,
    embedded: Embedded = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="serve Prometheus metrics on this port (Kafka mode)",
            envvar="GOODWILL_METRICS_PORT",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="address the metrics server binds", envvar="GOODWILL_METRICS_HOST")
    ] = "127.0.0.1",
    idle_polls: Annotated[
        int, typer.Option(min=1, help="rebuild on start: empty polls that mean a topic's end")
    ] = 5,
    budget_stage: BudgetStageOption = BudgetStageMode.local,
    retain_days: RetainDays = None,
    kafka: dict[str, Any] | None = None,
) -> None:
    """Decide every event from SOURCE (or the embedded log) and print the decisions.

    With --kafka (or GOODWILL_KAFKA_BOOTSTRAP_SERVERS / KAFKA_BOOTSTRAP_SERVERS), join the
    consumer group on the events topic instead and serve until SIGTERM or SIGINT; SIGHUP
    loads --policies again (a refused set is logged and the running one stays active).
    """
    import sqlite3

    from engine.embedded import StateLost, run_embedded, stop_after_batch
    from engine.ledger import StateVersionError
    from engine.report import Printer
    from events.log import LogCorrupted, LogError

    flags = kafka or {}
    if flags.get("bootstrap_servers") and (source is not None or embedded):
        raise fail(
            "--kafka reads the events topic; a FILE or --embedded is for the embedded backend"
        )
    compiled = _compile(policies)
    if source is None and not embedded and wants_kafka(flags):
        _run_kafka(
            compiled,
            flags,
            data_dir,
            as_json,
            batch,
            metrics_port,
            metrics_host,
            idle_polls,
            policies,
            budget_stage.value,
            retain_days,
        )
        return
    # Kafka-only flags given with the embedded backend would be silently ignored: refused.
    # (Their environment variables may be set for a whole deployment and are not.)
    kafka_only = [_KAFKA_FLAGS[name][0] for name in flags]
    for name in ("metrics_port", "metrics_host", "idle_polls", "budget_stage"):
        if _given(ctx, name):
            kafka_only.append("--" + name.replace("_", "-"))
    if kafka_only:
        raise fail(
            f"{', '.join(kafka_only)}: only with Kafka (--kafka HOST:PORT); the embedded"
            " backend takes none of them"
        )
    if source is not None and source.is_dir():
        raise fail(f"{source} is a directory; give a .jsonl file of events")
    if source is not None and not source.exists() and str(source) != "-":
        raise fail(f"no such input file: {source}")
    if source is not None and not source.is_file():  # a pipe, /dev/null, `-`
        raise fail(
            f"{source} is not a regular file: a file is read by line number so a run can go"
            " on where it stopped; `goodwill emit` sends events from stdin to the embedded"
            " log, which `goodwill run` with no file reads"
        )
    printer = Printer(json_lines=as_json, quiet=quiet, currency=compiled.policy_set.currency)
    try:
        with stop_after_batch() as stopping:
            summary = run_embedded(
                compiled, data_dir, source, batch, printer.output, retain_days, stopping
            )
    except KeyboardInterrupt:
        raise fail(
            f"interrupted; what was decided is kept in {data_dir}: run the same command again"
            " to go on",
            130,
        ) from None
    except LogCorrupted as err:
        raise fail(str(err), 1) from None
    except LogError as err:
        raise fail(f"{err} (is `goodwill run` running on {data_dir}?)", 1) from None
    except (StateVersionError, StateLost) as err:
        raise fail(str(err), 1) from None
    except sqlite3.Error as err:  # a damaged state file, a full disk, ...
        raise fail(f"the state in {data_dir}: {err}", 1) from None
    printer.summary(summary)
    if summary.stopped:
        raise fail(
            "stopped by a signal after a whole batch; run the same command again to go on", 130
        )


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@app.command()
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
        compiled = _compile(directory)
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


@app.command()
def steps(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="as features/STEPS.md (Markdown)")
    ] = False,
) -> None:
    """List the step vocabulary features are written in, each with an example."""
    from engine.specs import text

    typer.echo(text(markdown), nl=False)


@app.command()
def schema(
    out: Annotated[
        Path,
        typer.Option("--out", help="directory to write the schemas to", callback=_directory),
    ],
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
def status(
    data_dir: DataDir = Path("goodwill-data"),
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Show where a data directory's state stands: policy set, event time, positions,
    what it holds and what waits to be published. Safe beside a running service."""
    import sqlite3

    from engine.ledger import StateVersionError
    from engine.state import StateStore

    try:
        store = StateStore.open_readonly(data_dir)
    except (FileNotFoundError, StateVersionError, sqlite3.Error) as err:
        raise fail(f"cannot read the state in {data_dir}: {err}", 1) from None
    try:
        watermark = store.watermark()
        found: dict[str, Any] = {
            "data_dir": str(data_dir),
            "state_bytes": sum(f.stat().st_size for f in data_dir.glob("state.db*") if f.is_file()),
            "policy_set": store.meta("policy_set"),
            "watermark": None if watermark is None else watermark.isoformat(),
            "retain_days": store.retain_days,
            "positions": [
                {
                    "source": source,
                    "partition": part,
                    "next_offset": offset,
                    "event_time": _time_text(store.partition_time(source, part)),
                }
                for source, part, offset in store.positions()
            ],
            "counts": store.stats(),
        }
    except sqlite3.Error as err:
        raise fail(f"cannot read the state in {data_dir}: {err}", 1) from None
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(found, separators=(",", ":")))
        return
    counts = found["counts"]
    size = f"{found['state_bytes'] / 1e6:.1f} MB with its log"
    typer.echo(f"state        {data_dir / 'state.db'} ({size})")
    typer.echo(f"policy set   {found['policy_set'] or '(none activated yet)'}")
    typer.echo(f"event time   {found['watermark'] or '(no event yet)'}")
    days = found["retain_days"]
    typer.echo(
        "retention    everything (no --retain-days)"
        if days is None
        else f"retention    {days} days of event time before the watermark; older events are late"
    )
    for i, p in enumerate(found["positions"]):
        label = "positions   " if i == 0 else "            "
        upto = f" (events up to {p['event_time']})" if p["event_time"] else ""
        typer.echo(f"{label} {p['source']}[{p['partition']}]: next offset {p['next_offset']}{upto}")
    typer.echo(
        f"holds        {counts['events_seen']} events seen, {counts['customers']} customers,"
        f" {counts['orders']} orders, {counts['cases_open']} open and"
        f" {counts['cases_resolved']} resolved cases, {counts['followups_created']} follow-ups"
        f" ({counts['followups_overdue']} overdue)"
    )
    typer.echo(
        f"outbox       {counts['outputs']} outputs kept, {counts['outputs_pending']} waiting"
        " to be published"
    )


@app.command()
@kafka_options("decisions_topic")
def explain(
    ident: Annotated[str, typer.Argument(help="a decision id or the id of the event it decided")],
    data_dir: DataDir = Path("goodwill-data"),
    customer: Annotated[
        str | None,
        typer.Option(
            "--customer",
            help="with Kafka: the decision's customer id, so only its partition is read",
            show_default=False,
        ),
    ] = None,
    kafka: dict[str, Any] | None = None,
) -> None:
    """Show why a decision was made: the rules that fired and the values they saw.

    Looks in the state's outbox (unpublished and recent outputs) and the embedded decisions
    log; with Kafka settings, then on the decisions topic (every decision), reading only
    the customer's partition when --customer is given.
    """
    from engine.ledger import OUTBOX_KEEP_SENT
    from engine.report import explain_text
    from engine.service import DECISIONS_TOPIC
    from engine.state import StateStore
    from events.log import scan_topic

    flags = kafka or {}
    db = data_dir / "state.db"
    if db.exists():
        store = StateStore.open_readonly(db)  # beside a running service too
        try:
            # The outbox keeps unpublished and recent outputs; the embedded decisions log
            # has every published one.
            recorded = (r.value for r in scan_topic(data_dir / "log", DECISIONS_TOPIC))
            for value in itertools.chain(store.outputs("decision.made"), recorded):
                doc = json.loads(value)
                if doc.get("type") == "decision.made" and ident in (
                    doc["event_id"],
                    doc["data"]["caused_by"],
                ):
                    typer.echo(explain_text(doc))
                    return
        finally:
            store.close()
    elif not wants_kafka(flags):
        raise fail(f"no state in {data_dir} (run `goodwill run` first, or give --kafka)")
    if wants_kafka(flags):
        from engine.lookup import find_decision
        from events.kafka import KafkaUnavailable

        cfg = kafka_config(flags)
        where = cfg.decisions_topic + (f" (customer {customer}'s partition)" if customer else "")
        typer.echo(f"not in {data_dir}; reading {where} on {cfg.bootstrap_servers}", err=True)

        def progress(read: int) -> None:
            typer.echo(f"  {read:,} records read", err=True)

        try:
            found = find_decision(cfg, ident, customer, progress)
        except KafkaUnavailable as err:
            raise fail(str(err), 1) from None
        if found is not None:
            typer.echo(explain_text(found))
            return
        raise fail(f"no decision with id or cause '{ident}' on {where}", 1)
    from engine.redrive import find_dead_letter
    from engine.service import DEADLETTER_TOPIC

    letter = find_dead_letter(scan_topic(data_dir / "log", DEADLETTER_TOPIC), ident)
    if letter is not None:
        detail = " ".join(letter.detail.split())
        raise fail(
            f"no decision for '{ident}': the event was dead-lettered ({letter.reason}: {detail};"
            f" read from {letter.source}); fix it and send it again, see `goodwill redrive`",
            1,
        )
    raise fail(
        f"no decision with id or cause '{ident}' in {data_dir} (searched its outbox, which"
        f" keeps the last {OUTBOX_KEEP_SENT:,} published outputs, and its embedded decisions"
        f" log; with Kafka, give --kafka to search the {DECISIONS_TOPIC} topic, and"
        " --customer to read only that customer's partition)",
        1,
    )


@app.command()
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
    baseline, changed = _compile(policies), _compile(candidate)
    typer.echo(f"policy set {baseline.hash} (current) vs {changed.hash} (candidate)")
    for line in report(compare(baseline, changed, source), show):
        typer.echo(line)


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

    # the spec run writes which rules each scenario matched next to its cucumber JSON
    records = results.with_name(results.name.replace(".cucumber.json", ".records.json"))
    coverage = None
    if records.name != results.name and records.is_file():
        from engine.specs import rules_by_scenario

        coverage = rules_by_scenario(records)
    try:
        book = build_handbook(out, policies, features, results, coverage)
    except HandbookError as err:
        raise fail(str(err)) from None
    except PolicyError as err:
        typer.echo(err.render(), err=True)
        raise fail(f"policy set refused ({len(err.diagnostics)} problem(s))", 1) from None
    for line in summary_lines(book):
        typer.echo(line)


def _run_kafka(
    compiled: Any,
    flags: dict[str, Any],
    data_dir: Path,
    as_json: bool,
    batch: int,
    metrics_port: int | None,
    metrics_host: str,
    idle_polls: int,
    policies: Path,
    budget_stage: str,
    retain_days: int | None,
) -> None:
    from engine.kafka_service import ServiceOptions, run_kafka
    from engine.logs import setup_logging
    from events.codec import encode

    cfg = kafka_config(flags)
    setup_logging(_log_level("INFO"))
    options = ServiceOptions(
        data_dir=data_dir,
        batch=batch,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        idle_polls=idle_polls,
        policies=policies,
        budget_stage=budget_stage,
        retain_days=retain_days,
    )
    printer = (lambda event: typer.echo(encode(event).decode())) if as_json else None
    try:
        run_kafka(cfg, compiled, options, printer)
    except OSError as err:  # e.g. the metrics port is taken, or the data dir is not writable
        raise fail(f"cannot run: {err}", 1) from None
    except StateModeError as err:
        raise fail(str(err), 1) from None


topics_app = typer.Typer(help="Manage Goodwill's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
@kafka_options("events_topic", "decisions_topic", "deadletter_topic", "budget_topic")
def topics_create(
    partitions: Annotated[int, typer.Option(min=1, help="partitions per topic")] = 1,
    replication: Annotated[int, typer.Option(min=1, help="replication factor")] = 1,
    kafka: dict[str, Any] | None = None,
) -> None:
    """Create the events, decisions, dead-letter and budget topics (the budget topic with
    one partition); existing ones are left alone."""
    from events.kafka import KafkaUnavailable, create_topics

    cfg = kafka_config(kafka or {})
    try:
        created = create_topics(cfg, partitions, replication)
    except (KafkaUnavailable, ValueError) as err:
        raise fail(str(err), 1) from None
    for topic in (cfg.events_topic, cfg.decisions_topic, cfg.deadletter_topic, cfg.budget_topic):
        typer.echo(f"{topic}: {'created' if topic in created else 'exists, left alone'}")


@app.command()
@kafka_options("events_topic", "max_message_bytes")
def emit(
    source: Annotated[
        str, typer.Argument(help="a JSON file (one event or an array), JSON lines, or - for stdin")
    ],
    data_dir: DataDir = Path("goodwill-data"),
    embedded: Embedded = False,
    kafka: dict[str, Any] | None = None,
) -> None:
    """Validate events and send them, keyed by customer, to the events topic.

    Without Kafka settings they are appended to the embedded events log, which
    `goodwill run` (without a FILE) decides. An invalid event is reported with its line and
    field and not sent; the exit code is then 1.
    """
    from events.codec import DecodeError, encode
    from events.kafka import EventProducer, KafkaUnavailable, PublishError, event_key, read_events
    from events.log import FileLog, LogError

    flags = kafka or {}
    # Settings first: a wrong address is refused before the events are read and reported.
    cfg = kafka_config(flags) if not embedded and wants_kafka(flags) else None
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as err:
        raise fail(f"cannot read {source}: {err.strerror or err}") from None
    parsed = read_events(data, "<stdin>" if source == "-" else source)
    good = []
    for where, event in parsed:
        if isinstance(event, DecodeError):
            typer.echo(f"{where}: {event.reason}: {event.detail} (not sent)", err=True)
        else:
            good.append(event)
    bad = len(parsed) - len(good)
    if cfg is not None:
        try:
            with EventProducer(cfg) as producer:
                for event in good:
                    producer.send(event)
        except (KafkaUnavailable, PublishError) as err:
            raise fail(str(err), 1) from None
        where = f"{cfg.events_topic} on {cfg.bootstrap_servers}"
    else:
        try:
            with FileLog.open(data_dir / "log") as log:
                for event in good:
                    log.append(EMBEDDED_EVENTS, event_key(event), encode(event))
        except LogError as err:
            raise fail(f"{err} (is `goodwill run` running on {data_dir}?)", 1) from None
        where = str(data_dir / "log" / f"{EMBEDDED_EVENTS}.jsonl")
    typer.echo(
        f"sent {len(good)} event(s) to {where}" + (f"; {bad} invalid, not sent" if bad else "")
    )
    raise typer.Exit(1 if bad else 0)


@app.command()
@kafka_options("events_topic", "deadletter_topic", "max_message_bytes")
def redrive(
    reason: Annotated[
        list[str] | None,
        typer.Option(
            "--reason",
            metavar="REASON",
            help="send the dead letters with this reason (repeatable) [processing_failed]",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be sent; send nothing")
    ] = False,
    data_dir: DataDir = Path("goodwill-data"),
    embedded: Embedded = False,
    kafka: dict[str, Any] | None = None,
) -> None:
    """Send dead-lettered records to the events topic again, once their cause is fixed.

    Each goes with its original key, value and headers, and is decided after whatever
    arrived meanwhile; an event already decided is skipped by its id, so sending twice
    does no harm. Without Kafka settings: from the embedded dead-letter log to the
    embedded events log, which `goodwill run` (without a FILE) decides.
    """
    import difflib

    from engine.embedded import EVENTS_TOPIC
    from engine.redrive import REDRIVE_REASONS, DeadLetter
    from engine.redrive import redrive as send_again
    from engine.service import DEADLETTER_TOPIC
    from events.kafka import KafkaLog, KafkaUnavailable, PublishError
    from events.log import EventLog, FileLog, LogError

    reasons = reason or ["processing_failed"]
    for r in reasons:
        if r not in REDRIVE_REASONS:
            close = difflib.get_close_matches(r, REDRIVE_REASONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise fail(f"unknown reason {r!r}; {hint}known: {', '.join(REDRIVE_REASONS)}")
    flags = kafka or {}

    def show(letter: DeadLetter) -> None:
        detail = " ".join(letter.detail.split())
        typer.echo(f"{letter.source}  {letter.reason}  {detail}")

    log: EventLog
    try:
        if not embedded and wants_kafka(flags):
            cfg = kafka_config(flags)
            topics = {DEADLETTER_TOPIC: cfg.deadletter_topic, EVENTS_TOPIC: cfg.events_topic}
            log = KafkaLog(cfg, topics=topics)
            where = f"{cfg.events_topic} on {cfg.bootstrap_servers}"
        else:
            if not (data_dir / "log").is_dir():  # a mistyped --data-dir is not "nothing to do"
                raise fail(f"no embedded log in {data_dir}: nothing was run or emitted there", 1)
            log = FileLog.open(data_dir / "log")
            where = str(data_dir / "log" / f"{EVENTS_TOPIC}.jsonl")
    except KafkaUnavailable as err:
        raise fail(str(err), 1) from None
    except LogError as err:
        raise fail(f"{err} (is `goodwill run` running on {data_dir}?)", 1) from None
    try:
        report = send_again(log, set(reasons), send=not dry_run, progress=show)
    except (KafkaUnavailable, PublishError, LogError, RuntimeError) as err:
        raise fail(f"{err}; what was sent before it stays sent", 1) from None
    finally:
        log.close()
    for letter in report.cut:
        typer.echo(f"{letter.source}  {letter.reason}  not sent: only a cut copy was kept")
    left = ", ".join(f"{r} {n}" for r, n in sorted(report.left.items()))
    verb = "would send" if dry_run else "sent"
    typer.echo(
        f"{verb} {len(report.sent)} dead letter(s) ({', '.join(reasons)}) to {where}"
        + (f"; left alone: {left}" if left else "")
    )


@app.command()
@kafka_options()
def rebuild(
    data_dir: DataDir = Path("goodwill-data"),
    policies: Policies = Path("policies"),
    idle_polls: Annotated[
        int, typer.Option(min=1, help="empty polls in a row that mean a topic is read to its end")
    ] = 5,
    poll_ms: Annotated[int, typer.Option(min=10, help="how long one poll waits")] = 200,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="records per transaction")] = 500,
    budget_stage: BudgetStageOption = BudgetStageMode.local,
    retain_days: RetainDays = None,
    kafka: dict[str, Any] | None = None,
) -> None:
    """Rebuild lost state from the events and decisions topics into an empty --data-dir.

    Recorded decisions are folded as facts, never decided again; inputs the history has not
    decided are then decided normally (their outputs are published by the next `run`).
    """
    from engine.kafka_service import ServiceOptions
    from engine.logs import setup_logging
    from engine.rebuild import rebuild as rebuild_state
    from engine.state import StateStore
    from events.kafka import KafkaUnavailable

    cfg = kafka_config(kafka or {})
    if (data_dir / "state.db").exists():
        with StateStore.open(data_dir / "state.db") as store:
            if store.stats()["events_seen"] or store.meta("policy_set"):
                raise fail(f"{data_dir} already holds state; rebuild into an empty --data-dir")
    compiled = _compile(policies)
    setup_logging(_log_level("WARNING"))
    options = ServiceOptions(
        data_dir=data_dir,
        batch=batch,
        poll_ms=poll_ms,
        idle_polls=idle_polls,
        budget_stage=budget_stage.value,
        retain_days=retain_days,
    )
    try:
        report = rebuild_state(cfg, compiled, options)
    except (KafkaUnavailable, StateModeError) as err:
        raise fail(str(err), 1) from None
    typer.echo(
        f"rebuilt {data_dir}: {report.inputs} input records, {report.recalled} recorded decisions "
        f"folded, {report.decided} decided now, {report.pending} outputs to publish"
    )
    typer.echo(f"state digest {report.digest}")


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
    except OSError as err:  # a directory that cannot be made, a disk that is full, ...
        where = f"{err.filename}: " if err.filename else ""
        typer.echo(f"goodwill: {where}{err.strerror or err}", err=True)
        code = 1
    except typer.TyperException as err:  # every usage error of the CLI library derives from it
        if type(err).__name__ == "NoArgsIsHelpError":  # `goodwill topics`: its help, as for
            typer.echo(err.format_message())  # `goodwill` alone
            sys.exit(0)
        ctx = getattr(err, "ctx", None)
        where = ctx.command_path if ctx is not None else "goodwill"
        typer.echo(f"{where}: {err.format_message()} (see `{where} --help`)", err=True)
        code = getattr(err, "exit_code", 2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # python -m engine.cli
    main()
