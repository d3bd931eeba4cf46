"""The Kafka backend: a consumer-group member that decides the events topic.

One loop, one thread (DESIGN.md "State and delivery"):

    poll a batch ─▶ Processor.process: ONE SQLite transaction with the state, the next
                    offset per partition, the outbox and the seen event ids
               ─▶ send the outbox (acks=all, idempotent) and poll the next batch
               ─▶ after the acks (awaited once the next batch is decided, so the network
                  wait overlaps decide time): mark the outbox sent, then commit the
                  offsets to Kafka (for lag monitoring only)

The offsets in SQLite are the authoritative position: on assignment the consumer seeks
to them, so a crash anywhere re-reads at most the batch whose transaction did not commit,
and re-publishes at most outputs already stored — identical bytes, same decision_id.
Failures that do not depend on the record (broker down, disk full, a locked database)
are retried with bounded exponential backoff and never advance a position.

`GOODWILL_CRASH_AT=point:n` (tests only) kills the process with `os._exit(137)` the n-th
time it reaches `point`: `after_poll`, `after_commit` (state stored, nothing published),
`after_publish` (outputs acknowledged, not marked sent) or `after_relay` (marked sent,
offsets not committed to Kafka).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata

from engine.budget_stage import BudgetStage
from engine.compile import CompiledSet
from engine.decide import Decider
from engine.ledger import StateModeError, datetime_of
from engine.metrics import Metrics
from engine.service import (
    BUDGET_TOPIC,
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    Listener,
    Processor,
    Tally,
    relay,
)
from engine.state import StateStore
from events.kafka import (
    KafkaConfig,
    KafkaLog,
    KafkaUnavailable,
    PublishError,
    make_consumer,
    to_record,
)
from events.log import Headers, Record

log = logging.getLogger("goodwill.kafka")

CRASH_ENV: Final = "GOODWILL_CRASH_AT"
CRASH_POINTS: Final = ("after_poll", "after_commit", "after_publish", "after_relay")
_QUIET_PROBE_S: Final = 15.0  # an idle consumer this long checks that the brokers answer
_GAP_REREADS: Final = 3  # a gap in the budget topic is read again this often, then passed


@dataclass(frozen=True)
class ServiceOptions:
    data_dir: Path
    batch: int = 500  # most records per poll, so per SQLite transaction
    poll_ms: int = 100
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 30.0
    rebuild_on_start: bool = True  # fold the decisions topic when the store is empty
    idle_polls: int = 5  # reading a topic to its end: stop after this many empty polls
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    policies: Path | None = None  # reloaded on SIGHUP (request_reload); None: never
    # "local": budgets are checked in this process (one instance); "kafka": the budget
    # stage, on the budget topic, checks them for every instance (engine/budget_stage.py)
    budget_stage: str = "local"
    retain_days: int | None = None  # StateStore.retain; None: as stored (everything)


class Backoff:
    """Bounded exponential backoff whose waits end early when the service is stopping."""

    def __init__(self, stop: threading.Event, first_s: float, cap_s: float) -> None:
        self.stop, self.first_s, self.cap_s = stop, first_s, cap_s
        self.failures = 0

    def wait(self) -> float:
        delay = self.next_s
        self.failures += 1
        self.stop.wait(delay)
        return delay

    @property
    def next_s(self) -> float:
        return min(self.cap_s, self.first_s * 2.0 ** min(self.failures, 32))

    def reset(self) -> None:
        self.failures = 0


class CrashHook:
    """Test-only fault injection; inert unless GOODWILL_CRASH_AT is set."""

    def __init__(self, spec: str | None) -> None:
        self.point, self.at = "", 0
        self.counts: dict[str, int] = {}
        if spec:
            point, _, count = spec.partition(":")
            if point not in CRASH_POINTS or not count.isdigit():
                raise ValueError(
                    f"{CRASH_ENV}={spec!r}: expected POINT:N with POINT one of "
                    f"{', '.join(CRASH_POINTS)}"
                )
            self.point, self.at = point, int(count)

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        self.counts[point] = self.counts.get(point, 0) + 1
        if self.counts[point] == self.at:
            log.warning("crash hook: exiting at %s #%d", point, self.at)
            logging.shutdown()
            os._exit(137)


@dataclass
class _InFlight:
    """A batch whose outputs are sent but not yet acknowledged."""

    polled: Mapping[TopicPartition, list[Any]]
    stamps: list[int]
    started: float
    rowids: list[int] = field(default_factory=list)


class _Outlet:
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


def _cross_customer(compiled: CompiledSet, budget_stage: str = "local") -> tuple[str, ...]:
    """Ids of the policies whose decisions read state other customers' events change
    (`Policy.staged`: budgets, defect counts, alerts) and that this instance applies
    itself: none with the budget stage, which applies them for every instance."""
    if budget_stage == "kafka":
        return ()
    return tuple(p.id for p in compiled.policy_set.policies if p.staged)


class _Seeker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Positions come from SQLite, never from the group's committed offsets."""

    def __init__(self, service: KafkaService) -> None:
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


class KafkaService:
    """Run with `run()`; `stop()` (or SIGTERM/SIGINT via `install_signals`) ends it after
    the current batch is stored, published and committed."""

    def __init__(
        self,
        cfg: KafkaConfig,
        compiled: CompiledSet,
        options: ServiceOptions,
        on_output: Listener | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.cfg, self.compiled, self.options = cfg, compiled, options
        self.on_output = on_output
        self.metrics = metrics or Metrics()
        self.stopping = threading.Event()
        self.reloading = threading.Event()  # set by SIGHUP: load the policies at the next poll
        self.crash = CrashHook(os.environ.get(CRASH_ENV))
        self.backoff = Backoff(self.stopping, options.backoff_first_s, options.backoff_cap_s)
        self.store: StateStore | None = None
        self.processor: Processor | None = None
        self.consumer: KafkaConsumer | None = None
        self.budget_stage: BudgetStage | None = None  # --budget-stage kafka
        self.outlet: _Outlet | None = None
        self.in_flight: _InFlight | None = None  # outputs sent, acks not yet seen
        self.positions: dict[TopicPartition, int] = {}  # next offset, for lag
        # The stored positions by topic and partition, mirrored in memory: kafka-python
        # calls the rebalance listener from its own thread, which must not touch SQLite.
        self.stored: dict[str, dict[int, int]] = {}
        # With --retain-days: the latest event time decided per stored partition, and the
        # time before which the store has forgotten history (micros; see seek_stored).
        self.stored_times: dict[tuple[str, int], int | None] = {}
        self.forgotten: int | None = None
        self._stored_lock = threading.Lock()
        self._budgets_at = 0.0
        self._budgets_dirty = False
        self._rereads: dict[tuple[TopicPartition, int], int] = {}  # see mend_gaps

    # ---------------------------------------------------------------- lifecycle

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if not self.stopping.is_set():
            log.info("stopping after the current batch", extra={"signal": signum})
        self.stopping.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if hasattr(signal, "SIGHUP"):  # not on Windows
            signal.signal(signal.SIGHUP, self.request_reload)

    def request_reload(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Load the policy directory again before the next batch (see `_reload`)."""
        self.reloading.set()

    def run(self) -> None:
        """Serve until stopped. Unreachable brokers are retried, never fatal."""
        opts = self.options
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        if opts.metrics_port is not None:
            self.metrics.serve(opts.metrics_port, opts.metrics_host)
            log.info(
                "metrics on http://%s:%d/metrics, health on /healthz and /readyz",
                opts.metrics_host,
                opts.metrics_port,
            )
        self.store = StateStore.open(opts.data_dir / "state.db")
        try:
            self.store.keep_mode("budget_stage", opts.budget_stage, str(opts.data_dir))
        except StateModeError:
            self.store.close()
            raise
        if opts.retain_days is not None:
            self.store.retain(opts.retain_days)
        split = opts.budget_stage == "kafka"
        self.processor = Processor(self.store, Decider(self.compiled), self.on_output, split=split)
        if split:
            self.budget_stage = BudgetStage(self.store, Decider(self.compiled), self.on_output)
        self.metrics.budget_stage.set(1 if split else 0)
        self.metrics.on_policy_set(self.compiled.hash)
        try:
            while not self.stopping.is_set():
                try:
                    self._connect()
                    self._serve()
                except (KafkaUnavailable, KafkaError) as exc:
                    self.metrics.kafka_up.set(0)
                    self.metrics.retries.labels("connect").inc()
                    self.metrics.health.ready(f"Kafka unavailable: {exc}")
                    self.metrics.health.beat()
                    log.warning(
                        "Kafka unavailable; retrying in %.1f s: %s", self.backoff.next_s, exc
                    )
                    self._close_clients()
                    self.backoff.wait()
        finally:
            self._close_clients()
            self.store.close()
            tally = self._tally()
            # Decisions folded from the history on start are not counted as decided.
            decided = sum(tally.outcomes.values()) - tally.recalled
            log.info("stopped", extra={"decided": decided, "recalled": tally.recalled})

    def _connect(self) -> None:
        cfg = self.cfg
        # send() waits for metadata up to max_block_ms; bound it like a connection attempt.
        # Batch size and linger come from cfg (producer_batch_bytes, linger_ms).
        producer_log = KafkaLog(
            cfg,
            topics={
                DECISIONS_TOPIC: cfg.decisions_topic,
                DEADLETTER_TOPIC: cfg.deadletter_topic,
                BUDGET_TOPIC: cfg.budget_topic,
            },
            max_block_ms=cfg.bootstrap_timeout_ms,
        )
        self.outlet = _Outlet(producer_log, self.crash)
        self.consumer = make_consumer(cfg)
        self.metrics.kafka_up.set(1)
        log.info(
            "connected",
            extra={
                "bootstrap": cfg.bootstrap_servers,
                "events": cfg.events_topic,
                "group": cfg.group_id,
            },
        )

    def _close_clients(self) -> None:
        consumer, outlet = self.consumer, self.outlet
        self.consumer = self.outlet = None
        if consumer is not None:
            try:
                consumer.close()  # leaves the group at once
            except Exception as exc:
                log.debug("closing the consumer: %s", exc)
        if outlet is not None:
            try:
                outlet.close()
            except Exception as exc:
                log.debug("closing the producer: %s", exc)

    def check_assignment(self, assigned: Sequence[TopicPartition]) -> bool:
        """Warn (and set the `partial` gauge) when this instance decides only some of the
        events partitions while policies read state that spans customers: budgets
        (unless the budget stage checks them) and defect counts are then checked against
        this instance's share of the events. True when that is the case."""
        topic = self.cfg.events_topic
        found = self.consumer.partitions_for_topic(topic) if self.consumer else None
        total: set[int] = set(found or ())
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

    # ---------------------------------------------------------------- the loop

    def _serve(self) -> None:
        assert self.store is not None and self.processor is not None
        assert self.consumer is not None
        self._relay()  # outputs a crash left unpublished go first, unchanged
        if self.options.rebuild_on_start and self._store_is_empty():
            from engine.rebuild import fold_history

            self.metrics.health.rebuilding(True)
            try:
                report = fold_history(self.cfg, self.processor, self.options, self.stopping)
            finally:
                self.metrics.health.rebuilding(False)
            if report.empty:
                log.info("new store, and no history on the topics: starting from the start")
            else:
                log.info("rebuilt state from the topics", extra=report.fields())
            self._relay()
        if self.processor.activate() is not None:
            log.info("policy set activated", extra={"policy_set": self.compiled.hash})
        self._relay()
        self._load_stored()
        # With the budget stage the group shares the budget topic's one partition too: one
        # member at a time finishes the decisions that read a budget.
        topics = [self.cfg.events_topic]
        if self.budget_stage is not None:
            topics.append(self.cfg.budget_topic)
        self.consumer.subscribe(topics, listener=_Seeker(self))
        self.backoff.reset()
        quiet_since = time.monotonic()
        health = self.metrics.health
        while not self.stopping.is_set():
            health.beat()
            if self.reloading.is_set():
                self.reloading.clear()
                self._reload()
            polled = self.consumer.poll(
                timeout_ms=self.options.poll_ms, max_records=self.options.batch
            )
            if not polled:
                self._settle()
                health.ready(None)  # idle and nothing failing (_retry says otherwise)
                self._refresh_budgets()
                if time.monotonic() - quiet_since > _QUIET_PROBE_S:
                    self._probe()
                    quiet_since = time.monotonic()
                continue
            quiet_since = time.monotonic()
            self.crash("after_poll")
            self._batch(polled)
        self._settle()

    def _reload(self) -> None:
        """Activate the policy directory's set if it is valid and new; else keep the
        running one (guarantee 5). The switch falls between two batches: the batch in
        flight is settled first, and `policy_set.activated` records where it happened."""
        assert self.processor is not None and self.consumer is not None
        path = self.options.policies
        if path is None:
            log.warning("reload requested, but this service was given no policy directory")
            return
        from engine.compile import load
        from engine.errors import PolicyError

        try:
            compiled = load(path)
        except Exception as err:  # whatever refuses it, the running set must stay active
            self.metrics.policy_reloads.labels("refused").inc()
            shown = err.render() if isinstance(err, PolicyError) else f"{type(err).__name__}: {err}"
            log.error(
                "policy set in %s refused; %s stays active:\n%s",
                path,
                self.compiled.hash,
                shown,
                exc_info=None if isinstance(err, PolicyError | OSError) else err,
            )
            return
        if compiled.hash == self.compiled.hash:
            self.metrics.policy_reloads.labels("unchanged").inc()
            log.info("policy set unchanged", extra={"policy_set": compiled.hash})
            return
        self._settle()  # outputs the running set decided go first
        previous, self.compiled = self.compiled, compiled
        self.processor.decider = Decider(compiled)
        if self.budget_stage is not None:
            self.budget_stage.decider = Decider(compiled)
        self.processor.activate()
        self._relay()
        self.metrics.policy_reloads.labels("activated").inc()
        self.metrics.on_policy_set(compiled.hash, previous.hash)
        log.info(
            "policy set activated",
            extra={"policy_set": compiled.hash, "previous": previous.hash, "from": str(path)},
        )
        self.check_assignment(list(self.consumer.assignment()))

    def _batch(self, polled: Mapping[TopicPartition, list[Any]]) -> None:
        """Decide what one poll returned: the budget topic's records by the budget stage,
        the events by the customer stage (a transaction each), then send both's outputs
        at once while the previous poll's acknowledgements are settled."""
        started = time.monotonic()
        if self.budget_stage is not None:
            polled = self.mend_gaps(polled)
        stages: list[tuple[Processor, dict[TopicPartition, list[Any]]]] = []
        events = {tp: rs for tp, rs in polled.items() if tp.topic == self.cfg.events_topic}
        if self.budget_stage is not None and len(events) < len(polled):
            stages.append(
                (self.budget_stage, {tp: polled[tp] for tp in polled if tp not in events})
            )
        if events:
            assert self.processor is not None
            stages.append((self.processor, events))
        done: dict[TopicPartition, list[Any]] = {}
        for processor, part in stages:
            records = [to_record(r) for batch in part.values() for r in batch]
            if processor is self.processor:
                self.metrics.consumed.inc(len(records))
            try:
                processor.process(records)
            except (sqlite3.Error, OSError) as exc:
                # process() rolled back: nothing of this part is stored. Read it again from
                # the stored positions once the store works again.
                self._retry("store", exc)
                self.seek_stored(list(part))
                continue
            store = processor.store
            with self._stored_lock:
                for tp, batch in part.items():
                    self.stored.setdefault(tp.topic, {})[tp.partition] = batch[-1].offset + 1
                    time_ = store.partition_time(tp.topic, tp.partition)
                    self.stored_times[(tp.topic, tp.partition)] = time_
                self.forgotten = store.forgotten_before()
            done.update(part)
        if not done:
            return
        self.crash("after_commit")
        # Pipelined: the previous batch's acknowledgements arrived while this one was
        # decided; settle them, then send this batch's outputs and go on polling.
        self._settle()
        stamps = [r.timestamp for batch in done.values() for r in batch]
        self._send(_InFlight(done, stamps, started))

    def _send(self, batch: _InFlight) -> None:
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
                raise _Stopped("stopped while outputs were unpublished; they stay in the outbox")

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
        if self.budget_stage is not None:
            total.add(self.budget_stage.tally)
        return total

    def _observe(self, started: float) -> None:
        assert self.processor is not None and self.consumer is not None and self.store
        tally = self._tally()
        self.metrics.on_tally(tally.outcomes, tally.by_policy, tally.deadlettered, tally.duplicates)
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

    def _probe(self) -> None:
        from events.kafka import _probe

        answers = {a: _probe(a) for a in self.cfg.bootstrap_servers.split(",")}
        if all(not answer.startswith("TCP connects") for answer in answers.values()):
            self.metrics.kafka_up.set(0)
            shown = "; ".join(f"{a}: {r}" for a, r in answers.items())
            log.warning("no broker answers (%s); the consumer keeps reconnecting", shown)
        else:
            self.metrics.kafka_up.set(1)

    def mend_gaps(
        self, polled: Mapping[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, list[Any]]:
        """The poll without what follows a gap in the budget topic's offsets, the consumer
        sought back to the gap to read it again.

        Only Goodwill writes the budget topic: idempotent producers, no transactions, no
        compaction, so its offsets have no gaps, and a stage that passed one would never
        finish the decisions in it. Yet a broker may let a reader pass records: Tansu's
        memory storage does while two producers append to one partition (docs/kafka.md,
        "Known limits"). The records before the gap go on; from the gap on, the partition
        is read again. A gap still there after `_GAP_REREADS` reads (records deleted by
        retention while the stage was away) is logged and passed."""
        mended: dict[TopicPartition, list[Any]] = {}
        for tp, records in polled.items():
            if tp.topic != self.cfg.budget_topic or not records:
                mended[tp] = records
                continue
            with self._stored_lock:
                expected = self.stored.get(tp.topic, {}).get(tp.partition)
            gap = first_gap(expected, [r.offset for r in records])
            if gap is None:
                mended[tp] = records
                if self._rereads:  # read through: forget this partition's gaps
                    self._rereads = {k: n for k, n in self._rereads.items() if k[0] != tp}
                continue
            cut, missing = gap
            key = (tp, missing)
            tries = self._rereads.pop(key, 0)
            fields = {"topic": tp.topic, "partition": tp.partition, "missing_from": missing}
            fields["next_read"] = records[cut].offset
            if tries >= _GAP_REREADS:
                self.metrics.offset_gaps.labels(tp.topic, "passed").inc()
                log.warning(
                    "%s[%d]: offsets %d to %d were never read, %d reads later; passing them",
                    tp.topic,
                    tp.partition,
                    missing,
                    records[cut].offset - 1,
                    tries,
                    extra=fields,
                )
                mended[tp] = records
                continue
            self._rereads[key] = tries + 1
            self.metrics.offset_gaps.labels(tp.topic, "reread").inc()
            log.warning(
                "%s[%d]: the broker passed offsets %d to %d; reading them again",
                tp.topic,
                tp.partition,
                missing,
                records[cut].offset - 1,
                extra=fields,
            )
            assert self.consumer is not None
            self.consumer.seek(tp, missing)
            if cut:
                mended[tp] = records[:cut]
        return mended

    # ---------------------------------------------------------------- positions

    def _load_stored(self) -> None:
        assert self.store is not None and self.consumer is not None
        from engine.rebuild import partitions_of

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
        from engine.rebuild import partitions_of

        partitions = partitions_of(self.consumer, self.cfg.events_topic)
        return all(self.store.position(self.cfg.events_topic, p) is None for p in partitions)


def first_gap(expected: int | None, offsets: Sequence[int]) -> tuple[int, int] | None:
    """(index, missing offset) of the first offset past the one that should follow the one
    before it (the first one's: `expected`, None when not known), or None when none skips
    ahead. An offset at or behind its place is no gap: records read twice are ignored by
    event id."""
    previous = None if expected is None else expected - 1
    for index, offset in enumerate(offsets):
        if previous is not None and offset > previous + 1:
            return index, previous + 1
        previous = offset
    return None


def _commit_done(offsets: Any, result: Any) -> None:
    if isinstance(result, Exception):
        log.info("offset commit to Kafka failed (positions are in SQLite): %s", result)


class _Stopped(Exception):
    pass


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


def run_kafka(
    cfg: KafkaConfig,
    compiled: CompiledSet,
    options: ServiceOptions,
    on_output: Callable[[Any], None] | None = None,
) -> None:
    """Run the service in this (main) thread until SIGTERM or SIGINT; SIGHUP reloads the
    policy directory (`ServiceOptions.policies`)."""
    service = KafkaService(cfg, compiled, options, on_output)
    service.install_signals()
    # What is loaded by now (modules, schemas, the compiled policy set) lives as long as
    # the process: keep it out of the collector's full passes, which otherwise stalled a
    # batch for ~30 ms every few seconds (the tail of decision latency).
    gc.collect()
    gc.freeze()
    try:
        service.run()
    except _Stopped as exc:
        log.warning("%s", exc)


if __name__ == "__main__":  # python -m engine.kafka_service [run options]
    import sys

    from engine.cli import main

    main(["run", *sys.argv[1:]])
