"""The Kafka backend: a consumer-group member that decides the events topic.

One loop, one thread (docs/kafka.md, "Delivery guarantees"):

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

The loop is here; the publishing of a batch's outputs is `engine.delivery`, the partitions
assigned and their stored positions `engine.assignment`, gaps in the budget topic
`engine.offset_gaps` (mixins of `KafkaService`), and the test-only `GOODWILL_CRASH_AT`
hook that kills the service at each step `engine.crash_hook`.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Final

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from engine.archive import keep
from engine.assignment import Assignment, Seeker
from engine.backoff import Backoff
from engine.budget_stage import BudgetStage
from engine.compile import CompiledSet, load
from engine.crash_hook import CRASH_ENV, CrashHook
from engine.decide import Decider
from engine.delivery import Delivery, InFlight, Outlet, Stopped
from engine.errors import PolicyError
from engine.ledger import StateModeError
from engine.metrics import Metrics
from engine.offset_gaps import GapGuard
from engine.placement import Placement
from engine.rebuild import fold_history
from engine.service import (
    BUDGET_TOPIC,
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    Listener,
    Processor,
)
from engine.service_options import ServiceOptions
from engine.state import StateStore
from events.kafka import KafkaConfig, KafkaUnavailable, make_consumer, probe, to_record
from events.kafka_log import KafkaLog

log = logging.getLogger("goodwill.kafka")

_QUIET_PROBE_S: Final = 15.0  # an idle consumer this long checks that the brokers answer


class KafkaService(Assignment, GapGuard, Delivery):
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
        self.placement = Placement(cfg.events_topic, self.metrics.misplaced)
        self.outlet: Outlet | None = None
        self.in_flight: InFlight | None = None  # outputs sent, acks not yet seen
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
            self.store.check_whole(str(opts.data_dir))
            self.store.keep_mode("budget_stage", opts.budget_stage, str(opts.data_dir))
        except StateModeError:
            self.store.close()
            raise
        if opts.retain_days is not None:
            self.store.retain(opts.retain_days)
        split = opts.budget_stage == "kafka"
        self.processor = Processor(self.store, Decider(self.compiled), self.on_output, split=split)
        self.processor.placement = self.placement.check
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
        self.outlet = Outlet(producer_log, self.crash)
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

    # ---------------------------------------------------------------- the loop

    def _serve(self) -> None:
        assert self.store is not None and self.processor is not None
        assert self.consumer is not None
        self._relay()  # outputs a crash left unpublished go first, unchanged
        if self.options.rebuild_on_start and self._store_is_empty():
            self.metrics.health.rebuilding(True)
            self.store.rebuilding(True)  # a rebuild that stops part way is refused at start
            try:
                report = fold_history(self.cfg, self.processor, self.options, self.stopping)
            finally:
                self.metrics.health.rebuilding(False)
            if self.stopping.is_set():  # stopped part way: the next start refuses it
                raise Stopped(
                    f"stopped while rebuilding from the topics: the next start refuses the"
                    f" partial state in {self.options.data_dir}; delete its state.db* first,"
                    " and that start rebuilds it again"
                )
            self.store.rebuilding(False)
            if report.empty:
                log.info("new store, and no history on the topics: starting from the start")
            else:
                log.info("rebuilt state from the topics", extra=report.fields())
            self._relay()
        keep(self.options.data_dir, self.compiled.policy_set)
        if self.processor.activate() is not None:
            log.info("policy set activated", extra={"policy_set": self.compiled.hash})
        self._relay()
        self._load_stored()
        # With the budget stage the group shares the budget topic's one partition too: one
        # member at a time finishes the decisions that read a budget.
        topics = [self.cfg.events_topic]
        if self.budget_stage is not None:
            topics.append(self.cfg.budget_topic)
        self.consumer.subscribe(topics, listener=Seeker(self))
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
        keep(self.options.data_dir, compiled.policy_set)
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
        self._send(InFlight(done, stamps, started))

    def _probe(self) -> None:
        answers = {a: probe(a) for a in self.cfg.bootstrap_servers.split(",")}
        if all(not answer.startswith("TCP connects") for answer in answers.values()):
            self.metrics.kafka_up.set(0)
            shown = "; ".join(f"{a}: {r}" for a, r in answers.items())
            log.warning("no broker answers (%s); the consumer keeps reconnecting", shown)
        else:
            self.metrics.kafka_up.set(1)


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
    except Stopped as exc:
        log.warning("%s", exc)


if __name__ == "__main__":  # python -m engine.kafka_service [run options]
    import sys

    from engine.cli import main

    main(["run", *sys.argv[1:]])
