"""Does the broker hand a reader every record when two producers append to one partition?

    python bench/broker_two_writers.py                 # 20,000 records per producer
    python bench/broker_two_writers.py --records 5000

Two producer processes (idempotent, acks=all, as Goodwill's) append to partition 0 of one
topic at once, in batches of 15 records (about what one Goodwill batch forwards to the
budget topic), while a consumer in this process reads the partition as it grows. At the
end it prints how many acknowledged records the reader did not get and how many gaps its
offsets had. A correct broker shows `missing 0`, `offset gaps 0`.

Found on 2026-11-30: Tansu (memory storage, the test broker) answers a concurrent reader
with a later batch before an earlier one is visible, so the reader skips that batch
(missing 15, 15 and 30 records in three runs, each batch an offset gap), while a reader that
starts after the writes have finished gets every record. That is the miss of two-instance
runs with the budget stage (bench/README.md, "2026-11-30"): both instances append to the
budget topic's one partition. Uses KAFKA_BOOTSTRAP_SERVERS if set, else starts its own
Tansu.

`--mend`: the reader does what the service does on the budget topic
(`GapGuard.mend_gaps`, engine/offset_gaps.py): on a gap in the offsets it keeps what came
before, seeks back to the gap and reads again (at most three times per gap). It prints how
often it did, and whether anything was still missing.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import TopicPartition

from bench.kafka_pipe import bench_broker
from engine.offset_gaps import first_gap
from events.kafka import KafkaConfig, create_topics, make_consumer, make_producer

BATCH = 15


def _write(bootstrap: str, topic: str, name: str, n: int, out: Any) -> None:
    producer = make_producer(KafkaConfig(bootstrap_servers=bootstrap))
    acked: list[str] = []
    for start in range(0, n, BATCH):
        sent = []
        for i in range(start, min(n, start + BATCH)):
            value = f"{name}-{i:06d}".encode() + b"x" * 700
            sent.append((value[:8].decode(), producer.send(topic, value=value, partition=0)))
        producer.flush()
        for label, future in sent:
            future.get(timeout=10)
            acked.append(label)
    producer.close()
    out.put((name, acked))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="per producer")
    parser.add_argument("--mend", action="store_true", help="seek back over gaps, as the service")
    args = parser.parse_args(argv)
    with bench_broker() as (bootstrap, described):
        topic = f"two-writers-{int(time.time())}"
        cfg = KafkaConfig(bootstrap_servers=bootstrap, events_topic=topic)
        create_topics(cfg, 1)
        reader = make_consumer(cfg, group=False)
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        reader.seek_to_beginning(tp)
        got: list[str] = []
        offsets: list[int] = []
        rereads: dict[int, int] = {}  # gap offset -> reads again

        def read(timeout_ms: int) -> None:
            for records in reader.poll(timeout_ms=timeout_ms).values():
                expected = offsets[-1] + 1 if offsets else None
                gap = first_gap(expected, [r.offset for r in records]) if args.mend else None
                if gap is not None:
                    cut, missing = gap
                    if rereads.get(missing, 0) < 3:
                        rereads[missing] = rereads.get(missing, 0) + 1
                        reader.seek(tp, missing)
                        records = records[:cut]
                for r in records:
                    got.append(r.value[:8].decode())
                    offsets.append(r.offset)

        results: dict[str, list[str]] = {}
        queue: Any = mp.Queue()
        writers = [
            mp.Process(target=_write, args=(bootstrap, topic, name, args.records, queue))
            for name in ("a", "b")
        ]
        for w in writers:
            w.start()
        while len(results) < len(writers):
            read(20)
            while not queue.empty():
                name, acked = queue.get()
                results[name] = acked
        for w in writers:
            w.join()
        acked_all = [label for labels in results.values() for label in labels]
        deadline = time.monotonic() + 30
        while len(got) < len(acked_all) and time.monotonic() < deadline:
            read(200)
        reader.close()
        seen = set(got)
        missing = [label for label in acked_all if label not in seen]
        gaps = sum(1 for a, b in itertools.pairwise(offsets) if b != a + 1)
        print(f"broker: {described}; two producers x {args.records:,} records, one reader")
        print(f"  acknowledged {len(acked_all):,}, read {len(got):,}")
        print(f"  missing {len(missing)} {missing[:15]}")
        print(f"  offset gaps {gaps}")
        if args.mend:
            print(f"  gaps read again {len(rereads)} ({sum(rereads.values())} reads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
