"""Delivery: a decided batch's outputs published to Kafka, acknowledged, and settled.

The outbox is sent through the `Outlet` without waiting (`_send`); the acknowledgements
are awaited once the next batch is decided (`_settle`), then the outputs are marked sent,
the batch's offsets committed to Kafka and its metrics observed. When sending fails,
`_relay` publishes the outbox synchronously, retrying until it works, so no position
passes an unpublished output. Its own module because how outputs reach Kafka (pipelining,
acknowledgements, the producer's size limit) changes apart from how a batch is polled and
decided (`engine.kafka_service`); `Delivery` is a mixin of `KafkaService`, whose state it
shares.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata

from engine.backoff import Backoff
from engine.budget_stage import BudgetStage
from engine.compile import CompiledSet
from engine.crash_hook import CrashHook
from engine.metrics import Metrics
from engine.service import DEADLETTER_TOPIC, Processor, relay
from engine.service_options import ServiceOptions
from engine.state import StateStore
from engine.tally import Tally
from events.kafka import PublishError
from events.kafka_log import KafkaLog
from events.log import Headers, Record

log = logging.getLogger("goodwill.kafka")


@dataclass
class InFlight:
    """A batch whose outputs are sent but not yet acknowledged."""

    polled: Mapping[TopicPartition, list[Any]]
    stamps: list[int]
    started: float
    rowids: list[int] = field(default_factory=list)


class Outlet:
    """The relay's view of Kafka: a KafkaLog whose flush reports to the crash hook, and
    which shortens a dead-letter copy that is larger than the producer may send."""

    def __init__(self, log_: KafkaLog, crash: CrashHook) -> None:
        self.log, self.crash = log_, crash

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> Record:
        try:
            return self.log.append(topic, key, value, headers)
        except MessageSizeTooLargeError:
            if topic != DEADLETTER_TOPIC:
                raise
        # The record came through the events topic, but the dead-letter copy exceeds
        # max_message_bytes: keep its head, its size and its digest instead of blocking.
        limit = max(0, self.log.cfg.max_message_bytes - 64 * 1024)
        extra = (
            ("goodwill.truncated.bytes", str(len(value)).encode()),
            ("goodwill.truncated.sha256", hashlib.sha256(value).hexdigest().encode()),
        )
        log.warning("dead-letter copy of %d bytes truncated to %d", len(value), limit)
        return self.log.append(topic, key, value[:limit], (*headers, *extra))

    def flush(self) -> None:
        self.log.flush()
        self.crash("after_publish")

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        return self.log.read(topic, partition, offset, limit)

    def partitions(self, topic: str) -> int:
        return self.log.partitions(topic)

    def end_offset(self, topic: str, partition: int) -> int:
        return self.log.end_offset(topic, partition)

    def close(self) -> None:
        self.log.close()


class Delivery:
    """Sends a decided batch's outputs, settles them once acknowledged (see the module
    docstring).

    A mixin of `KafkaService`, which must set every attribute declared below in its
    `__init__` (the store, the processors and the clients None until `run` opens them);
    what this mixin keeps between batches is kept there too (`in_flight`, `positions`,
    `_budgets_at`, `_budgets_dirty`).
    """

    options: ServiceOptions
    compiled: CompiledSet
    metrics: Metrics
    stopping: threading.Event
    crash: CrashHook
    backoff: Backoff
    store: StateStore | None
    processor: Processor | None
    consumer: KafkaConsumer | None
    budget_stage: BudgetStage | None
    outlet: Outlet | None
    in_flight: InFlight | None
    positions: dict[TopicPartition, int]
    _budgets_at: float
    _budgets_dirty: bool

    def _send(self, batch: InFlight) -> None:
        """Send the outbox without waiting; `_settle` waits for the acks and marks it sent."""
        assert self.store is not None and self.outlet is not None
        try:
            pending = self.store.outbox_pending(max(10_000, 10 * self.options.batch))
            for rowid, topic, key, value, headers in pending:
                self.outlet.append(topic, key, value, headers)
                batch.rowids.append(rowid)
        except (PublishError, KafkaError, sqlite3.Error, OSError) as exc:
            log.info("sending failed (%s); publishing synchronously", exc)
            self.outlet.log.reset()
            self._relay()
            batch.rowids.clear()  # all published and marked by _relay
        self.in_flight = batch

    def _settle(self) -> None:
        """Wait for the in-flight batch's acks, mark its outputs sent, commit its offsets."""
        batch, self.in_flight = self.in_flight, None
        if batch is None:
            return
        assert self.store is not None and self.outlet is not None
        try:
            self.outlet.flush()
            if batch.rowids:
                self.store.outbox_mark_sent(batch.rowids)
        except (PublishError, KafkaError, sqlite3.Error, OSError) as exc:
            log.info("publishing failed (%s); retrying synchronously", exc)
            self.outlet.log.reset()
            self._relay()  # sends every unsent output again: at least once
        self.crash("after_relay")
        done = time.time()
        for stamp in batch.stamps:
            self.metrics.latency.observe(max(0.0, done - stamp / 1000))
        self._commit(batch.polled)
        self._observe(batch.started)
        self.metrics.health.ready(None)  # a batch went all the way through

    def _relay(self) -> None:
        """Publish the outbox; until it works, nothing else happens (positions stay put)."""
        assert self.store is not None and self.outlet is not None
        while True:
            try:
                relay(self.store, self.outlet)
                self.backoff.reset()
                return
            except (PublishError, KafkaError) as exc:
                self.metrics.kafka_up.set(0)
                self._retry("publish", exc)
                self.outlet.log.reset()
            except (sqlite3.Error, OSError) as exc:
                self._retry("store", exc)
            if self.stopping.is_set():
                raise Stopped("stopped while outputs were unpublished; they stay in the outbox")

    def _retry(self, stage: str, exc: BaseException) -> None:
        self.metrics.retries.labels(stage).inc()
        self.metrics.health.ready(f"retrying {stage}: {type(exc).__name__}: {exc}")
        self.metrics.health.beat()
        log.warning(
            "%s failed; retrying in %.1f s: %s: %s",
            stage,
            self.backoff.next_s,
            type(exc).__name__,
            exc,
            extra={"stage": stage},
        )
        self.backoff.wait()

    def _commit(self, polled: Mapping[TopicPartition, list[Any]]) -> None:
        assert self.consumer is not None
        offsets = {}
        for tp, batch in polled.items():
            self.positions[tp] = batch[-1].offset + 1
            offsets[tp] = OffsetAndMetadata(batch[-1].offset + 1, "", -1)
        # Only lag monitoring reads these offsets, so the commit need not be waited for.
        self.consumer.commit_async(offsets, callback=_commit_done)

    def _tally(self) -> Tally:
        """Both stages' counts together."""
        assert self.processor is not None
        if self.budget_stage is None:
            return self.processor.tally
        total = Tally()
        total.add(self.processor.tally)
        total.add(self.budget_stage.tally)
        return total

    def _observe(self, started: float) -> None:
        assert self.processor is not None and self.consumer is not None and self.store
        tally = self._tally()
        self.metrics.on_tally(
            tally.outcomes, tally.by_policy, tally.deadlettered, tally.duplicates, tally.time_jumps
        )
        for tp, position in self.positions.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - position))
        self._budgets_dirty = True
        self._refresh_budgets()
        self.metrics.batch_seconds.observe(time.monotonic() - started)

    def _refresh_budgets(self) -> None:
        """Budget gauges after a batch, at most once a second (a query over all budgets)."""
        now = time.monotonic()
        if self._budgets_dirty and now - self._budgets_at >= 1.0 and self.store is not None:
            self._budgets_at, self._budgets_dirty = now, False
            self.metrics.on_budgets(self.store.budgets(), self.compiled.policy_set)


def _commit_done(offsets: Any, result: Any) -> None:
    if isinstance(result, Exception):
        log.info("offset commit to Kafka failed (positions are in SQLite): %s", result)


class Stopped(Exception):
    pass
