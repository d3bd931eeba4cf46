"""Finding one decision on the decisions topic, for `goodwill explain --kafka`.

The state's outbox keeps only the most recent published outputs; every decision stays on
the decisions topic, keyed by customer id. Given the customer, only the partition that key
maps to (murmur2, as every producer of the topic places it) is read; without it, all of
them. Each partition is read from the beginning to the high watermark a fetch reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

from engine.drain import drain, partitions_of
from engine.placement import partition_for
from events.kafka import KafkaConfig, make_consumer

_IDLE_POLLS = 20
_POLL_MS = 250


def find_decision(
    cfg: KafkaConfig,
    ident: str,
    customer: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any] | None:
    """The `decision.made` whose decision id or cause is `ident`, or None. `progress` is
    called with the records read so far, every 10,000."""
    needle = ident.encode()
    consumer = make_consumer(cfg, group=False)
    read = 0
    try:
        topic = cfg.decisions_topic
        partitions = partitions_of(consumer, topic)
        if customer is not None:
            partitions = [partition_for(customer.encode(), partitions)]
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        for batch in drain(consumer, tps, _IDLE_POLLS, _POLL_MS, 2000):
            for record in batch:
                read += 1
                if progress is not None and read % 10_000 == 0:
                    progress(read)
                value = record.value
                if value is None or needle not in value:  # most records: no parse
                    continue
                doc = json.loads(value)
                if doc.get("type") == "decision.made" and ident in (
                    doc["event_id"],
                    doc["data"]["caused_by"],
                ):
                    return dict(doc)
    finally:
        consumer.close()
    return None
