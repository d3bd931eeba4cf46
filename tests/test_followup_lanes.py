"""Follow-up deadlines fire by the watermark of the partition the case lives on (docs/kafka.md,
"Delivery guarantees"), not by the latest event time of any partition.

Events are keyed by customer, so a case's history is on one partition; `clock.tick` and
`rep.assigned` go to every partition. One instance reading several partitions reads them
at different paces: if a follow-up fired when *another* partition's time passed its due
time, a case resolved in time on its own partition, not read yet, would be escalated —
and which ones would depend on the pace. Here the example stream is split across four
partitions as `goodwill emit` splits it and read in three very different orders: each
order must escalate the same follow-ups, with the same bytes, as the one-partition run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.compile import load
from engine.decide import Decider
from engine.service import Processor
from engine.state import StateStore
from events.codec import DecodeError, decode
from events.log import Record
from events.models import Envelope
from events.producer import BROADCAST, event_key
from tests.samples import ana_joins_east, sample

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop-day.jsonl"
PARTITIONS = 4
TOPIC = "goodwill.events"


def _partitioned() -> list[list[Record]]:
    """The example's valid events per partition, keyed as `EventProducer.send` keys them
    (a stand-in hash: which partition a key lands on does not matter here, only that a
    customer's events share one)."""
    parts: list[list[Record]] = [[] for _ in range(PARTITIONS)]
    for line in EXAMPLE.read_bytes().splitlines():
        try:
            event = decode(line)
        except DecodeError:
            continue
        key = event_key(event)
        if event.type in BROADCAST:
            targets: Sequence[int] = range(PARTITIONS)
        else:
            targets = [zlib.crc32(key or b"") % PARTITIONS]
        for p in targets:
            parts[p].append(Record(TOPIC, p, len(parts[p]), key, line))
    return parts


def _one_by_one(parts: list[list[Record]]) -> Iterator[Record]:
    for i in range(max(map(len, parts))):
        for part in parts:
            if i < len(part):
                yield part[i]


def _escalations(tmp: Path, records: Iterator[Record] | list[Record]) -> dict[str, bytes]:
    """Every followup.overdue the records lead to, by event id, with its bytes."""
    outputs: list[Envelope] = []
    store = StateStore.open(tmp / "state.db")
    processor = Processor(store, Decider(load(ROOT / "policies")), outputs.append)
    processor.activate()
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == 50:
            processor.process(batch)
            batch = []
    processor.process(batch)
    store.close()
    found = {
        o.event_id: json.dumps(o.model_dump(mode="json"), sort_keys=True).encode()
        for o in outputs
        if o.type == "followup.overdue"
    }
    assert len(found) == sum(o.type == "followup.overdue" for o in outputs), "each once"
    return found


@pytest.fixture(scope="module")
def one_partition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    records = [
        Record(TOPIC, 0, offset, None, line)
        for offset, line in enumerate(EXAMPLE.read_bytes().splitlines())
    ]
    return _escalations(tmp_path_factory.mktemp("one"), records)


@pytest.mark.parametrize("order", ["partition after partition", "last first", "one by one"])
def test_each_reading_order_escalates_the_same_follow_ups(
    order: str, one_partition: dict[str, bytes], tmp_path: Path
) -> None:
    parts = _partitioned()
    assert all(parts), "every partition has events"
    records: Iterator[Record] | list[Record]
    if order == "partition after partition":
        records = [r for part in parts for r in part]
    elif order == "last first":
        records = [r for part in reversed(parts) for r in part]
    else:
        records = _one_by_one(parts)
    found = _escalations(tmp_path, records)
    assert len(one_partition) == 8  # examples/README.md, "Follow-ups that go overdue"
    assert sorted(found) == sorted(one_partition)
    first = _escalations(tmp_path / "again", [r for part in parts for r in part])
    assert found == first, "the same bytes whatever the order"


def _overdue_cases(tmp: Path, feed: list[tuple[int, dict[str, Any]]]) -> list[str]:
    outputs: list[Envelope] = []
    with StateStore.open(tmp / "state.db") as store:
        processor = Processor(store, Decider(load(ROOT / "policies")), outputs.append)
        offsets = [0] * PARTITIONS
        for partition, event in feed:
            value = json.dumps(event).encode()
            processor.process([Record(TOPIC, partition, offsets[partition], None, value)])
            offsets[partition] += 1
    return [o.data.case_id for o in outputs if o.type == "followup.overdue"]  # type: ignore[attr-defined]


def test_a_case_resolved_after_its_deadline_is_escalated_however_partitions_are_read(
    tmp_path: Path,
) -> None:
    # case-1 opens on Monday 10:00 (a 48-hour follow-up: due Wednesday 10:00) and is
    # resolved on Wednesday 11:00, late; another customer writes on Wednesday 10:30.
    setup = [
        ana_joins_east(),
        sample("contact.opened", event_id="k1", rep_id="ana", occurred_at="2026-11-02T10:00:00Z"),
    ]
    other = sample(
        "contact.opened",
        event_id="k2",
        customer_id="cust-2",
        case_id="case-2",
        rep_id="ana",
        occurred_at="2026-11-04T10:30:00Z",
    )
    late = sample("case.resolved", event_id="res", occurred_at="2026-11-04T11:00:00Z")
    # One partition: the other customer's event passes the deadline first.
    one = _overdue_cases(tmp_path / "one", [(0, e) for e in [*setup, other, late]])
    assert one == ["case-1"]
    # Two partitions, the other customer's read first or last: case-1's own partition
    # reaches the deadline only with the resolution, which comes too late all the same.
    for name, feed in (
        ("first", [(1, other), *((0, e) for e in [*setup, late])]),
        ("last", [*((0, e) for e in [*setup, late]), (1, other)]),
    ):
        assert _overdue_cases(tmp_path / name, feed) == one, name
    # Resolved in time on its own partition, while the other partition is far ahead.
    in_time = sample("case.resolved", event_id="res", occurred_at="2026-11-04T09:00:00Z")
    ahead = sample("clock.tick", event_id="t", occurred_at="2026-11-09T00:00:00Z")
    feed = [(1, ahead), *((0, e) for e in [*setup, in_time])]
    assert _overdue_cases(tmp_path / "in-time", feed) == []
