"""`goodwill redrive`: send dead-lettered records to the events topic again.

A record is dead-lettered with its original key, value and headers plus Goodwill's
`goodwill.*` headers (engine.deadletter). Once what made it fail is fixed — a
fault in Goodwill (`processing_failed`), an upcaster for an old `schema_version`
(`unsupported_schema_version`) — the original record can be sent again, as it was. The
engine decides it like any event, after whatever arrived meanwhile; an event it already
decided (a record sent again twice) is skipped by its event id.

Works on any `EventLog`: the embedded file log or Kafka (a `KafkaLog` naming the
configured topics).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Final

from engine.deadletter import (
    DEADLETTER_HEADERS,
    LATE,
    PROCESSING_FAILED,
    UNKNOWN_BUDGET,
    WRONG_CURRENCY,
    WRONG_PERIOD,
)
from engine.embedded import EVENTS_TOPIC
from engine.service import DEADLETTER_TOPIC
from events.codec import REASONS
from events.log import EventLog, Record

REDRIVE_REASONS: Final = (
    *REASONS,
    PROCESSING_FAILED,
    LATE,
    WRONG_CURRENCY,
    WRONG_PERIOD,
    UNKNOWN_BUDGET,
)
_READ: Final = 500


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    reason: str
    detail: str
    source: str  # topic[partition]@offset it was read from

    @property
    def whole(self) -> bool:
        """False when the dead-letter copy was cut to fit the topic: not the original."""
        return not any(name == "goodwill.truncated.bytes" for name, _ in self.record.headers)

    def original_headers(self) -> tuple[tuple[str, bytes], ...]:
        return tuple((n, v) for n, v in self.record.headers if n not in DEADLETTER_HEADERS)


@dataclass
class RedriveReport:
    sent: list[DeadLetter] = field(default_factory=list)
    cut: list[DeadLetter] = field(default_factory=list)  # selected, but only a cut copy
    left: Counter[str] = field(default_factory=Counter)  # other reasons, by reason


def dead_letters(log: EventLog) -> list[DeadLetter]:
    """Every record on the dead-letter topic, partition by partition, oldest first."""
    found: list[DeadLetter] = []
    for partition in range(log.partitions(DEADLETTER_TOPIC)):
        end = log.end_offset(DEADLETTER_TOPIC, partition)
        offset = 0
        while offset < end:
            records = log.read(DEADLETTER_TOPIC, partition, offset, min(_READ, end - offset))
            if not records:
                raise RuntimeError(
                    f"the dead-letter topic's partition {partition} ended at offset {offset},"
                    f" before its end offset {end}"
                )
            found.extend(_parse(r) for r in records)
            offset = records[-1].offset + 1
    return found


def redrive(
    log: EventLog,
    reasons: Collection[str],
    *,
    send: bool,
    progress: Callable[[DeadLetter], None] | None = None,
) -> RedriveReport:
    """Send each dead letter with one of `reasons` to the events topic (when `send`), with
    its original key, value and headers; report what was (or would be) sent and left."""
    report = RedriveReport()
    for letter in dead_letters(log):
        if letter.reason not in reasons:
            report.left[letter.reason] += 1
            continue
        if not letter.whole:
            report.cut.append(letter)
            continue
        if send:
            r = letter.record
            log.append(EVENTS_TOPIC, r.key, r.value, letter.original_headers())
        report.sent.append(letter)
        if progress is not None:
            progress(letter)
    if send:
        log.flush()
    return report


def find_dead_letter(records: Iterable[Record], event_id: str) -> DeadLetter | None:
    """The first dead-lettered record whose value names `event_id` as its event id (read
    from the bytes: the value may be cut or not JSON at all), or None."""
    pattern = re.compile(rb'"event_id"\s*:\s*"' + re.escape(event_id.encode()) + rb'"')
    for record in records:
        if pattern.search(record.value):
            return _parse(record)
    return None


def _parse(record: Record) -> DeadLetter:
    headers = {name: value for name, value in record.headers}

    def text(name: str) -> str:
        return headers.get(name, b"").decode("utf-8", "replace")

    source = (
        f"{text('goodwill.source.topic')}[{text('goodwill.source.partition')}]"
        f"@{text('goodwill.source.offset')}"
    )
    return DeadLetter(record, text("goodwill.reason"), text("goodwill.detail"), source)
