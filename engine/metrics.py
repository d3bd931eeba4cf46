"""Prometheus metrics of the Kafka service, on their own registry, and its health.

Each `Metrics` owns a `CollectorRegistry`, so two services in one process (tests) never
clash. `serve()` answers over HTTP from a daemon thread: `/metrics` (the registry, in
Prometheus' text format), `/healthz` (liveness: the processing loop moves) and `/readyz`
(readiness: connected and deciding, or idle, with nothing failing) — 200 with "ok", or 503
with the reason.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.exposition import choose_encoder

from engine.policy import PolicySet

# Event-to-decision latency is milliseconds when caught up and seconds to hours when
# replaying a backlog; buckets cover both.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
)  # fmt: skip


STALL_S: Final = 300.0
"""/healthz fails once the serving loop has not moved for this long. Every wait in it is
far shorter (a poll, a backoff of at most 30 s); a rebuild at start does not count."""


class Health:
    """What /healthz and /readyz answer. The service calls `beat()` as its loop goes round
    and `ready()` with None once it decides, or with why it does not."""

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._beat = time.monotonic()
        self._not_ready: str | None = "starting"
        self._rebuilding = False

    def beat(self) -> None:
        self._beat = time.monotonic()

    def ready(self, why_not: str | None) -> None:
        self._not_ready = why_not

    def rebuilding(self, on: bool) -> None:
        """A rebuild folds history for as long as it takes: alive, not ready."""
        self._rebuilding = on
        self._not_ready = "rebuilding the state from the topics" if on else "starting"
        self.beat()

    def live(self) -> str | None:
        """None when alive, else why not."""
        stalled = time.monotonic() - self._beat
        if self._rebuilding or stalled < self.stall_s:
            return None
        return f"the processing loop has not moved for {stalled:.0f} s"

    def readiness(self) -> str | None:
        """None when ready, else why not."""
        return self.live() or self._not_ready


class Metrics:
    """The service's counters and gauges; call the `on_*` methods, scrape `registry`."""

    def __init__(self) -> None:
        self.health = Health()
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
        self.misplaced = PromCounter(
            "goodwill_misplaced_events",
            "input events that came on another partition than their key places them on"
            " (murmur2, as Goodwill's producers and Java's place keys): decided all the same,"
            " possibly out of order or against another instance's share of their customer",
            registry=r,
        )
        self.duplicates = PromCounter(
            "goodwill_duplicates", "records whose event_id was already decided", registry=r
        )
        self.time_jumps = PromCounter(
            "goodwill_event_time_jumps",
            "events that moved event time more than a week ahead at once (a wrong date?)",
            registry=r,
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
        self.budget_stage = Gauge(
            "goodwill_budget_stage_enabled",
            "1 when budgets are checked by the budget stage (--budget-stage kafka)",
            registry=r,
        )
        self.kafka_up = Gauge(
            "goodwill_kafka_connected",
            "1 while the service holds working Kafka clients",
            registry=r,
        )
        self.policy_set = Gauge(
            "goodwill_policy_set",
            "1 for the policy set hash this service decides with",
            ["hash"],
            registry=r,
        )
        self.offset_gaps = PromCounter(
            "goodwill_offset_gaps",
            "gaps in the budget topic's offsets: read again (reread) or, after three reads,"
            " passed unread (passed: decisions that may never be finished)",
            ["topic", "outcome"],
            registry=r,
        )
        self.policy_reloads = PromCounter(
            "goodwill_policy_reloads",
            "policy directory reloads (SIGHUP), by result: activated, unchanged, refused",
            ["result"],
            registry=r,
        )
        self._seen: dict[str, Counter[str]] = {"outcome": Counter(), "policy": Counter()}
        self._dead: Counter[str] = Counter()
        self._duplicates = 0
        self._time_jumps = 0

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Serve /metrics, /healthz and /readyz on host:port from a daemon thread."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":  # the format the scraper asks for, as prometheus_client's
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._answer(200, encoder(metrics.registry), content_type)
                elif path in ("/healthz", "/readyz"):
                    health = metrics.health
                    why_not = health.live() if path == "/healthz" else health.readiness()
                    body = f"{why_not or 'ok'}\n".encode()
                    self._answer(503 if why_not else 200, body, "text/plain; charset=utf-8")
                else:
                    body = b"not found: try /metrics, /healthz or /readyz\n"
                    self._answer(404, body, "text/plain; charset=utf-8")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the service's log

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="goodwill-http", daemon=True).start()
        return server

    def on_policy_set(self, active: str, previous: str | None = None) -> None:
        if previous is not None:
            self.policy_set.remove(previous)
        self.policy_set.labels(active).set(1)

    def on_tally(
        self,
        outcomes: Mapping[str, int],
        by_policy: Mapping[str, int],
        deadlettered: Mapping[str, int],
        duplicates: int,
        time_jumps: int = 0,
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
        if time_jumps > self._time_jumps:
            self.time_jumps.inc(time_jumps - self._time_jumps)
            self._time_jumps = time_jumps

    @staticmethod
    def _advance(metric: PromCounter, seen: Counter[str], label: str, total: int) -> None:
        # The processor's tally holds committed batches only; counters never go backwards.
        if total > seen[label]:
            metric.inc(total - seen[label])
            seen[label] = total

    def on_budgets(
        self, rows: Iterable[tuple[str, str, str, int | None, int]], policy_set: PolicySet
    ) -> None:
        """Set the remaining gauge from `StateStore.budgets()` rows (cents)."""
        for budget, owner, period, stored, charged in rows:
            remaining = max(0, policy_set.allocated(budget, stored) - charged)
            self.budget_remaining.labels(budget, owner, period).set(remaining / 100)
