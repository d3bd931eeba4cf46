"""Rebuild lost state by folding the events topic and the decisions topic.

Decisions already recorded are facts: for an input whose decision is on the decisions
topic, the input is folded (`apply_event`) and then the recorded decision
(`apply_decision`) with its alerts, byte for byte — never decided again, since the
policy set may have changed since. Inputs without a recorded decision are then decided
normally (`rebuild`), or left to the live consumer (`fold_history`, the service's start).

Topics are read from the beginning with assign() + seek_to_beginning and bounded polling:
a partition is read to its end when its position reaches the high watermark a fetch
reported, or after `idle_polls` consecutive empty polls — never from ListOffsets or
seek_to_end, which are wrong on Tansu.

The recorded outputs are spooled into a temporary SQLite file beside the state, so memory
does not grow with the history. Outputs recorded as published are marked sent in the
outbox; anything the history lacks (a crash before publishing) stays pending and is
published by the service.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from engine.archive import keep
from engine.compile import CompiledSet
from engine.deadletter import copy_ident
from engine.decide import Decider
from engine.drain import drain, partitions_of
from engine.micros import datetime_of
from engine.outcome import Outcome
from engine.service import BUDGET_TOPIC, DEADLETTER_TOPIC, DECISIONS_TOPIC, Processor
from engine.service_options import ServiceOptions
from engine.state import StateStore
from engine.tally import Tally
from events.codec import DecodeError, decode
from events.kafka import KafkaConfig, make_consumer, to_record
from events.log import Record
from events.models import DecisionData, Envelope, RootcauseAlert

log = logging.getLogger("goodwill.rebuild")


SPOOL_FILE = "rebuild.spool.db"
_SPOOL_SCHEMA = """
CREATE TABLE recorded (
    ident TEXT PRIMARY KEY, type TEXT NOT NULL, cause TEXT, at TEXT NOT NULL, value BLOB NOT NULL
);
CREATE INDEX recorded_by_cause ON recorded (cause);
CREATE TABLE deadlettered (ident TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE forwarded (digest BLOB PRIMARY KEY) WITHOUT ROWID;
"""


@dataclass
class RebuildReport:
    recorded: int = 0  # outputs found on the decisions topic
    unreadable: int = 0  # records on the decisions topic that are not engine outputs
    inputs: int = 0  # input records folded
    recalled: int = 0  # decisions folded as recorded facts
    decided: int = 0  # decisions made now, for inputs the history had not decided
    pending: int = 0  # outputs left to publish
    digest: str = ""

    def fields(self) -> dict[str, Any]:
        """For a log line: every count, and the digest once there is one."""
        return {k: v for k, v in asdict(self).items() if k != "digest" or v}

    @property
    def empty(self) -> bool:
        """Nothing was on the topics to rebuild from."""
        return not (self.recorded or self.unreadable or self.inputs)


class Spool:
    """The recorded outputs, by id and by cause; the `Recall` a rebuilding Processor uses."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        for statement in _SPOOL_SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        self.returned: set[str] = set()  # idents handed to the outbox
        self.published: set[bytes] = set()  # their values, until marked sent

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)

    def add_output(self, value: bytes) -> bool:
        try:
            event = decode(value, outputs=True)
        except DecodeError:
            return False
        cause: str | None = None
        if isinstance(event.data, DecisionData):
            cause = event.data.caused_by
        elif isinstance(event.data, RootcauseAlert):
            cause = event.event_id.removeprefix(f"alert:{event.data.sku}:")
        self._db.execute(
            "INSERT OR IGNORE INTO recorded (ident, type, cause, at, value) VALUES (?, ?, ?, ?, ?)",
            (event.event_id, event.type, cause, event.occurred_at.isoformat(), value),
        )
        return True

    def add_deadletter(self, headers: Sequence[tuple[str, bytes]]) -> None:
        ident = copy_ident(headers)
        if ident is None:
            return
        self._db.execute("INSERT OR IGNORE INTO deadlettered (ident) VALUES (?)", (ident,))

    def add_forwarded(self, value: bytes) -> None:
        """A record the customer stage put on the budget topic (with --budget-stage kafka)."""
        digest = hashlib.sha256(value).digest()
        self._db.execute("INSERT OR IGNORE INTO forwarded (digest) VALUES (?)", (digest,))

    def was_forwarded(self, value: bytes) -> bool:
        digest = hashlib.sha256(value).digest()
        found = self._db.execute("SELECT 1 FROM forwarded WHERE digest = ?", (digest,)).fetchone()
        return found is not None

    def begin(self) -> None:
        self._db.execute("BEGIN")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def count(self) -> int:
        (n,) = self._db.execute("SELECT count(*) FROM recorded").fetchone()
        return int(n)

    def decided(self, event_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM recorded WHERE cause = ? AND type = 'decision.made'", (event_id,)
        ).fetchone()
        return row is not None

    # Recall ---------------------------------------------------------------------

    def outcome(self, event: Envelope) -> Outcome | None:
        rows = self._db.execute(
            "SELECT type, value FROM recorded WHERE cause = ? ORDER BY rowid", (event.event_id,)
        ).fetchall()
        decisions = [decode(v, outputs=True) for t, v in rows if t == "decision.made"]
        if not decisions:
            return None
        alerts = tuple(decode(v, outputs=True) for t, v in rows if t == "rootcause.alert")
        return Outcome.recorded(decisions[0], alerts)

    def raw(self, ident: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM recorded WHERE ident = ?", (ident,)).fetchone()
        if row is None:
            return None
        value: bytes = row[0]
        self.returned.add(ident)
        self.published.add(value)
        return value

    # ---------------------------------------------------------------------------

    def unreturned(self, kind: str) -> Iterator[Envelope]:
        """Recorded outputs of `kind` not handed to the outbox, oldest event time first."""
        rows = self._db.execute(
            "SELECT ident, value FROM recorded WHERE type = ? ORDER BY at, rowid", (kind,)
        ).fetchall()
        for ident, value in rows:
            if ident not in self.returned:
                yield decode(value, outputs=True)

    def was_deadlettered(self, ident: str) -> bool:
        found = self._db.execute("SELECT 1 FROM deadlettered WHERE ident = ?", (ident,)).fetchone()
        return found is not None


def spool(cfg: KafkaConfig, spool_: Spool, options: ServiceOptions) -> int:
    """Read the decisions and dead-letter topics (and with the budget stage, the budget
    topic, whose records the rebuilt store would forward again) into `spool_`; return the
    outputs found."""
    consumer = make_consumer(cfg, group=False)
    unreadable = 0
    topics = [cfg.decisions_topic, cfg.deadletter_topic]
    if options.budget_stage == "kafka":
        topics.append(cfg.budget_topic)
    try:
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in partitions_of(consumer, topic)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            for batch in drain(consumer, tps, options.idle_polls, options.poll_ms, 2000):
                spool_.begin()
                for r in batch:
                    if topic == cfg.deadletter_topic:
                        spool_.add_deadletter(r.headers or ())
                    elif topic == cfg.budget_topic:
                        if r.value is not None:
                            spool_.add_forwarded(r.value)
                    elif r.value is None or not spool_.add_output(r.value):
                        unreadable += 1
                spool_.commit()
    finally:
        consumer.close()
    if unreadable:
        log.warning(
            "%d record(s) on %s are not engine outputs; ignored", unreadable, cfg.decisions_topic
        )
    return unreadable


def fold_history(
    cfg: KafkaConfig,
    processor: Processor,
    options: ServiceOptions,
    stop: threading.Event | None = None,
) -> RebuildReport:
    """Fold every input whose decision is recorded (phase 1); positions end before the
    first input of each partition that the history has not decided."""
    store = processor.store
    data_dir: Path = options.data_dir
    spool_ = Spool(data_dir / SPOOL_FILE)
    report = RebuildReport()
    try:
        report.unreadable = spool(cfg, spool_, options)
        report.recorded = spool_.count()
        if report.recorded == 0:
            return report
        log.info("folding the recorded history", extra={"outputs": report.recorded})
        processor.recall = spool_
        _fold_recorded(cfg, processor, spool_, options, report, stop)
        for escalation in spool_.unreturned("followup.overdue"):
            processor.replay(escalation)
            _mark_published(store, spool_)
        processor.recall = None
        processor.fire_overdue()  # what the live run would have escalated by now
        report.recalled = processor.tally.recalled
    finally:
        processor.recall = None
        spool_.close()
    return report


def _fold_recorded(
    cfg: KafkaConfig,
    processor: Processor,
    spool_: Spool,
    options: ServiceOptions,
    report: RebuildReport,
    stop: threading.Event | None,
) -> None:
    store = processor.store
    activations = list(spool_.unreturned("policy_set.activated"))
    consumer = make_consumer(cfg, group=False)
    try:
        tps = _assign_from_store(consumer, cfg.events_topic, store)
        stopped: set[int] = set()
        # An activation is recorded at the watermark of its moment: it goes in as soon as
        # the folded history reaches that event time (before the first input for the first).
        watermark = store.watermark() or datetime_of(0)
        for batch in drain(consumer, tps, options.idle_polls, options.poll_ms, options.batch, stop):
            chunk: list[Record] = []
            for raw in batch:
                if raw.partition in stopped:
                    continue
                record = to_record(raw)
                try:
                    event: Envelope | None = decode(record.value)
                except DecodeError:
                    event = None  # dead-lettered again, as it was
                if event is not None and not (
                    spool_.decided(event.event_id) or store.seen(event.event_id)
                ):
                    # History ends here for this partition; the rest is decided afresh.
                    stopped.add(raw.partition)
                    consumer.pause(TopicPartition(raw.topic, raw.partition))
                    continue
                while activations and activations[0].occurred_at <= watermark:
                    _process(processor, spool_, chunk, report)
                    chunk = []
                    processor.replay(activations.pop(0))
                chunk.append(record)
                if event is not None:
                    watermark = max(watermark, event.occurred_at)
            _process(processor, spool_, chunk, report)
        for activation in activations:
            processor.replay(activation)
        _mark_published(store, spool_)
    finally:
        consumer.close()


def _process(
    processor: Processor, spool_: Spool, chunk: list[Record], report: RebuildReport
) -> None:
    if chunk:
        processor.process(chunk)
        report.inputs += len(chunk)
    _mark_published(processor.store, spool_)


def _mark_published(store: StateStore, spool_: Spool) -> None:
    """Mark sent the outbox rows the history shows as published."""
    limit = 1000
    while True:
        rows = store.outbox_pending(limit)
        sent = []
        for rowid, topic, _key, value, headers in rows:
            if topic == DECISIONS_TOPIC and value in spool_.published:
                sent.append(rowid)
                spool_.published.discard(value)
            elif (
                topic == DEADLETTER_TOPIC
                and (ident := copy_ident(headers)) is not None
                and spool_.was_deadlettered(ident)
            ) or (topic == BUDGET_TOPIC and spool_.was_forwarded(value)):
                sent.append(rowid)
        if sent:
            store.outbox_mark_sent(sent)
        if len(rows) < limit:
            return
        if not sent:
            limit *= 2  # the oldest rows are unpublished ones; look past them


def rebuild(
    cfg: KafkaConfig,
    compiled: CompiledSet,
    options: ServiceOptions,
    stop: threading.Event | None = None,
    progress: Callable[[Tally], None] | None = None,
) -> RebuildReport:
    """Rebuild `options.data_dir`'s state from Kafka: the recorded history as facts, then
    every input after it decided normally. Outputs of those decisions stay in the outbox
    for the service to publish. `progress` is told the counts after each batch."""
    data_dir: Path = options.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    store = StateStore.open(data_dir / "state.db")
    try:
        store.keep_mode("budget_stage", options.budget_stage, str(data_dir))
        store.rebuilding(True)  # until it is whole: a state that stops part way is refused
    except BaseException:
        store.close()
        raise
    if options.retain_days is not None:
        store.retain(options.retain_days)
    try:
        # With the budget stage, recorded charges are its to fold (it replays its topic).
        split = options.budget_stage == "kafka"
        processor = Processor(store, Decider(compiled), split=split)
        processor.on_batch = progress
        report = fold_history(cfg, processor, options, stop)
        keep(options.data_dir, compiled.policy_set)
        processor.activate()
        consumer = make_consumer(cfg, group=False)
        try:
            tps = _assign_from_store(consumer, cfg.events_topic, store)
            before = sum(processor.tally.outcomes.values())
            for batch in drain(
                consumer, tps, options.idle_polls, options.poll_ms, options.batch, stop
            ):
                processor.process([to_record(r) for r in batch])
                report.inputs += len(batch)
            report.decided = sum(processor.tally.outcomes.values()) - before
        finally:
            consumer.close()
        report.recalled = processor.tally.recalled
        store.rebuilding(False)
        report.pending = store.stats()["outputs_pending"]
        report.digest = store.digest()
        return report
    finally:
        store.close()


def _assign_from_store(consumer: Any, topic: str, store: StateStore) -> list[TopicPartition]:
    """Assign every partition of `topic`, each at the offset stored in `store` (or its start)."""
    tps = [TopicPartition(topic, p) for p in partitions_of(consumer, topic)]
    consumer.assign(tps)
    for tp in tps:
        position = store.position(tp.topic, tp.partition)
        if position is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, position)
    return tps
