"""Partition assignment: which partitions this instance holds, and where it reads them from.

Positions come from SQLite, never from the group's committed offsets: on assignment the
rebalance listener (`Seeker`) seeks to the positions stored with the state, which the
service mirrors in memory for it. Each assignment is checked as well: an instance that
decides only some events partitions while policies read state that spans customers says
so, and so does a partition that comes back to a store that has since forgotten history
its replay reads. Its own module because it changes with the consumer group and with what
an assignment means for the state, apart from the loop that decides
(`engine.kafka_service`); `Assignment` is a mixin of `KafkaService`, whose state it shares.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from engine.budget_stage import BudgetStage
from engine.compile import CompiledSet
from engine.drain import partitions_of
from engine.metrics import Metrics
from engine.micros import datetime_of
from engine.placement import Placement
from engine.service_options import ServiceOptions
from engine.state import StateStore
from events.kafka import KafkaConfig

log = logging.getLogger("goodwill.kafka")


def _cross_customer(compiled: CompiledSet, budget_stage: str = "local") -> tuple[str, ...]:
    """Ids of the policies whose decisions read state other customers' events change
    (`Policy.staged`: budgets, defect counts, alerts) and that this instance applies
    itself: none with the budget stage, which applies them for every instance."""
    if budget_stage == "kafka":
        return ()
    return tuple(p.id for p in compiled.policy_set.policies if p.staged)


class Seeker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Positions come from SQLite, never from the group's committed offsets."""

    def __init__(self, service: Assignment) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        for tp in revoked:
            self.service.forget(tp)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        try:
            self.service.seek_stored(assigned)
            if assigned:
                shown = ",".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned))
                log.info("assigned partitions", extra={"partitions": shown})
            self.service.check_assignment(assigned)
        except Exception:
            log.exception("seeking to the stored positions failed")
            raise


class Assignment:
    """Seeks assigned partitions to their stored positions and checks the assignment (see
    the module docstring).

    A mixin of `KafkaService`, which must set every attribute declared below in its
    `__init__` (the store and the consumer None until `run` opens them); the stored
    positions this mixin mirrors for the rebalance listener are kept there too (`stored`,
    `stored_times`, `forgotten`, under `_stored_lock`), and so are the positions read
    (`positions`).
    """

    cfg: KafkaConfig
    compiled: CompiledSet
    options: ServiceOptions
    metrics: Metrics
    store: StateStore | None
    consumer: KafkaConsumer | None
    budget_stage: BudgetStage | None
    placement: Placement
    positions: dict[TopicPartition, int]
    stored: dict[str, dict[int, int]]
    stored_times: dict[tuple[str, int], int | None]
    forgotten: int | None
    _stored_lock: threading.Lock

    def check_assignment(self, assigned: Sequence[TopicPartition]) -> bool:
        """Warn (and set the `partial` gauge) when this instance decides only some of the
        events partitions while policies read state that spans customers: budgets
        (unless the budget stage checks them) and defect counts are then checked against
        this instance's share of the events. True when that is the case."""
        topic = self.cfg.events_topic
        found = self.consumer.partitions_for_topic(topic) if self.consumer else None
        total: set[int] = set(found or ())
        if total:
            self.placement.partitions(total)
        mine = {tp.partition for tp in assigned if tp.topic == topic}
        readers = _cross_customer(self.compiled, self.options.budget_stage)
        partial = bool(total) and bool(readers) and mine < total
        self.metrics.partial.set(1 if partial else 0)
        if partial:
            if self.options.budget_stage == "kafka":
                what = "defect counts: root-cause alerts count only this instance's reports"
            else:
                what = (
                    "budgets, defect counts: each instance checks them against its own"
                    " events only, so approved spend may exceed a budget. Run one instance,"
                    " or every instance with --budget-stage kafka"
                )
            log.warning(
                "this instance decides %d of %d partitions of %s, but policies %s read state"
                " that spans customers (%s; docs/kafka.md, 'More than one instance, and"
                " budgets').",
                len(mine),
                len(total),
                topic,
                ", ".join(readers),
                what,
                extra={"assigned": len(mine), "partitions": len(total)},
            )
        return partial

    # ---------------------------------------------------------------- positions

    def _load_stored(self) -> None:
        assert self.store is not None and self.consumer is not None
        found: dict[str, dict[int, int]] = {}
        times: dict[tuple[str, int], int | None] = {}
        topics = [self.cfg.events_topic]
        if self.budget_stage is not None:
            topics.append(self.cfg.budget_topic)
        for topic in topics:
            for partition in partitions_of(self.consumer, topic):
                position = self.store.position(topic, partition)
                if position is not None:
                    found.setdefault(topic, {})[partition] = position
                    times[(topic, partition)] = self.store.partition_time(topic, partition)
        with self._stored_lock:
            self.stored, self.stored_times = found, times
            self.forgotten = self.store.forgotten_before()

    def seek_stored(self, partitions: Sequence[TopicPartition]) -> None:
        """Seek to the positions stored with the state (the beginning when none is)."""
        consumer = self.consumer
        assert consumer is not None
        for tp in partitions:
            with self._stored_lock:
                position = self.stored.get(tp.topic, {}).get(tp.partition)
                mark = self.stored_times.get((tp.topic, tp.partition))
                forgotten = self.forgotten
            _warn_if_forgotten(tp, position, mark, forgotten)
            if position is None:
                consumer.seek_to_beginning(tp)
                self.positions[tp] = 0
            else:
                consumer.seek(tp, position)
                self.positions[tp] = position

    def forget(self, tp: TopicPartition) -> None:
        self.positions.pop(tp, None)
        with contextlib.suppress(KeyError):
            self.metrics.lag.remove(tp.topic, str(tp.partition))

    def _store_is_empty(self) -> bool:
        assert self.store is not None and self.consumer is not None
        stats = self.store.stats()
        if stats["events_seen"] or stats["outputs"]:
            return False
        partitions = partitions_of(self.consumer, self.cfg.events_topic)
        return all(self.store.position(self.cfg.events_topic, p) is None for p in partitions)


def _warn_if_forgotten(
    tp: TopicPartition, position: int | None, mark: int | None, forgotten: int | None
) -> None:
    """Warn when a partition comes back to a store that has since forgotten history its
    replay reads: its stored event time `mark` is before `forgotten` (micros)."""
    if position is None or mark is None or forgotten is None or mark >= forgotten:
        return
    log.warning(
        "%s[%d] resumes here from offset %d, where its events had reached %s; this store has"
        " since forgotten history from before %s (--retain-days): the records it replays"
        " from before then are dead-lettered as late, and its customers' state here misses"
        " what other instances decided meanwhile. Rebuild this instance's state (goodwill"
        " rebuild into an empty --data-dir) to decide its partitions as before.",
        tp.topic,
        tp.partition,
        position,
        datetime_of(mark).isoformat(),
        datetime_of(forgotten).isoformat(),
        extra={"topic": tp.topic, "partition": tp.partition},
    )
