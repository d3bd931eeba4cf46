"""`goodwill emit`, `redrive` and `schema`: the commands on the producers' side — sending
events to the events topic (or the embedded log), sending dead-lettered ones again once
their cause is fixed, and the JSON Schemas producers validate against.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli_options import (
    DataDir,
    Embedded,
    directory,
    fail,
    kafka_config,
    kafka_options,
    room_hint,
    wants_kafka,
)

if TYPE_CHECKING:
    from events.codec import DecodeError

EMBEDDED_EVENTS = "goodwill.events"  # engine.embedded.EVENTS_TOPIC, without importing the engine
_SHOWN = 20  # problems listed for one invalid event


def schema(
    out: Annotated[
        Path,
        typer.Option("--out", help="directory to write the schemas to", callback=directory),
    ],
) -> None:
    """Write a JSON Schema per event type for producers."""
    from events.schema import write_schemas

    try:
        written = write_schemas(out)
    except OSError as err:
        if err.filename is not None:
            raise  # `main` names the file
        hint = room_hint(err)
        raise fail(f"cannot write the schemas to {out}: {err.strerror}{hint}", 1) from None
    typer.echo(f"wrote {len(written)} files to {out}")


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
    from events.kafka import KafkaUnavailable, PublishError
    from events.log import FileLog, LogError
    from events.producer import EventProducer, dated_ahead, event_key, read_events

    flags = kafka or {}
    # Settings first: a wrong address is refused before the events are read and reported.
    cfg = kafka_config(flags) if not embedded and wants_kafka(flags) else None
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as err:
        raise fail(f"cannot read {source}: {err.strerror or err}") from None
    parsed = read_events(data, "<stdin>" if source == "-" else source)
    good = []
    now = datetime.now(UTC)
    for where, event in parsed:
        if isinstance(event, DecodeError):
            _report(where, event)
            continue
        good.append(event)
        if (ahead := dated_ahead(event, now)) is not None:
            typer.echo(
                f"{where}: warning: occurred_at {event.occurred_at.isoformat()} is"
                f" {_span(ahead)} ahead of this machine's clock; it is sent, and Goodwill's"
                " event time (follow-up deadlines, retention) moves to it",
                err=True,
            )
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


def _span(delta: timedelta) -> str:
    return (
        f"{delta.days:,} days" if delta.days >= 2 else f"{delta.total_seconds() / 3600:.0f} hours"
    )


def _report(where: str, err: DecodeError) -> None:
    """Every problem of an invalid event, one line each (the codec's detail names the
    first and counts the rest), so that one fix and one more try put the event right."""
    messages = [message for _, message in err.errors]
    for i, message in enumerate(messages[:_SHOWN]):
        typer.echo(
            f"{where}: {err.reason}: {message}" + (" (not sent)" if i == 0 else ""), err=True
        )
    if len(messages) > _SHOWN:
        typer.echo(f"{where}: {err.reason}: {len(messages) - _SHOWN} more", err=True)


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
    from events.kafka import KafkaUnavailable, PublishError
    from events.kafka_log import KafkaLog
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
