"""Prometheus metrics of the Kafka service, on their own registry.

Each `Metrics` owns a `CollectorRegistry`, so two services in one process (tests) never
clash; `serve()` exposes it over HTTP with prometheus_client's server thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PromCounter

from engine.policy import Budget

# Event-to-decision latency is milliseconds when caught up and seconds to hours when
# replaying a backlog; buckets cover both.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
)  # fmt: skip


class Metrics:
    """The service's counters and gauges; call the `on_*` methods, scrape `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = PromCounter(
            "goodwill_events_consumed", "input records read from the events topic", registry=r
        )
        self.decisions = PromCounter(
            "goodwill_decisions", "decisions made, by outcome", ["outcome"], registry=r
        )
        self.by_policy = PromCounter(
            "goodwill_policy_decisions",
            "decisions in which a policy fired, by policy id",
            ["policy"],
            registry=r,
        )
        self.deadlettered = PromCounter(
            "goodwill_deadlettered", "records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.duplicates = PromCounter(
            "goodwill_duplicates", "records whose event_id was already decided", registry=r
        )
        self.latency = Histogram(
            "goodwill_decision_latency_seconds",
            "from the input record's Kafka timestamp to its outputs' acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "goodwill_batch_seconds",
            "time to decide, store, publish and commit one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "goodwill_consumer_lag",
            "records in the partition not yet decided (high watermark - position)",
            ["topic", "partition"],
            registry=r,
        )
        self.budget_remaining = Gauge(
            "goodwill_budget_remaining",
            "allocation minus approved spend, in currency units (this instance's view)",
            ["budget", "owner", "period"],
            registry=r,
        )
        self.retries = PromCounter(
            "goodwill_retries",
            "transient failures retried with backoff, by stage",
            ["stage"],
            registry=r,
        )
        self.partial = Gauge(
            "goodwill_cross_customer_state_partial",
            "1 while this instance decides only some partitions of the events topic and the"
            " policy set reads state that spans customers (budgets, defect counts): such"
            " checks then see only this instance's events (docs/kafka.md)",
            registry=r,
        )
        self.kafka_up = Gauge(
            "goodwill_kafka_connected",
            "1 while the service holds working Kafka clients",
            registry=r,
        )
        self._seen: dict[str, Counter[str]] = {"outcome": Counter(), "policy": Counter()}
        self._dead: Counter[str] = Counter()
        self._duplicates = 0

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve /metrics on host:port from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def on_tally(
        self,
        outcomes: Mapping[str, int],
        by_policy: Mapping[str, int],
        deadlettered: Mapping[str, int],
        duplicates: int,
    ) -> None:
        """Bring the counters up to the processor's running totals."""
        for outcome, total in outcomes.items():
            self._advance(self.decisions.labels(outcome), self._seen["outcome"], outcome, total)
        for policy, total in by_policy.items():
            self._advance(self.by_policy.labels(policy), self._seen["policy"], policy, total)
        for reason, total in deadlettered.items():
            self._advance(self.deadlettered.labels(reason), self._dead, reason, total)
        if duplicates > self._duplicates:
            self.duplicates.inc(duplicates - self._duplicates)
            self._duplicates = duplicates

    @staticmethod
    def _advance(metric: PromCounter, seen: Counter[str], label: str, total: int) -> None:
        # The processor's tally holds committed batches only; counters never go backwards.
        if total > seen[label]:
            metric.inc(total - seen[label])
            seen[label] = total

    def on_budgets(
        self,
        rows: Iterable[tuple[str, str, str, int | None, int]],
        defaults: Mapping[str, Budget],
    ) -> None:
        """Set the remaining gauge from `StateStore.budgets()` rows (cents)."""
        for budget, owner, period, allocated, charged in rows:
            if allocated is None:
                known = defaults.get(budget)
                allocated = known.amount if known is not None else 0
            remaining = max(0, allocated - charged)
            self.budget_remaining.labels(budget, owner, period).set(remaining / 100)
