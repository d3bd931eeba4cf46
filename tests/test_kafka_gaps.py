"""A gap in the budget topic's offsets is read again, then passed with a warning.

Only Goodwill writes the budget topic (idempotent, no transactions, no compaction), so its
offsets run on; Tansu's memory storage still lets a reader pass a batch while two producers
append to its one partition (bench/broker_two_writers.py). Tansu cannot be made to do that
on demand, so the polls below are the broker's real records with the passed ones left out;
the consumer and its seeks are real.
"""

from __future__ import annotations

import logging
from contextlib import closing
from pathlib import Path

import pytest
from kafka import TopicPartition

from engine.compile import load
from engine.kafka_service import KafkaService
from engine.offset_gaps import first_gap
from engine.service_options import ServiceOptions
from events.kafka import KafkaConfig, create_topics, make_consumer, make_producer
from tests.kafka_broker import consume

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("expected", "offsets", "gap"),
    [
        (None, [], None),
        (None, [4, 5, 6], None),
        (4, [4, 5, 6], None),
        (None, [4, 5, 9, 10], (2, 6)),
        (4, [7, 8], (0, 4)),
        (4, [4, 6], (1, 5)),
        (4, [2, 3, 4, 5], None),  # read again from before the stored position: no gap
        (4, [4, 4, 5], None),
    ],
)
def test_first_gap(expected: int | None, offsets: list[int], gap: tuple[int, int] | None) -> None:
    assert first_gap(expected, offsets) == gap


@pytest.mark.kafka
def test_a_gap_in_the_budget_topic_is_read_again_then_passed(
    kafka_config: KafkaConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create_topics(kafka_config, partitions=1)
    budget = TopicPartition(kafka_config.budget_topic, 0)
    with closing(make_producer(kafka_config)) as producer:
        for i in range(30):
            producer.send(budget.topic, key=b"c", value=f"r{i}".encode(), partition=0)
        producer.flush(timeout=30)
    svc = KafkaService(
        kafka_config,
        load(ROOT / "policies"),
        ServiceOptions(data_dir=tmp_path, budget_stage="kafka"),
    )
    consumer = svc.consumer = make_consumer(kafka_config, group=False)
    try:
        consumer.assign([budget])
        consumer.seek(budget, 0)
        records = consume(consumer, 30)
        assert [r.offset for r in records] == list(range(30))
        svc.stored = {budget.topic: {0: 10}}  # 0-9 decided and stored

        # The broker passed 15-19: 10-14 go on, and the partition is read again from 15.
        caplog.set_level(logging.WARNING, logger="goodwill.kafka")
        mended = svc.mend_gaps({budget: records[10:15] + records[20:]})
        assert [r.offset for r in mended[budget]] == [10, 11, 12, 13, 14]
        assert consumer.position(budget) == 15
        again = consume(consumer, 15)
        assert [r.offset for r in again] == list(range(15, 30))
        assert "passed offsets 15 to 19; reading them again" in caplog.text
        svc.stored = {budget.topic: {0: 15}}  # 10-14 decided
        assert svc.mend_gaps({budget: again}) == {budget: again}  # read through

        # Records the broker no longer has (retention): read again three times, then
        # passed with a warning, never a stage stuck before them.
        for _ in range(3):
            assert svc.mend_gaps({budget: records[20:]}) == {}
            assert consumer.position(budget) == 15
        assert svc.mend_gaps({budget: records[20:]}) == {budget: records[20:]}
        assert "offsets 15 to 19 were never read, 3 reads later; passing them" in caplog.text
        gaps = svc.metrics.registry.get_sample_value
        labels = {"topic": budget.topic}
        assert gaps("goodwill_offset_gaps_total", {**labels, "outcome": "reread"}) == 4
        assert gaps("goodwill_offset_gaps_total", {**labels, "outcome": "passed"}) == 1

        # The events topic may have gaps (transaction markers, compaction): left alone.
        events = TopicPartition(kafka_config.events_topic, 0)
        assert svc.mend_gaps({events: records[20:]}) == {events: records[20:]}
    finally:
        consumer.close()
