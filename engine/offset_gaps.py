"""Gaps in the budget topic's offsets, which no broker should leave: read again, then passed.

`GapGuard.mend_gaps` keeps what comes before a gap and seeks back to it, at most
`_GAP_REREADS` times; `first_gap` finds one. Its own module because it guards against a
broker's fault (docs/kafka.md, "Known limits"), apart from the loop and the positions it
reads (`engine.kafka_service`, `engine.assignment`); `GapGuard` is a mixin of
`KafkaService`, whose state it shares.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kafka import KafkaConsumer, TopicPartition

from engine.metrics import Metrics
from events.kafka import KafkaConfig

log = logging.getLogger("goodwill.kafka")

_GAP_REREADS: Final = 3  # a gap in the budget topic is read again this often, then passed


class GapGuard:
    """Reads a gap in the budget topic again, then passes it (see the module docstring).

    A mixin of `KafkaService`, which must set every attribute declared below in its
    `__init__` (the consumer None until `run` opens it); the rereads of each gap are kept
    there too (`_rereads`), and the stored positions it reads are `Assignment`'s.
    """

    cfg: KafkaConfig
    metrics: Metrics
    consumer: KafkaConsumer | None
    stored: dict[str, dict[int, int]]
    _stored_lock: threading.Lock
    _rereads: dict[tuple[TopicPartition, int], int]

    def mend_gaps(
        self, polled: Mapping[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, list[Any]]:
        """The poll without what follows a gap in the budget topic's offsets, the consumer
        sought back to the gap to read it again.

        Only Goodwill writes the budget topic: idempotent producers, no transactions, no
        compaction, so its offsets have no gaps, and a stage that passed one would never
        finish the decisions in it. Yet a broker may let a reader pass records: Tansu's
        memory storage does while two producers append to one partition (docs/kafka.md,
        "Known limits"). The records before the gap go on; from the gap on, the partition
        is read again. A gap still there after `_GAP_REREADS` reads (records deleted by
        retention while the stage was away) is logged and passed."""
        mended: dict[TopicPartition, list[Any]] = {}
        for tp, records in polled.items():
            if tp.topic != self.cfg.budget_topic or not records:
                mended[tp] = records
                continue
            with self._stored_lock:
                expected = self.stored.get(tp.topic, {}).get(tp.partition)
            gap = first_gap(expected, [r.offset for r in records])
            if gap is None:
                mended[tp] = records
                if self._rereads:  # read through: forget this partition's gaps
                    self._rereads = {k: n for k, n in self._rereads.items() if k[0] != tp}
                continue
            cut, missing = gap
            key = (tp, missing)
            tries = self._rereads.pop(key, 0)
            fields = {"topic": tp.topic, "partition": tp.partition, "missing_from": missing}
            fields["next_read"] = records[cut].offset
            if tries >= _GAP_REREADS:
                self.metrics.offset_gaps.labels(tp.topic, "passed").inc()
                log.warning(
                    "%s[%d]: offsets %d to %d were never read, %d reads later; passing them",
                    tp.topic,
                    tp.partition,
                    missing,
                    records[cut].offset - 1,
                    tries,
                    extra=fields,
                )
                mended[tp] = records
                continue
            self._rereads[key] = tries + 1
            self.metrics.offset_gaps.labels(tp.topic, "reread").inc()
            log.warning(
                "%s[%d]: the broker passed offsets %d to %d; reading them again",
                tp.topic,
                tp.partition,
                missing,
                records[cut].offset - 1,
                extra=fields,
            )
            assert self.consumer is not None
            self.consumer.seek(tp, missing)
            if cut:
                mended[tp] = records[:cut]
        return mended


def first_gap(expected: int | None, offsets: Sequence[int]) -> tuple[int, int] | None:
    """(index, missing offset) of the first offset past the one that should follow the one
    before it (the first one's: `expected`, None when not known), or None when none skips
    ahead. An offset at or behind its place is no gap: records read twice are ignored by
    event id."""
    previous = None if expected is None else expected - 1
    for index, offset in enumerate(offsets):
        if previous is not None and offset > previous + 1:
            return index, previous + 1
        previous = offset
    return None
