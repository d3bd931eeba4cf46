"""Throughput of a raw Kafka consume → produce pipe, with no engine in it.

topic A ──producer──▶ A ──relay (a separate process)──▶ B ──sink

The relay is the Kafka half of `goodwill run --kafka` and nothing else: a group consumer
polls at most `--batch` records, the previous batch's acknowledgements are awaited (flush,
every future checked) and its offsets committed asynchronously, then this batch is sent —
the service's pipelined delivery (engine/kafka_service.py `_batch`, engine/delivery.py
`_send`/`_settle`) minus the SQLite transaction and the decision. Clients come from
events.kafka (make_producer, make_consumer: acks=all, idempotence, no compression, the
same batching and fetch settings), and the relay runs in a process of its own, like the
service, so the figures are a fair ceiling for the end-to-end benchmark. bench/kafka_e2e.py
pipes its own workload with output records as large as its decisions.

    python bench/kafka_pipe.py --events 20000

starts its own Tansu unless KAFKA_BOOTSTRAP_SERVERS is set. Client settings can be changed
with the GOODWILL_KAFKA_* variables (events.kafka.KafkaConfig.from_env), for every client.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from events.kafka import (
    FAST_GROUP_TIMEOUTS,
    KafkaConfig,
    create_topics,
    make_consumer,
    make_producer,
)

JOIN_TIMEOUT_S = 30.0
POLL_MS = 100  # engine.service_options.ServiceOptions.poll_ms

KeyValue = tuple[bytes | None, bytes]


def bench_config(bootstrap: str, run: str, **names: str) -> KafkaConfig:
    """A config for a benchmark run: the GOODWILL_KAFKA_* client settings of the environment
    (the same for every client of the run), its own topics and group, fast group timeouts."""
    settings: dict[str, Any] = {**FAST_GROUP_TIMEOUTS, "bootstrap_servers": bootstrap}
    settings.update(client_id=run, **names)
    return KafkaConfig.from_env(os.environ, **settings)


def _relay(
    cfg: KafkaConfig,
    out_bytes: int | None,
    batch: int,
    joined: Any,
    stop: Any,
    errors: Any,
) -> None:
    """The relay process: cfg.events_topic → cfg.decisions_topic, as the service delivers."""
    try:
        consumer = make_consumer(cfg)
        producer = make_producer(cfg)
        with closing(consumer), closing(producer):
            consumer.subscribe([cfg.events_topic])
            started = time.monotonic()
            while not consumer.assignment() and time.monotonic() - started < JOIN_TIMEOUT_S:
                consumer.poll(timeout_ms=POLL_MS, max_records=1, update_offsets=False)
            if not consumer.assignment():
                raise RuntimeError(f"relay did not join group {cfg.group_id}")
            joined.set()
            pad = b"x" * (out_bytes or 0)
            in_flight: tuple[list[Any], dict[TopicPartition, OffsetAndMetadata]] | None = None

            def settle() -> None:
                nonlocal in_flight
                if in_flight is None:
                    return
                futures, offsets = in_flight
                in_flight = None
                producer.flush()
                for future in futures:
                    future.get(timeout=0)  # raises if a record was not acknowledged
                consumer.commit_async(offsets)

            topic = cfg.decisions_topic
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=POLL_MS, max_records=batch)
                settle()
                if not polled:
                    continue
                futures = []
                for records in polled.values():
                    for r in records:
                        value = r.value
                        if out_bytes:
                            value = (value + pad)[:out_bytes]
                        futures.append(
                            producer.send(topic, key=r.key, value=value, timestamp_ms=r.timestamp)
                        )
                offsets = {
                    tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)
                    for tp, records in polled.items()
                }
                in_flight = (futures, offsets)
            settle()
    except BaseException as error:
        errors.put(repr(error))
        raise


def _synthetic(n_events: int, value_bytes: int) -> list[KeyValue]:
    value = os.urandom(value_bytes)
    return [(b"customer-%d" % (i % 1000), value) for i in range(n_events)]


def _produce(
    cfg: KafkaConfig, records: Sequence[KeyValue], rate: float | None, failures: list[Any]
) -> float:
    """Send `records` to cfg.events_topic (at `rate` per second if given); seconds taken."""
    try:
        with closing(make_producer(cfg)) as producer:
            started = time.monotonic()
            for i, (key, value) in enumerate(records):
                if rate is not None:
                    due = started + i / rate
                    while (now := time.monotonic()) < due:
                        time.sleep(min(0.001, due - now))
                producer.send(cfg.events_topic, key=key, value=value)
            producer.flush()
            return time.monotonic() - started
    except BaseException as error:
        failures.append(error)
        return 0.0


def raw_pipe(
    bootstrap: str,
    n_events: int,
    value_bytes: int = 300,
    partitions: int = 4,
    *,
    records: Sequence[KeyValue] | None = None,
    out_bytes: int | None = None,
    batch: int = 500,
    latency_events: int = 0,
    rate: float = 2000.0,
) -> dict[str, Any]:
    """Pipe records A → relay → B and report rates; raises if they do not all arrive.

    `records` are the (key, value) inputs (default: ``n_events`` synthetic records of
    ``value_bytes``); the relay writes each value cut or padded to ``out_bytes`` if given.
    The clock starts when the first record is produced, after the relay joined its group.
    Then ``latency_events`` more records are offered at ``rate`` per second, and each one's
    latency is taken from its creation (its A timestamp, carried over to B) to the sink.
    """
    run = f"bench.{uuid.uuid4().hex[:8]}"
    cfg = bench_config(
        bootstrap,
        run,
        events_topic=f"{run}.a",
        decisions_topic=f"{run}.b",
        deadletter_topic=f"{run}.dead",
        budget_topic=f"{run}.budget",
        group_id=f"{run}.relay",
    )
    bulk = list(records) if records is not None else _synthetic(n_events, value_bytes)
    n_events = len(bulk)
    paced = _synthetic(latency_events, value_bytes)
    create_topics(cfg, partitions)
    failures: list[Any] = []

    context = multiprocessing.get_context("spawn")
    joined, stop, errors = context.Event(), context.Event(), context.Queue()
    relay = context.Process(
        target=_relay, args=(cfg, out_bytes, batch, joined, stop, errors), name="relay"
    )
    begun = time.monotonic()
    relay.start()
    try:
        if not joined.wait(JOIN_TIMEOUT_S + 30):
            raise RuntimeError(f"relay did not join group {cfg.group_id}: {_error(errors)}")
        join_s = time.monotonic() - begun
        with closing(make_consumer(cfg, group=False)) as sink:
            tps = [TopicPartition(cfg.decisions_topic, p) for p in range(partitions)]
            sink.assign(tps)
            sink.seek_to_beginning(*tps)

            def drain(count: int, deadline: float) -> list[int]:
                latencies: list[int] = []
                while len(latencies) < count and time.monotonic() < deadline:
                    if failures or not relay.is_alive():
                        raise RuntimeError(f"pipe failed: {failures or _error(errors)}")
                    for batch_ in sink.poll(timeout_ms=POLL_MS).values():
                        now_ms = int(time.time() * 1000)
                        latencies.extend(now_ms - r.timestamp for r in batch_)
                return latencies

            produced: list[float] = []
            producer = threading.Thread(
                target=lambda: produced.append(_produce(cfg, bulk, None, failures))
            )
            started = time.monotonic()
            producer.start()
            arrived = drain(n_events, started + max(60.0, n_events / 500))
            end_to_end_s = time.monotonic() - started
            producer.join(30)
            if len(arrived) < n_events:
                raise RuntimeError(f"only {len(arrived)} of {n_events} reached {run}.b")
            latencies = []
            if latency_events:
                producer = threading.Thread(target=_produce, args=(cfg, paced, rate, failures))
                producer.start()
                latencies = drain(latency_events, time.monotonic() + latency_events / rate + 60)
                producer.join(30)
                if len(latencies) < latency_events:
                    raise RuntimeError(f"only {len(latencies)} of {latency_events} paced arrived")
    finally:
        stop.set()
        relay.join(30)
        if relay.is_alive():
            relay.terminate()
            relay.join(5)
    if failures:
        raise RuntimeError(f"pipe failed: {failures[0]!r}") from failures[0]
    result: dict[str, Any] = {
        "events": n_events,
        "value_bytes": round(sum(len(v) for _, v in bulk) / n_events),
        "out_bytes": out_bytes or "same",
        "partitions": partitions,
        "batch": batch,
        "group_join_s": round(join_s, 3),
        "produce_s": round(produced[0], 3),
        "produce_events_per_s": round(n_events / produced[0]),
        "end_to_end_s": round(end_to_end_s, 3),
        "end_to_end_events_per_s": round(n_events / end_to_end_s),
    }
    if latencies:
        latencies.sort()
        result.update(
            latency_offered_per_s=rate,
            latency_events=latency_events,
            latency_p50_ms=latencies[len(latencies) // 2],
            latency_p99_ms=latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)],
            latency_max_ms=latencies[-1],
        )
    return result


def _error(errors: Any) -> str:
    try:
        return str(errors.get_nowait())
    except queue.Empty:
        return "no error reported"


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
    parser.add_argument("--out-bytes", type=int, default=None, help="relay output size")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="most records per relay poll")
    parser.add_argument("--latency-events", type=int, default=0)
    parser.add_argument("--rate", type=float, default=2000.0, help="offered records/s")
    args = parser.parse_args(argv)
    with bench_broker() as (bootstrap, where):
        result = raw_pipe(
            bootstrap,
            args.events,
            args.value_bytes,
            args.partitions,
            out_bytes=args.out_bytes,
            batch=args.batch,
            latency_events=args.latency_events,
            rate=args.rate,
        )
    print(f"raw kafka-python pipe on {where}:")
    for name, figure in result.items():
        print(f"  {name:26} {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
