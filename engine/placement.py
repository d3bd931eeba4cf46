"""Whether an event came on the partition its key places it on.

Each instance keeps the state of the customers whose partitions it reads, and one
customer's events are decided in order only within one partition. A producer that keys by
something else, or places keys by another hash (librdkafka's clients use CRC32 unless told
`partitioner=murmur2_random`; docs/kafka.md, "Topics and keys"), sends a customer's events
to other partitions: their decisions may read another instance's share of the customer's
state, and come out of order. The event is still valid, so it is decided; the service says
so, in a warning and in `goodwill_misplaced_events_total`. Its own module because where a
record should have come from is a matter of the producers' contract, apart from deciding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kafka.partitioner.default import murmur2
from prometheus_client import Counter as PromCounter

from events.log import Record
from events.models import Envelope
from events.producer import BROADCAST, event_key

log = logging.getLogger("goodwill.placement")

_CACHE = 100_000  # keys whose partition is remembered (then forgotten all at once)
_WARN_EVERY = 1_000  # after the first misplaced event, a warning per this many


def partition_for(key: bytes, partitions: list[int]) -> int:
    """The partition a keyed record goes to (kafka-python's and Java's default)."""
    return sorted(partitions)[(int(murmur2(key)) & 0x7FFFFFFF) % len(partitions)]


class Placement:
    """Counts the events of `topic` that came on another partition than their key's."""

    def __init__(self, topic: str, misplaced: PromCounter) -> None:
        self.topic = topic
        self.misplaced = misplaced
        self.count = 0
        self._partitions: list[int] = []
        self._expected: dict[bytes, int] = {}

    def partitions(self, found: Iterable[int]) -> None:
        """The topic's partitions, as the cluster's metadata gives them now."""
        partitions = sorted(found)
        if partitions != self._partitions:
            self._partitions = partitions
            self._expected.clear()  # a topic that gained partitions places keys anew

    def check(self, record: Record, event: Envelope) -> None:
        if len(self._partitions) < 2 or record.topic != self.topic or event.type in BROADCAST:
            return
        key = event_key(event)
        if key is None:
            return
        expected = self._expected.get(key)
        if expected is None:
            if len(self._expected) >= _CACHE:
                self._expected.clear()
            expected = self._expected[key] = partition_for(key, self._partitions)
        if record.partition == expected:
            return
        self.count += 1
        self.misplaced.inc()
        if self.count == 1 or self.count % _WARN_EVERY == 0:
            log.warning(
                "%s %s (key %r) came on partition %d of %s, but its key places it on %d: its"
                " producer keys or places records otherwise (a librdkafka client needs"
                " partitioner=murmur2_random; docs/kafka.md, 'Topics and keys'), so this"
                " customer's events may be decided out of order, or against another"
                " instance's state; decided all the same (%d misplaced so far)",
                event.type,
                event.event_id,
                key.decode("utf-8", "replace"),
                record.partition,
                self.topic,
                expected,
                self.count,
                extra={"event_id": event.event_id, "partition": record.partition},
            )
