"""End-to-end throughput and latency of Goodwill on Kafka, next to a raw kafka-python pipe.

    producer ──▶ events ──▶ goodwill (a separate process, as deployed) ──▶ decisions ──▶ sink

1. Throughput: `--events` workload events (bench/workload.py) produced as fast as the
   producer goes; the clock runs from the first send to the last decision consumed.
2. Latency: `--latency-events` more events offered at `--rate` per second by a paced
   producer; each decision's latency is from its input's send to the sink receiving it.
3. The raw pipe (bench/kafka_pipe.py) on the same broker, for the ceiling: the same
   workload events in, records as large as the decisions out (their mean size), the same
   client settings, a relay process that delivers like the service minus the engine; and
   its latency at the same offered rate.

Every client (producer, sink, service, relay) gets the same settings: the GOODWILL_KAFKA_*
variables of the environment (events.kafka.KafkaConfig.from_env) over the defaults.

    python bench/kafka_e2e.py --events 100000

starts its own Tansu unless KAFKA_BOOTSTRAP_SERVERS is set.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import TopicPartition

from bench.kafka_pipe import bench_broker, bench_config, raw_pipe
from bench.workload import generate
from events.kafka import KafkaConfig, create_topics, make_consumer, make_producer

ROOT = Path(__file__).resolve().parent.parent
PROFILE = os.environ.get("GOODWILL_BENCH_PROFILE")  # py-spy raw output file for the service


# A decision names its cause once, in data.caused_by (an event id is a plain JSON string).
CAUSED_BY = re.compile(rb'"caused_by":"([^"\\]*)"')


class Input:
    """A workload event with its id and key worked out before any clock runs."""

    __slots__ = ("event_id", "key", "raw")

    def __init__(self, raw: bytes) -> None:
        doc = json.loads(raw)
        data = doc.get("data") or {}
        key = doc.get("customer_id") or data.get("owner") or data.get("rep_id")
        self.event_id: str = doc["event_id"]
        self.key = key.encode() if key else None
        self.raw = raw


class Missing(RuntimeError):
    """Decisions the sink has not seen in time; `ids` are their causes."""

    def __init__(self, ids: set[str], timeout_s: float) -> None:
        super().__init__(f"{len(ids)} decision(s) did not arrive within {timeout_s:.0f} s")
        self.ids = ids


class Sink:
    """Reads the decisions topic in a thread; records when each cause's decision arrived."""

    def __init__(self, cfg: KafkaConfig, partitions: int) -> None:
        self.arrived: dict[str, float] = {}
        self.decision_bytes = 0  # total size of the decisions seen, for their mean
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.consumer = make_consumer(cfg, group=False)
        tps = [TopicPartition(cfg.decisions_topic, p) for p in range(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.thread = threading.Thread(target=self._run, name="sink", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with closing(self.consumer):
            while not self.stop.is_set():
                for records in self.consumer.poll(timeout_ms=50).values():
                    now = time.monotonic()
                    with self.lock:
                        for r in records:
                            if b'"decision.made"' in r.value:
                                found = CAUSED_BY.search(r.value)
                                cause = (
                                    found.group(1).decode()
                                    if found
                                    else json.loads(r.value)["data"]["caused_by"]
                                )
                                if cause not in self.arrived:
                                    self.arrived[cause] = now
                                    self.decision_bytes += len(r.value)

    def wait_for(self, ids: Iterable[str], timeout_s: float) -> float:
        """Monotonic time the last of `ids` arrived; raises if they do not all arrive."""
        wanted = list(ids)
        missing = set(wanted)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                missing = {i for i in missing if i not in self.arrived}
                if not missing:
                    return max(self.arrived[i] for i in wanted)
            time.sleep(0.05)
        raise Missing(missing, timeout_s)


def produce(cfg: KafkaConfig, events: list[Input], rate: float | None) -> dict[str, float]:
    """Send `events` (at `rate` per second if given); return each event's send time."""
    sent: dict[str, float] = {}
    topic = cfg.events_topic
    with closing(make_producer(cfg)) as producer:
        started = time.monotonic()
        for i, event in enumerate(events):
            if rate is not None:
                due = started + i / rate
                while (now := time.monotonic()) < due:
                    time.sleep(min(0.001, due - now))
            sent[event.event_id] = time.monotonic()
            producer.send(topic, key=event.key, value=event.raw)
        producer.flush()
    return sent


def start_goodwill(
    cfg: KafkaConfig, data_dir: Path, batch: int, budget_stage: str = "local"
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "engine.kafka_service",
        "--kafka", cfg.bootstrap_servers,
        "--events-topic", cfg.events_topic,
        "--decisions-topic", cfg.decisions_topic,
        "--deadletter-topic", cfg.deadletter_topic,
        "--budget-topic", cfg.budget_topic,
        "--group-id", cfg.group_id,
        "--session-timeout-ms", str(cfg.session_timeout_ms),
        "--heartbeat-interval-ms", str(cfg.heartbeat_interval_ms),
        "--data-dir", str(data_dir),
        "--policies", str(ROOT / "policies"),
        "--batch", str(batch),
        "--budget-stage", budget_stage,
    ]  # fmt: skip
    env = {**os.environ, "GOODWILL_LOG_LEVEL": "WARNING"}
    service = subprocess.Popen(args, cwd=ROOT, env=env)
    if PROFILE:  # sample the service while the bulk phase runs
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(service.pid)]
        subprocess.Popen([*spy, "--duration", "12", "--format", "raw", "-o", PROFILE])
    return service


def engine_run(
    bootstrap: str,
    n_events: int,
    latency_events: int,
    rate: float,
    partitions: int,
    batch: int,
    instances: int = 1,
    budget_stage: str = "local",
) -> dict[str, Any]:
    run = f"e2e.{uuid.uuid4().hex[:8]}"
    cfg = bench_config(
        bootstrap,
        run,
        events_topic=f"{run}.events",
        decisions_topic=f"{run}.decisions",
        deadletter_topic=f"{run}.deadletter",
        budget_topic=f"{run}.budget",
        group_id=f"{run}.goodwill",
    )
    create_topics(cfg, partitions)
    customers = max(1000, n_events // 20)
    stream = [Input(raw) for raw in generate(n_events + latency_events + 1, customers)]
    warmup, bulk, paced = stream[:1], stream[1 : n_events + 1], stream[n_events + 1 :]
    sink = Sink(cfg, partitions)
    with tempfile.TemporaryDirectory(prefix="goodwill-e2e-") as data_dir:
        services = [
            start_goodwill(cfg, Path(data_dir) / f"i{i}", batch, budget_stage)
            for i in range(instances)
        ]
        try:
            # The clock starts once the service has joined and decided a first event.
            produce(cfg, warmup, None)
            sink.wait_for([warmup[0].event_id], 60)
            if instances > 1:
                time.sleep(5)  # let the group settle on sharing the partitions

            started = time.monotonic()
            sent = produce(cfg, bulk, None)
            produced_s = time.monotonic() - started
            finished = sink.wait_for(sent, max(120.0, n_events / 500))
            throughput_s = finished - started

            paced_sent = produce(cfg, paced, rate)
            try:
                sink.wait_for(paced_sent, 120)
            except Missing as miss:
                report_missing(miss.ids, stream, Path(data_dir), instances)
                raise
            with sink.lock:
                latencies = sorted((sink.arrived[i] - t) * 1000 for i, t in paced_sent.items())
                decision_bytes = round(sink.decision_bytes / max(1, len(sink.arrived)))
        finally:
            for service in services:
                service.send_signal(signal.SIGTERM)
            codes = [service.wait(60) for service in services]
            sink.stop.set()
    if any(codes):
        raise RuntimeError(f"goodwill exited with {codes} after SIGTERM")
    return {
        "instances": instances,
        "budget_stage": budget_stage,
        "events": n_events,
        "partitions": partitions,
        "batch": batch,
        "produce_events_per_s": round(n_events / produced_s),
        "end_to_end_s": round(throughput_s, 3),
        "end_to_end_events_per_s": round(n_events / throughput_s),
        "latency_offered_per_s": rate,
        "latency_events": latency_events,
        "latency_p50_ms": round(latencies[len(latencies) // 2], 1),
        "latency_p99_ms": round(latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)], 1),
        "latency_max_ms": round(latencies[-1], 1),
        "decision_bytes": decision_bytes,
        "inputs": [(e.key, e.raw) for e in bulk],
    }


def report_missing(ids: set[str], stream: list[Input], data_dir: Path, instances: int) -> None:
    """On stderr, where each missing decision's cause stands in every instance's store:
    seen (decided by the customer stage), its request seen by a budget stage, and its
    outbox rows (kind, topic, sent). A decision sent and acknowledged (sent=1) but not
    seen by the sink points at the broker or the sink, not at Goodwill."""
    import hashlib
    import sqlite3

    by_id = {e.event_id: e for e in stream}
    stores = []
    for i in range(instances):
        db = sqlite3.connect(f"file:{data_dir / f'i{i}' / 'state.db'}?mode=ro", uri=True)
        (policy_set,) = db.execute("SELECT value FROM meta WHERE key = 'policy_set'").fetchone()
        positions = db.execute("SELECT source, part, next_offset FROM positions").fetchall()
        print(f"i{i}: positions {positions}", file=sys.stderr)
        stores.append((f"i{i}", db, policy_set))
    for event_id in sorted(ids)[:50]:
        event = json.loads(by_id[event_id].raw)
        where = []
        for name, db, policy_set in stores:
            decision = hashlib.sha256(f"{event_id}|{policy_set}".encode()).hexdigest()[:32]
            seen = db.execute("SELECT count(*) FROM seen WHERE event_id = ?", (event_id,))
            staged = db.execute(
                "SELECT count(*) FROM seen WHERE event_id = ?", (f"budget:{decision}",)
            )
            rows = db.execute(
                "SELECT kind, topic, sent FROM outbox WHERE ident IN (?, ?)",
                (decision, f"budget:{decision}"),
            ).fetchall()
            counts = f"seen {seen.fetchone()[0]} request seen {staged.fetchone()[0]}"
            where.append(f"{name}: {counts} outbox {rows}")
        print(
            f"missing {event_id} {event['type']} key {by_id[event_id].key!r}: {'; '.join(where)}",
            file=sys.stderr,
        )
    for _, db, _ in stores:
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="offered events/s for latency")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--skip-raw", action="store_true", help="do not run the raw pipe")
    parser.add_argument("--instances", type=int, default=1, help="goodwill processes in the group")
    parser.add_argument(
        "--budget-stage",
        choices=("local", "kafka"),
        default="local",
        help="passed to goodwill run (use kafka with more than one instance)",
    )
    args = parser.parse_args(argv)
    with bench_broker() as (bootstrap, where):
        result = engine_run(
            bootstrap,
            args.events,
            args.latency_events,
            args.rate,
            args.partitions,
            args.batch,
            args.instances,
            args.budget_stage,
        )
        inputs = result.pop("inputs")
        raw = None
        if not args.skip_raw:  # the same inputs, outputs as large as the decisions
            raw = raw_pipe(
                bootstrap,
                len(inputs),
                partitions=args.partitions,
                records=inputs,
                out_bytes=result["decision_bytes"],
                batch=args.batch,
                latency_events=args.latency_events,
                rate=args.rate,
            )
    print(f"goodwill end to end on {where}:")
    for name, figure in result.items():
        print(f"  {name:26} {figure}")
    if raw is not None:
        print("raw kafka-python pipe (no engine), same broker:")
        for name, figure in raw.items():
            print(f"  {name:26} {figure}")
        ratio = result["end_to_end_events_per_s"] / raw["end_to_end_events_per_s"]
        print(f"  {'ratio_vs_raw_pipe':26} {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
