"""The `EventLog` on Kafka: `KafkaLog`, through which the Kafka service publishes its outputs
and `goodwill redrive` reads dead letters and sends them again.

Its own module because it is a backend of the engine's one log interface (`events.log`,
whose embedded backend is `FileLog`) and changes with that interface; the clients and
settings it is built from are `events.kafka`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from events.kafka import KafkaConfig, PublishError, make_consumer, make_producer, to_record
from events.log import Record


class KafkaLog:
    """`EventLog` for publishing to Kafka: `append` sends, `flush` waits for every ack.

    `append` returns at once with a `Record` whose partition and offset are -1 (not known
    until the broker answers); `flush` raises `PublishError` when any record sent since the
    last flush was not acknowledged. `topics` renames logical topics (the engine's
    ``goodwill.decisions``) to the configured ones. Reading is for tools and tests: it
    assigns a group-less consumer and polls, without relying on end offsets.
    """

    def __init__(
        self,
        cfg: KafkaConfig,
        topics: Mapping[str, str] | None = None,
        flush_timeout_s: float = 30.0,
        **producer_settings: Any,
    ) -> None:
        self.cfg = cfg
        self._settings = producer_settings  # kafka-python producer overrides
        self._producer = make_producer(cfg, **producer_settings)
        self._topics = dict(topics or {})
        self._pending: list[Any] = []
        self._reader: KafkaConsumer | None = None
        self.flush_timeout_s = flush_timeout_s

    def topic(self, name: str) -> str:
        return self._topics.get(name, name)

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> Record:
        real = self.topic(topic)
        future = self._producer.send(real, key=key, value=value, headers=list(headers))
        self._pending.append(future)
        return Record(real, -1, -1, key, value, tuple(headers))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            self._producer.flush(timeout=self.flush_timeout_s)
        except KafkaTimeoutError as exc:
            raise PublishError(f"records not acknowledged within {self.flush_timeout_s} s") from exc
        failed = [f.exception for f in pending if f.failed() or not f.is_done]
        if failed:
            first = failed[0] or "not acknowledged in time"
            raise PublishError(f"{len(failed)} of {len(pending)} record(s) not published: {first}")

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        if self._reader is None:
            self._reader = make_consumer(self.cfg, group=False)
        tp = TopicPartition(self.topic(topic), partition)
        self._reader.assign([tp])
        self._reader.seek(tp, offset)
        out: list[Record] = []
        empty = 0
        while len(out) < limit and empty < 3:
            batch = self._reader.poll(timeout_ms=200, max_records=limit - len(out)).get(tp, [])
            empty = 0 if batch else empty + 1
            out.extend(to_record(r) for r in batch)
            high = self._reader.highwater(tp)
            if high is not None and self._reader.position(tp) >= high:
                break
        return out

    def partitions(self, topic: str) -> int:
        found = self._producer.partitions_for(self.topic(topic))
        return len(found)

    def end_offset(self, topic: str, partition: int) -> int:
        # ListOffsets is wrong on Tansu (see tests/kafka_broker.py); the high watermark a
        # fetch returns is right, so ask for one.
        if self._reader is None:
            self._reader = make_consumer(self.cfg, group=False)
        tp = TopicPartition(self.topic(topic), partition)
        self._reader.assign([tp])
        self._reader.seek_to_beginning(tp)
        for _ in range(20):
            self._reader.poll(timeout_ms=100, max_records=1, update_offsets=False)
            high = self._reader.highwater(tp)
            if high is not None:
                return int(high)
        raise PublishError(f"no high watermark for {tp.topic}[{partition}] from the broker")

    def reset(self) -> None:
        """Replace the producer after a failure (an idempotent producer may be unusable)."""
        self._pending = []
        try:
            self._producer.close(timeout=1)
        finally:
            self._producer = make_producer(self.cfg, **self._settings)

    def close(self) -> None:
        try:
            self._producer.close(timeout=self.flush_timeout_s)
        finally:
            if self._reader is not None:
                self._reader.close()
