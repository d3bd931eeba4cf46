"""`goodwill explain` and `verify`: why a decision was made, and that it is reproduced.

`explain` is for whoever is asked about one decision. It looks in the places a decision
may still be, nearest first: the state's outbox, the embedded decisions log, the decisions
topic (only the customer's partition when it is given); an event that was dead-lettered
instead is said so. `verify` is for an auditor: it decides a data directory's inputs again
from scratch and compares every output with the one recorded (`engine.verify`).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli_options import (
    SCRATCH_HINT,
    DataDir,
    compile_policies,
    fail,
    kafka_config,
    kafka_options,
    state_unreadable,
    wants_kafka,
)


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
    from engine.outbox import OUTBOX_KEEP_SENT
    from engine.report import explain_text
    from engine.service import DECISIONS_TOPIC
    from engine.state import StateStore
    from events.log import LogCorrupted, scan_topic

    flags = kafka or {}
    db = data_dir / "state.db"
    if db.exists():
        try:
            store = StateStore.open_readonly(db)  # beside a running service too
        except sqlite3.Error as err:
            raise state_unreadable(data_dir, err) from None
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
                    typer.echo(explain_text(doc, kept_files(data_dir, doc)))
                    return
        except LogCorrupted as err:
            raise fail(f"{err} (searched up to it)", 1) from None
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
            typer.echo(explain_text(found, kept_files(data_dir, found)))
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


def kept_files(data_dir: Path, doc: dict[str, Any]) -> Path | None:
    """Where `data_dir` keeps the files of the policy set that made decision `doc`."""
    from engine.archive import SETS_DIR

    where = data_dir / SETS_DIR / str(doc["data"]["policy_set"])
    return where if where.is_dir() else None


def verify(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(
            help="the .jsonl files the history decided, in the order it read them; omit for"
            " the data directory's embedded events log",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = Path("goodwill-data"),
    policies: Annotated[
        list[Path] | None,
        typer.Option(
            "--policies",
            help="a policy directory, for a set the data directory has not kept (each run"
            " keeps the set it activates in DATA_DIR/policy-sets/); repeatable  [default:"
            " policies, when none is kept]",
            envvar="GOODWILL_POLICIES",
            metavar="<path>",
            show_default=False,
        ),
    ] = None,
    events_log: Annotated[
        bool,
        typer.Option(
            "--events-log",
            help="after the files, also replay the data directory's embedded events log (what"
            " `goodwill emit` and `goodwill redrive` sent there without Kafka)",
        ),
    ] = False,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="records per transaction")] = 500,
    show: Annotated[int, typer.Option(min=0, help="how many mismatches to list")] = 20,
) -> None:
    """Decide the inputs of DATA_DIR's history again and compare every output byte for byte.

    Each event is decided by the policy set its recorded decision names, as kept in the
    data directory by the run that activated it (or given with --policies), from scratch in
    a throwaway directory; exit 0 when every recorded decision, follow-up escalation and
    alert is made again exactly, 1 otherwise. A history decided on Kafka cannot be
    verified: how partitions interleaved is not kept.
    """
    from engine import embedded
    from engine.archive import kept
    from engine.compile import CompiledSet
    from engine.state_file import StateVersionError
    from engine.verdict import report
    from engine.verify import NoHistory, ScratchFailed, recorded_log
    from engine.verify import verify as replay
    from events.log import LogCorrupted, Record, scan_topic

    files = sources or []
    for path in files:
        if not path.is_file():
            raise fail(f"no such input file: {path}")
    try:
        recorded_log(data_dir)
    except NoHistory as err:
        raise fail(str(err), 1) from None
    events_file = data_dir / "log" / f"{embedded.EVENTS_TOPIC}.jsonl"
    events_log = events_log or not files  # with no file, the embedded events log
    if events_log and not events_file.is_file():
        raise fail(_no_events_log(data_dir, events_file, bool(files)), 1)
    archive = kept(data_dir)
    for line in archive.refused:
        typer.echo(f"goodwill: warning: {line}", err=True)
    sets: dict[str, CompiledSet] = dict(archive.sets)
    for policy_set, where in archive.where.items():
        typer.echo(f"policy set {policy_set} kept in {where}")
    for directory in policies or ([] if sets else [Path("policies")]):
        compiled = compile_policies(directory)
        sets.setdefault(compiled.hash, compiled)
        typer.echo(f"policy set {compiled.hash} from {directory}")
    read: list[Iterator[Record]] = [embedded.file_records(p, 1) for p in files]
    named = [str(p) for p in files]
    if events_log:
        read.append(scan_topic(data_dir / "log", embedded.EVENTS_TOPIC))
        named.append(f"the embedded events log of {data_dir}")
    inputs = itertools.chain.from_iterable(read)
    what = ", then ".join(named)
    typer.echo(f"replaying {what} against {data_dir / 'log'}", err=True)

    def progress(done: int) -> None:
        typer.echo(f"  {done:,} records replayed", err=True)

    try:
        verdict = replay(data_dir, inputs, sets, batch, show, progress)
    except (StateVersionError, LogCorrupted) as err:  # the state's retention, a damaged log
        raise fail(str(err), 1) from None
    except ScratchFailed as err:
        raise fail(f"{err}{SCRATCH_HINT}", 1) from None
    except sqlite3.Error as err:  # reading the state's retention
        raise state_unreadable(data_dir, err) from None
    for line in report(verdict):
        typer.echo(line)
    raise typer.Exit(0 if verdict.ok else 1)


def _no_events_log(data_dir: Path, events_file: Path, files_given: bool) -> str:
    """Why there is nothing to replay after the files: a history read from files names
    them, so an auditor is not shown every output as missing."""
    from engine.state import StateStore
    from engine.state_file import StateVersionError

    said = f"{data_dir} has no embedded events log ({events_file})"
    if files_given:
        return said
    try:
        store = StateStore.open_readonly(data_dir)
        try:
            read = [
                s.removeprefix("file:") for s, _, _ in store.positions() if s.startswith("file:")
            ]
        finally:
            store.close()
    except (FileNotFoundError, StateVersionError, sqlite3.Error):
        read = []
    names = f"; its state names {', '.join(read)}" if read else ""
    return f"{said}: give the files its history read, in the order it read them{names}"
