"""Throughput of a raw Kafka consume → produce pipe, with no engine in it.

topic A ──producer──▶ A ──relay (group consumer → producer, commit per batch)──▶ B ──sink

The relay follows the engine's delivery pattern: poll a batch, send every record, wait for
all acknowledgements (acks=all), then commit. Clients come from events.kafka, so the figures
use the production client settings. The result is the ceiling for the end-to-end benchmark.

    python bench/kafka_pipe.py --events 20000

starts its own Tansu unless KAFKA_BOOTSTRAP_SERVERS is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import TopicPartition

from events.kafka import (
    FAST_GROUP_TIMEOUTS,
    KafkaConfig,
    create_topics,
    make_consumer,
    make_producer,
)

JOIN_TIMEOUT_S = 30.0


def raw_pipe(
    bootstrap: str, n_events: int, value_bytes: int = 300, partitions: int = 4
) -> dict[str, Any]:
    """Pipe ``n_events`` records A → relay → B and report rates; raises if they do not arrive.

    The clock starts when the first record is produced, after the relay joined its group.
    Latency is from the record's creation (its A timestamp, carried over to B) to the sink.
    """
    run = f"bench.{uuid.uuid4().hex[:8]}"
    source = KafkaConfig(
        bootstrap_servers=bootstrap,
        events_topic=f"{run}.a",
        decisions_topic=f"{run}.b",
        deadletter_topic=f"{run}.dead",
        group_id=f"{run}.relay",
        client_id=run,
        **FAST_GROUP_TIMEOUTS,
    )
    topic_a, topic_b = source.events_topic, source.decisions_topic
    create_topics(source, partitions)
    stop = threading.Event()
    failures: list[BaseException] = []

    relay_consumer = make_consumer(source)
    relay_consumer.subscribe([topic_a])
    joined = time.monotonic()
    while not relay_consumer.assignment() and time.monotonic() - joined < JOIN_TIMEOUT_S:
        relay_consumer.poll(timeout_ms=100)
    join_s = time.monotonic() - joined
    if not relay_consumer.assignment():
        relay_consumer.close()
        raise RuntimeError(f"relay did not join group {source.group_id} in {JOIN_TIMEOUT_S} s")

    def relay() -> None:
        try:
            with closing(relay_consumer), closing(make_producer(source)) as producer:
                while not stop.is_set():
                    batches = relay_consumer.poll(timeout_ms=100)
                    sent = [
                        producer.send(topic_b, key=r.key, value=r.value, timestamp_ms=r.timestamp)
                        for records in batches.values()
                        for r in records
                    ]
                    if sent:
                        producer.flush()
                        for future in sent:
                            future.get(timeout=0)  # raises if a record was not acknowledged
                        relay_consumer.commit()
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    value = os.urandom(value_bytes)
    produced_s: list[float] = []

    def produce() -> None:
        try:
            with closing(make_producer(source)) as producer:
                started = time.monotonic()
                for i in range(n_events):
                    producer.send(topic_a, key=b"customer-%d" % (i % 1000), value=value)
                producer.flush()
                produced_s.append(time.monotonic() - started)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=relay, name="relay"), threading.Thread(target=produce)]
    latencies_ms: list[int] = []
    with closing(make_consumer(source, group=False)) as sink:
        sink.assign([TopicPartition(topic_b, p) for p in range(partitions)])
        started = time.monotonic()
        for thread in threads:
            thread.start()
        deadline = started + max(60.0, n_events / 500)
        try:
            while len(latencies_ms) < n_events and time.monotonic() < deadline and not failures:
                for records in sink.poll(timeout_ms=100).values():
                    now_ms = int(time.time() * 1000)
                    latencies_ms.extend(now_ms - r.timestamp for r in records)
            end_to_end_s = time.monotonic() - started
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    if failures:
        raise RuntimeError(f"pipe failed: {failures[0]!r}") from failures[0]
    if len(latencies_ms) < n_events:
        raise RuntimeError(f"only {len(latencies_ms)} of {n_events} events reached {topic_b}")
    latencies_ms.sort()
    return {
        "events": n_events,
        "value_bytes": value_bytes,
        "partitions": partitions,
        "group_join_s": round(join_s, 3),
        "produce_s": round(produced_s[0], 3),
        "produce_events_per_s": round(n_events / produced_s[0]),
        "end_to_end_s": round(end_to_end_s, 3),
        "end_to_end_events_per_s": round(n_events / end_to_end_s),
        "latency_p50_ms": latencies_ms[len(latencies_ms) // 2],
        "latency_p99_ms": latencies_ms[min(len(latencies_ms) - 1, len(latencies_ms) * 99 // 100)],
    }


@contextmanager
def bench_broker() -> Iterator[tuple[str, str]]:
    """(bootstrap, description): KAFKA_BOOTSTRAP_SERVERS if set, else a Tansu started here
    and stopped afterwards."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if bootstrap:
        yield bootstrap, bootstrap
        return
    from tests.kafka_broker import start_broker, stop_broker

    broker = start_broker()
    try:
        yield broker.bootstrap, "Tansu (memory)"
    finally:
        stop_broker(broker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--value-bytes", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    with bench_broker() as (bootstrap, where):
        result = raw_pipe(bootstrap, args.events, args.value_bytes, args.partitions)
    print(f"raw kafka-python pipe on {where}:")
    for name, figure in result.items():
        print(f"  {name:26} {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
