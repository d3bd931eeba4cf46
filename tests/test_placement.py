"""Whether an event came on the partition its key places it on (engine/placement.py),
without a broker: tests/test_kafka_service.py sends one misplaced event through Kafka."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from engine import placement
from engine.placement import Placement, partition_for
from events.codec import decode
from events.log import Record
from events.models import Envelope
from events.producer import BROADCAST
from tests.samples import sample

TOPIC = "goodwill.events"


def event(customer: str, type_name: str = "order.placed") -> Envelope:
    return decode(json.dumps(sample(type_name, customer_id=customer)).encode())


def on(partition: int, topic: str = TOPIC) -> Record:
    """A record read from `partition` of `topic` (its bytes are decoded before the check)."""
    return Record(topic, partition, 0, None, b"")


def placed(partitions: list[int]) -> Placement:
    registry = CollectorRegistry()
    p = Placement(TOPIC, PromCounter("goodwill_misplaced_events", "", registry=registry))
    p.partitions(partitions)
    return p


def test_only_an_event_off_its_keys_partition_is_counted() -> None:
    p = placed([2, 0, 1])  # as metadata may list them
    ev = event("cust-1")
    right = partition_for(b"cust-1", [0, 1, 2])
    wrong = (right + 1) % 3
    p.check(on(right), ev)
    assert p.count == 0
    p.check(on(wrong), ev)
    assert p.count == 1
    # another topic's record, and a broadcast copy on every partition, are not placed by key
    p.check(on(wrong, "file:events.jsonl"), ev)
    for type_name in BROADCAST:  # clock.tick, and rep.assigned keyed by its rep
        copy = event("cust-1", type_name)
        for partition in range(3):
            p.check(on(partition), copy)
    assert p.count == 1
    # on one partition, nothing can be misplaced
    one = placed([0])
    one.check(on(0), ev)
    assert one.count == 0


def test_a_topic_that_gains_partitions_places_keys_anew() -> None:
    # a customer whose key goes elsewhere on four partitions than on two
    customer = next(
        c
        for c in (f"c-{i}" for i in range(100))
        if partition_for(c.encode(), [0, 1]) != partition_for(c.encode(), [0, 1, 2, 3])
    )
    ev = event(customer)
    p = placed([0, 1])
    p.check(on(partition_for(customer.encode(), [0, 1])), ev)
    p.partitions([0, 1, 2, 3])
    p.check(on(partition_for(customer.encode(), [0, 1, 2, 3])), ev)
    assert p.count == 0


def test_partition_for_reads_the_partitions_in_order() -> None:
    keys = [f"c-{i}".encode() for i in range(50)]
    assert [partition_for(k, [3, 1, 0, 2]) for k in keys] == [
        partition_for(k, [0, 1, 2, 3]) for k in keys
    ]


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "_CACHE", 10)
    p = placed([0, 1])
    for i in range(25):
        key = f"c-{i}"
        p.check(on(partition_for(key.encode(), [0, 1])), event(key))
    assert len(p._expected) <= 10 and p.count == 0
