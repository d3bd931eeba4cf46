"""An instance that decides only some partitions while policies read cross-customer state
(budgets, defect counts) says so: a warning and a gauge, since "budgets hold" then needs
one instance (docs/kafka.md)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from kafka import TopicPartition

from engine.compile import load
from engine.kafka_service import KafkaService
from engine.service_options import ServiceOptions
from events.kafka import KafkaConfig

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "goodwill.events"


class Consumer:
    """The one call check_assignment makes of a KafkaConsumer."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions if topic == TOPIC else set()


def service(policies: Path, tmp_path: Path, partitions: int) -> KafkaService:
    svc = KafkaService(
        KafkaConfig(bootstrap_servers="127.0.0.1:9", events_topic=TOPIC),
        load(policies),
        ServiceOptions(data_dir=tmp_path),
    )
    svc.consumer = Consumer(partitions)  # type: ignore[assignment]
    return svc


def gauge(svc: KafkaService) -> float | None:
    return svc.metrics.registry.get_sample_value("goodwill_cross_customer_state_partial")


def test_a_share_of_the_partitions_with_budget_policies_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    svc = service(ROOT / "policies", tmp_path, 4)
    with caplog.at_level(logging.WARNING, logger="goodwill"):
        assert svc.check_assignment([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 2)])
    assert gauge(svc) == 1
    [record] = [r for r in caplog.records if "decides 2 of 4 partitions" in r.getMessage()]
    assert "expedite-within-budget" in record.getMessage()
    assert "root-cause-alert" in record.getMessage()

    # The other instance left: this one decides everything again.
    all_four = [TopicPartition(TOPIC, p) for p in range(4)]
    assert not svc.check_assignment(all_four)
    assert gauge(svc) == 0


def test_policies_that_read_only_the_customer_may_share_partitions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("budgets.yaml", "follow-through.yaml", "warm-handoff.yaml"):
        shutil.copy(ROOT / "policies" / name, policies / name)
    svc = service(policies, tmp_path / "data", 4)
    with caplog.at_level(logging.WARNING, logger="goodwill"):
        assert not svc.check_assignment([TopicPartition(TOPIC, 1)])
    assert gauge(svc) == 0
    assert not [r for r in caplog.records if "partitions" in r.getMessage()]


def test_with_the_budget_stage_nothing_is_partial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Budgets, defect counts and alert windows are the budget stage's, for every instance.
    svc = KafkaService(
        KafkaConfig(bootstrap_servers="127.0.0.1:9", events_topic=TOPIC),
        load(ROOT / "policies"),
        ServiceOptions(data_dir=tmp_path, budget_stage="kafka"),
    )
    svc.consumer = Consumer(4)  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="goodwill"):
        assert not svc.check_assignment([TopicPartition(TOPIC, 0)])
    assert gauge(svc) == 0
    assert not [r for r in caplog.records if "partitions" in r.getMessage()]
