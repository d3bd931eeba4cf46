"""Retention (`--retain-days`): late events are dead-lettered, and history no event the
service accepts can reach is forgotten; decisions on the accepted events do not change."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.compile import load
from engine.decide import Decider
from engine.micros import DAY_US, datetime_of, micros
from engine.service import DEADLETTER_TOPIC, DECISIONS_TOPIC, Processor
from engine.state import StateStore
from events.log import Record
from tests.samples import sample
from tests.test_cli import goodwill as run_cli

ROOT = Path(__file__).resolve().parent.parent
COMPILED = load(ROOT / "policies")
EXAMPLE = (ROOT / "examples" / "shop-day.jsonl").read_bytes().splitlines()


def _weeks_of_example(weeks: int) -> list[bytes]:
    """The example (five days) again in each of `weeks` weeks, every copy with its own
    event ids (and the bad lines as they are)."""
    lines = []
    for week in range(weeks):
        for line in EXAMPLE:
            try:
                event = json.loads(line)
                at = datetime.fromisoformat(event["occurred_at"]) + timedelta(weeks=week)
                event["occurred_at"] = at.isoformat()
                event["event_id"] = f"w{week}-{event['event_id']}"
            except (ValueError, KeyError, TypeError):
                lines.append(line)  # a deliberately bad line stays bad
                continue
            lines.append(json.dumps(event).encode())
    return lines


def _run(path: Path, lines: list[bytes], batch: int = 500, retain: int | None = None) -> StateStore:
    store = StateStore.open(path)
    if retain is not None:
        store.retain(retain)
    processor = Processor(store, Decider(COMPILED))
    records = [Record("in", 0, i, None, line) for i, line in enumerate(lines)]
    for start in range(0, len(records), batch):
        processor.process(records[start : start + batch])
    return store


def _outputs(store: StateStore, topic: str) -> list[bytes]:
    return [row[3] for row in store.outbox_pending(1_000_000) if row[1] == topic]


def _count(store: StateStore, sql: str, *args: Any) -> int:
    return int(store._cur.execute(sql, args).fetchone()[0])


def test_retention_decides_the_same_and_forgets_what_no_event_can_reach(tmp_path: Path) -> None:
    lines = _weeks_of_example(4)
    kept = _run(tmp_path / "kept", lines)
    pruned = _run(tmp_path / "pruned", lines, retain=2)
    try:
        assert _outputs(pruned, DECISIONS_TOPIC) == _outputs(kept, DECISIONS_TOPIC)
        assert len(_outputs(kept, DECISIONS_TOPIC)) > 2000
        # the same dead letters: the bad lines, and no event of the stream is late
        assert _outputs(pruned, DEADLETTER_TOPIC) == _outputs(kept, DEADLETTER_TOPIC)
        watermark = pruned.watermark()
        assert watermark is not None
        cutoff = (micros(watermark) - 2 * DAY_US) // DAY_US * DAY_US
        seen = "SELECT count(*) FROM seen WHERE at < ?"
        assert _count(kept, seen, cutoff) > 1000  # everything is kept without retention
        assert _count(pruned, seen, cutoff) == 0
        assert _count(pruned, "SELECT count(*) FROM seen") > 100  # the last days' ids
        overdue = "SELECT count(*) FROM followups WHERE state = 1 AND due_at < ?"
        assert _count(kept, overdue, cutoff) > 0
        assert _count(pruned, overdue, cutoff) == 0
        # the state policies read is kept whatever its age
        for table in ("customers", "orders", "cases", "budgets", "reps"):
            sql = f"SELECT count(*) FROM {table}"
            assert _count(pruned, sql) == _count(kept, sql) > 0
    finally:
        kept.close()
        pruned.close()


@pytest.mark.parametrize("batch", [1, 37])
def test_what_retention_keeps_does_not_depend_on_where_batches_end(
    tmp_path: Path, batch: int
) -> None:
    lines = _weeks_of_example(3)
    one = _run(tmp_path / "one", lines, batch=500, retain=1)
    other = _run(tmp_path / "other", lines, batch=batch, retain=1)
    try:
        assert other.digest() == one.digest()
    finally:
        one.close()
        other.close()


def _retaining(path: Path, days: int) -> tuple[StateStore, Processor]:
    store = StateStore.open(path)
    store.retain(days)
    return store, Processor(store, Decider(COMPILED))


def _event(kind: str, event_id: str, at: str, **data: Any) -> bytes:
    return json.dumps(sample(kind, event_id=event_id, occurred_at=at, **data)).encode()


def test_a_late_event_is_dead_lettered_and_a_forgotten_one_is_never_decided_again(
    tmp_path: Path,
) -> None:
    store, processor = _retaining(tmp_path, 1)
    request = _event("remedy.requested", "r-1", "2026-11-02T10:00:00+00:00")
    batches = [
        [_event("contact.opened", "c-1", "2026-11-02T09:00:00+00:00"), request],
        [_event("clock.tick", "t-1", "2026-11-05T12:00:00+00:00")],  # the first day is gone
        [
            request,  # the same event again: its id is forgotten, and it is late
            _event("remedy.requested", "r-2", "2026-11-04T11:00:00+00:00"),  # late
            _event("remedy.requested", "r-3", "2026-11-04T13:00:00+00:00"),  # in time
        ],
    ]
    offset = 0
    for lines in batches:
        processor.process([Record("in", 0, offset + i, None, v) for i, v in enumerate(lines)])
        offset += len(lines)
    try:
        assert _count(store, "SELECT count(*) FROM seen WHERE event_id = 'r-1'") == 0
        outputs = [json.loads(v) for v in _outputs(store, DECISIONS_TOPIC)]
        decided = [o["data"]["caused_by"] for o in outputs if o["type"] == "decision.made"]
        assert decided.count("r-1") == 1
        assert "r-2" not in decided and "r-3" in decided
        dead = [row for row in store.outbox_pending(100) if row[1] == DEADLETTER_TOPIC]
        assert [json.loads(row[3])["event_id"] for row in dead] == ["r-1", "r-2"]
        headers = dict(dead[1][4])
        assert headers["goodwill.reason"] == b"late"
        detail = headers["goodwill.detail"].decode()
        assert "more than 1 day before the watermark 2026-11-05T12:00:00+00:00" in detail
        assert "--retain-days" in detail
        assert processor.tally.deadlettered == {"late": 2}
    finally:
        store.close()


def test_the_setting_is_kept_with_the_state_and_old_files_gain_event_times(
    tmp_path: Path,
) -> None:
    with StateStore.open(tmp_path) as store:
        assert store.retain_days is None
        # a file written before event times were kept for ids
        store._conn.execute("DROP TABLE seen")
        store._conn.execute("CREATE TABLE seen (event_id TEXT PRIMARY KEY) WITHOUT ROWID")
        store._conn.execute("INSERT INTO seen VALUES ('from-before')")
    with StateStore.open(tmp_path) as store:
        store.retain(3)
        assert store.first_sighting("new", datetime.fromisoformat("2026-11-02T10:00:00+00:00"))
    with StateStore.open(tmp_path) as store:
        assert store.retain_days == 3  # without asking again
        rows = dict(store._cur.execute("SELECT event_id, at FROM seen").fetchall())
        assert rows["from-before"] is None  # its age is not known: never forgotten
        assert rows["new"] == micros(datetime.fromisoformat("2026-11-02T10:00:00+00:00"))
        with pytest.raises(ValueError, match="reserved"):
            store.set_meta("retain_days", "1")
        with pytest.raises(ValueError, match="at least 1 day"):
            store.retain(0)


def test_goodwill_run_takes_retain_days_and_status_shows_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = run_cli("run", str(ROOT / "examples" / "shop-day.jsonl"), "--retain-days", "0")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "--retain-days" in bad.stderr
    ran = run_cli(
        "run", str(ROOT / "examples" / "shop-day.jsonl"), "--data-dir", str(data), "-q",
        "--retain-days", "30",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    status = run_cli("status", "--data-dir", str(data), "--json")
    assert json.loads(status.stdout)["retain_days"] == 30
    text = run_cli("status", "--data-dir", str(data)).stdout
    assert "retention    30 days of event time" in text
    with sqlite3.connect(data / "state.db") as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema")}
    assert "seen_by_time" in indexes


def test_a_rebuild_folds_a_recorded_decision_even_where_its_event_looks_late(
    tmp_path: Path,
) -> None:
    # A rebuild may read the partitions in another interleaving than the live run did, so
    # an event the live run accepted can look late; its recorded decision is a fact and is
    # folded, while an event without one is dead-lettered as late.
    from engine.outcome import Outcome
    from events.codec import decode

    live = StateStore.open(tmp_path / "live")
    decider = Decider(COMPILED)
    opened = _event("contact.opened", "c-1", "2026-11-02T09:00:00+00:00")
    recorded = {}
    for value in (opened,):
        event = decode(value)
        live.apply_event(event)
        recorded[event.event_id] = decider.decide(event, live.enrich(event), live)
    live.close()

    class Recorded:
        def outcome(self, event: Any) -> Outcome | None:
            return recorded.get(event.event_id)

        def raw(self, ident: str) -> bytes | None:
            found = [o.raw for o in recorded.values() if o.effects.decision_id == ident]
            return found[0] if found else None

    store = StateStore.open(tmp_path / "rebuilt")
    store.retain(1)
    processor = Processor(store, decider, recall=Recorded())
    tick = _event("clock.tick", "t-1", "2026-11-05T12:00:00+00:00")
    unrecorded = _event("contact.opened", "c-2", "2026-11-02T10:00:00+00:00", case_id="case-2")
    lines = [tick, opened, unrecorded]
    processor.process([Record("in", 0, i, None, v) for i, v in enumerate(lines)])
    try:
        assert processor.tally.recalled == 1
        assert processor.tally.deadlettered == {"late": 1}
        dead = [row for row in store.outbox_pending(100) if row[1] == DEADLETTER_TOPIC]
        assert [json.loads(row[3])["event_id"] for row in dead] == ["c-2"]
        assert _count(store, "SELECT count(*) FROM followups WHERE case_id = 'case-1'") == 1
    finally:
        store.close()


def test_with_the_budget_stage_retention_keeps_every_defect_report(tmp_path: Path) -> None:
    # In split mode the reports are the budget stage's, and a stage that takes over the
    # budget partition may replay its topic from far behind this store's event time:
    # forgetting reports by this store's watermark could change what it counts.
    from engine.budget_stage import BudgetStage
    from tests.test_budget_stage import _forwarded

    tick = _event("clock.tick", "late-tick", "2026-12-20T08:00:00+00:00")
    lines = [*_weeks_of_example(3), tick]
    records = [Record("in", 0, i, None, line) for i, line in enumerate(lines)]

    def split(path: Path, retain: int | None) -> tuple[int, int]:
        with StateStore.open(path) as store:
            if retain is not None:
                store.retain(retain)
            customers = Processor(store, Decider(COMPILED), split=True)
            customers.process(records[:-1])
            BudgetStage(store, Decider(COMPILED)).process(_forwarded(store))
            customers.process(records[-1:])  # a new day: the store prunes
            seen = "SELECT count(*) FROM seen WHERE at IS NOT NULL"
            return _count(store, "SELECT count(*) FROM defects"), _count(store, seen)

    kept_reports, kept_ids = split(tmp_path / "kept", None)
    reports, ids = split(tmp_path / "retained", 1)
    assert reports == kept_reports > 0
    assert ids < kept_ids  # the rest of the history is forgotten as usual
    single = _run(tmp_path / "one", lines, retain=1)
    try:  # without the stage, old reports are forgotten
        assert _count(single, "SELECT count(*) FROM defects") < reports
    finally:
        single.close()


def test_a_forgotten_id_is_never_decided_again_whatever_partition_its_copy_is_on(
    tmp_path: Path,
) -> None:
    # Ids are forgotten by the store's watermark, over all its partitions; lateness is
    # measured by the same clock, so a copy of a forgotten event is late on a partition
    # that lags behind too, not decided a second time.
    store, processor = _retaining(tmp_path, 3)

    def feed(partition: int, offset: int, *lines: bytes) -> None:
        processor.process(
            [Record("in", partition, offset + i, None, v) for i, v in enumerate(lines)]
        )

    old = _event("remedy.requested", "old-1", "2026-11-02T08:00:00+00:00")
    feed(1, 0, old)
    feed(0, 0, _event("clock.tick", "p0-a", "2026-11-10T08:00:00+00:00"))  # forgets old-1
    feed(1, 1, old, _event("remedy.requested", "p1-b", "2026-11-02T09:00:00+00:00"))
    try:
        assert _count(store, "SELECT count(*) FROM seen WHERE event_id = 'old-1'") == 0
        outputs = [json.loads(v) for v in _outputs(store, DECISIONS_TOPIC)]
        decided = [o["data"]["caused_by"] for o in outputs if o["type"] == "decision.made"]
        assert decided.count("old-1") == 1 and "p1-b" not in decided
        assert processor.tally.deadlettered == {"late": 2}
        # each partition's latest event time is kept with its position (see the warning)
        assert datetime_of(store.partition_time("in", 1) or 0).day == 2
        assert datetime_of(store.partition_time("in", 0) or 0).day == 10
    finally:
        store.close()
    with StateStore.open(tmp_path) as again:
        assert datetime_of(again.partition_time("in", 1) or 0).day == 2


class _Consumer:
    """The three calls of a KafkaConsumer that resuming from stored positions makes."""

    def __init__(self) -> None:
        self.seeks: dict[int, int | None] = {}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks[tp.partition] = offset

    def seek_to_beginning(self, tp: Any) -> None:
        self.seeks[tp.partition] = None


def test_a_partition_that_comes_back_after_history_was_forgotten_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kafka import TopicPartition

    from engine.kafka_service import KafkaService
    from engine.service_options import ServiceOptions
    from events.kafka import KafkaConfig

    cfg = KafkaConfig(bootstrap_servers="127.0.0.1:9")  # never connected to here
    store, processor = _retaining(tmp_path, 3)
    for partition, day in ((1, "01"), (0, "20")):  # partition 1 left this store long ago
        tick = _event("clock.tick", f"t-{partition}", f"2026-11-{day}T08:00:00+00:00")
        processor.process([Record(cfg.events_topic, partition, 0, None, tick)])
    service = KafkaService(cfg, COMPILED, ServiceOptions(data_dir=tmp_path))
    service.store, service.consumer = store, _Consumer()  # type: ignore[assignment]
    try:
        service._load_stored()
        with caplog.at_level("WARNING", logger="goodwill.kafka"):
            service.seek_stored([TopicPartition(cfg.events_topic, p) for p in (0, 1)])
    finally:
        store.close()
    assert service.consumer.seeks == {0: 1, 1: 1}  # type: ignore[attr-defined]
    # (the second tick, 19 days on, is also warned of, by goodwill.service: a time jump)
    (warning,) = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and r.name == "goodwill.kafka"
    ]
    assert f"{cfg.events_topic}[1] resumes here from offset 1" in warning
    assert "2026-11-01T08:00:00+00:00" in warning and "goodwill rebuild" in warning
    assert "dead-lettered as late" in warning
