"""Reading Kafka partitions to their end: the topic's partitions, and their records in batches.

Rebuilding state, finding a decision and seeking assigned partitions all read a topic from
the beginning to where it ends now. The end is the high watermark a fetch reported (never
ListOffsets or seek_to_end, which are wrong on Tansu), or `idle_polls` empty polls in a
row. Its own module because how the end of a topic is found changes with the brokers, apart
from what each reader does with the records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from events.kafka import KafkaUnavailable


def partitions_of(consumer: KafkaConsumer, topic: str, attempts: int = 50) -> list[int]:
    """The topic's partition numbers from cluster metadata (waits for it, bounded)."""
    for _ in range(attempts):
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        time.sleep(0.1)  # kafka-python refreshes metadata in the background
    raise KafkaUnavailable(f"no metadata for topic {topic!r}: does it exist?")


def drain(
    consumer: KafkaConsumer,
    partitions: Sequence[TopicPartition],
    idle_polls: int,
    poll_ms: int,
    max_records: int,
    stop: threading.Event | None = None,
) -> Iterator[list[Any]]:
    """Batches of records from the assigned partitions until each is read to its end.

    The end is reached when every unpaused partition's position is at the high watermark
    a fetch reported, or after `idle_polls` consecutive empty polls.
    """
    empty = 0
    while empty < idle_polls and not (stop is not None and stop.is_set()):
        polled = consumer.poll(timeout_ms=poll_ms, max_records=max_records)
        batch = [r for records in polled.values() for r in records]
        if batch:
            empty = 0
            yield batch
        else:
            empty += 1
        paused = consumer.paused()
        active = [tp for tp in partitions if tp not in paused]
        if all(_at_end(consumer, tp) for tp in active):
            return


def _at_end(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    high = consumer.highwater(tp)
    return high is not None and consumer.position(tp) >= high
