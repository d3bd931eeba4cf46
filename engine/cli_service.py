"""`goodwill run`, `status`, `rebuild` and `topics create`: the commands of whoever runs
the service — deciding events (embedded or in a Kafka consumer group), reading where a data
directory's state stands, rebuilding lost state, and creating the topics. The options only
they take (--budget-stage, --retain-days, GOODWILL_LOG_LEVEL) are here with them.
"""

from __future__ import annotations

import json
import os
import sqlite3
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli_options import (
    KAFKA_FLAGS,
    DataDir,
    Embedded,
    Policies,
    Progress,
    compile_policies,
    fail,
    kafka_config,
    kafka_options,
    sqlite_hint,
    state_unreadable,
    wants_kafka,
)
from engine.ledger import StateModeError


class BudgetStageMode(StrEnum):
    local = "local"
    kafka = "kafka"


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
    from engine.micros import datetime_of

    return None if us is None else datetime_of(us).isoformat()


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
        typer.Option(
            "--quiet",
            "-q",
            help="print only the summary (and dead letters and, every 100,000 records, how far"
            " it has got, on stderr)",
        ),
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

    from engine.embedded import StateLost, run_embedded, stop_after_batch
    from engine.report import Printer
    from engine.state_file import StateVersionError
    from events.log import LogCorrupted, LogError

    flags = kafka or {}
    if flags.get("bootstrap_servers") and (source is not None or embedded):
        raise fail(
            "--kafka reads the events topic; a FILE or --embedded is for the embedded backend"
        )
    compiled = compile_policies(policies)
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
    kafka_only = [KAFKA_FLAGS[name][0] for name in flags]
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
    progress = Progress() if quiet or as_json else None  # else each decision shows it
    try:
        with stop_after_batch() as stopping:
            summary = run_embedded(
                compiled, data_dir, source, batch, printer.output, retain_days, stopping, progress
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
    except (StateVersionError, StateLost, StateModeError) as err:
        raise fail(str(err), 1) from None
    except sqlite3.Error as err:  # a damaged state file, a full disk, ...
        raise _state_failed(data_dir, err) from None
    printer.summary(summary)
    if summary.stopped:
        raise fail(
            "stopped by a signal after a whole batch; run the same command again to go on", 130
        )


def status(
    data_dir: DataDir = Path("goodwill-data"),
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Show where a data directory's state stands: policy set, event time, positions,
    what it holds and what waits to be published. Safe beside a running service."""

    from engine.archive import SETS_DIR
    from engine.state import StateStore
    from engine.state_file import StateVersionError

    try:
        store = StateStore.open_readonly(data_dir)
    except (FileNotFoundError, StateVersionError, sqlite3.Error) as err:
        raise state_unreadable(data_dir, err) from None
    try:
        watermark = store.watermark()
        found: dict[str, Any] = {
            "data_dir": str(data_dir),
            "state_bytes": sum(f.stat().st_size for f in data_dir.glob("state.db*") if f.is_file()),
            "policy_set": store.meta("policy_set"),
            "policy_sets_kept": sorted(
                d.name for d in (data_dir / SETS_DIR).glob("*") if not d.name.startswith(".")
            ),
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
        raise state_unreadable(data_dir, err) from None
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(found, separators=(",", ":")))
        return
    counts = found["counts"]
    size = f"{found['state_bytes'] / 1e6:.1f} MB with its log"
    typer.echo(f"state        {data_dir / 'state.db'} ({size})")
    typer.echo(f"policy set   {found['policy_set'] or '(none activated yet)'}")
    if found["policy_sets_kept"]:
        kept = len(found["policy_sets_kept"])
        typer.echo(f"kept sets    {kept}, their files in {data_dir / SETS_DIR}/<hash>/")
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
    from engine.kafka_service import run_kafka
    from engine.logs import setup_logging
    from engine.service_options import ServiceOptions
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
    except sqlite3.Error as err:  # a damaged state file (the running service retries a full disk)
        raise _state_failed(data_dir, err) from None


def _state_failed(data_dir: Path, err: sqlite3.Error) -> typer.Exit:
    """The one line a command ends with when the state file fails it: damaged, or its disk
    full (SQLite says "disk I/O error" when a file-size limit refuses a write)."""
    return fail(f"the state in {data_dir}: {err}{sqlite_hint(err)}", 1)


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
    from engine.logs import setup_logging
    from engine.rebuild import rebuild as rebuild_state
    from engine.service_options import ServiceOptions
    from engine.state import StateStore
    from events.kafka import KafkaUnavailable

    cfg = kafka_config(kafka or {})
    if (data_dir / "state.db").exists():
        try:
            with StateStore.open(data_dir / "state.db") as store:
                store.check_whole(str(data_dir))
                held = store.stats()["events_seen"] or store.meta("policy_set")
        except sqlite3.Error as err:
            raise _state_failed(data_dir, err) from None
        except StateModeError as err:
            raise fail(str(err), 1) from None
        if held:
            raise fail(f"{data_dir} already holds state; rebuild into an empty --data-dir")
    compiled = compile_policies(policies)
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
        report = rebuild_state(cfg, compiled, options, progress=Progress())
    except (KafkaUnavailable, StateModeError) as err:
        raise fail(str(err), 1) from None
    except sqlite3.Error as err:  # its disk full, most likely: it was an empty directory
        room = " (if the disk is full or a file is at its size limit, free space first)"
        raise fail(
            f"rebuilding into {data_dir} stopped part way: {err}"
            f"{room if 'full' in str(err) or 'I/O' in str(err) else ''}; its state is partial"
            f" and is refused: delete {data_dir / 'state.db'}* and rebuild again",
            1,
        ) from None
    typer.echo(
        f"rebuilt {data_dir}: {report.inputs} input records, {report.recalled} recorded decisions "
        f"folded, {report.decided} decided now, {report.pending} outputs to publish"
    )
    typer.echo(f"state digest {report.digest}")
