"""Producing events, for backend teams: `EventProducer` validates events with the codec and
sends them to the events topic, keyed (`event_key`) so each customer's history stays in order
on one partition, and `read_events` reads a file of them for `goodwill emit`.

Its own module because it is the part of the contract a producer calls, and changes with how
events are keyed and sent; the engine's own Kafka log is `events.kafka_log`, the clients both
are built from `events.kafka`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kafka import KafkaProducer

from events.codec import DecodeError, decode, encode
from events.kafka import KafkaConfig, PublishError, make_producer
from events.models import CATALOG, Envelope

log = logging.getLogger("goodwill.producer")

FUTURE_SLACK = timedelta(days=1)
"""Clock skew allowed: an event dated later than this ahead of the sender's clock is
warned of (`dated_ahead`)."""


def dated_ahead(event: Envelope, now: datetime | None = None) -> timedelta | None:
    """How far `event` is dated ahead of this machine's clock, if by more than
    `FUTURE_SLACK`: a mistyped date, most likely, which would move Goodwill's event time
    (every follow-up deadline, the retention horizon) with it. A producer's check only:
    Goodwill's decisions never read a clock."""
    ahead = event.occurred_at - (now or datetime.now(UTC))
    return ahead if ahead > FUTURE_SLACK else None


def read_events(data: bytes, name: str) -> list[tuple[str, Envelope | DecodeError]]:
    """Events in `data` — one JSON event, a JSON array of events, or JSON lines — each with
    where it was (``name:LINE`` or ``name[INDEX]``) and the event or why it is invalid."""
    text = data.removeprefix(b"\xef\xbb\xbf")
    stripped = text.strip()
    if not stripped:
        return []
    try:
        whole = json.loads(stripped)
    except (ValueError, RecursionError):
        whole = None
    else:
        if isinstance(whole, list):
            found: list[tuple[str, Envelope | DecodeError]] = []
            for i, item in enumerate(whole):
                found.append((f"{name}[{i}]", _decoded(json.dumps(item, ensure_ascii=False))))
            return found
        if isinstance(whole, dict):
            return [(name, _decoded(stripped))]
    first = stripped.split(b"\n", 1)[0].strip()
    if whole is None and first in (b"[", b"{"):
        # A pretty-printed array or object that does not parse: one error, where JSON
        # breaks, rather than one per line of it (JSON lines never open with a bare brace).
        return [(name, _decoded(text))]
    return [
        (f"{name}:{number}", _decoded(line))
        for number, line in enumerate(text.split(b"\n"), start=1)
        if line.strip()
    ]


def _as_json(value: Any) -> str:
    """Decimals and datetimes in a dict given to `EventProducer.send`, as the contract
    writes them (money as a decimal string, time as RFC 3339); anything else that JSON
    cannot hold is refused."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise DecodeError(
        "schema_invalid",
        None,
        f"a {type(value).__name__} is not a JSON value: send text, numbers, true/false,"
        " money as a decimal string and times as RFC 3339 text",
    )


def _decoded(raw: str | bytes) -> Envelope | DecodeError:
    # A lone surrogate (a "\ud800" escape in an array item) becomes bytes that are not
    # UTF-8: refused as such, not a crash.
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw.rstrip(b"\r")
    try:
        return decode(data)
    except DecodeError as err:
        return err


BROADCAST = frozenset(("clock.tick", "rep.assigned"))
"""Input types `EventProducer.send` puts on every partition of the events topic: each
instance advances its own event time, and folds every rep for the policies it applies
(their `rep.*` facts); in each partition's order, so every partition sees the same reps
at the same point of its own history."""


def event_key(event: Envelope) -> bytes | None:
    """The partition key for an input event: the customer, else the budget owner or rep.

    Customer events carry `customer_id`; `budget.allocated` is keyed by its `owner` and
    `rep.assigned` by its `rep_id`, so each owner's or rep's history stays in order on one
    partition, even when the producer set a `customer_id` on them. `EventProducer.send`
    sends the `BROADCAST` types to every partition instead.
    """
    customer_event = CATALOG[event.type][1] if event.type in CATALOG else True
    if event.customer_id and customer_event:
        return event.customer_id.encode()
    fields = event.data.__dict__
    for name in ("owner", "rep_id"):
        value = fields.get(name)
        if isinstance(value, str) and value:
            return value.encode()
    return event.customer_id.encode() if event.customer_id else None


class EventProducer:
    """Validate events with the codec and send them to the events topic, keyed.

        with EventProducer(KafkaConfig.from_env(os.environ)) as producer:
            producer.send({"event_id": "e-1", "type": "order.placed", ...})

    `send` raises `events.codec.DecodeError` for an invalid event (nothing is sent) and
    returns the validated event. It sends the canonical encoding. A `clock.tick` and a
    `rep.assigned` go to every partition (`BROADCAST`), each copy the same bytes: every
    instance decides it once, with the same decision id, which consumers dedupe by.
    """

    def __init__(self, cfg: KafkaConfig, producer: KafkaProducer | None = None) -> None:
        self.cfg = cfg
        self._producer = make_producer(cfg) if producer is None else producer
        self._futures: list[Any] = []

    def send(self, event: Envelope | Mapping[str, Any] | bytes) -> Envelope:
        if isinstance(event, bytes):
            event = decode(event)
        elif not isinstance(event, Envelope):
            text = json.dumps(event, ensure_ascii=False, default=_as_json)
            event = decode(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: not_utf8
        if (ahead := dated_ahead(event)) is not None:
            log.warning(
                "%s is dated %s, %d days ahead of this machine's clock; it is sent, and"
                " Goodwill's event time (follow-up deadlines, retention) moves to it",
                event.event_id,
                event.occurred_at.isoformat(),
                ahead.days,
            )
        value, key, topic = encode(event), event_key(event), self.cfg.events_topic
        if event.type in BROADCAST:
            for partition in sorted(self._producer.partitions_for(topic) or {0}):
                self._futures.append(
                    self._producer.send(topic, key=key, value=value, partition=partition)
                )
        else:
            self._futures.append(self._producer.send(topic, key=key, value=value))
        return event

    def flush(self) -> None:
        """Wait until every event sent is acknowledged; raise `PublishError` otherwise."""
        futures, self._futures = self._futures, []
        self._producer.flush(timeout=self.cfg.bootstrap_timeout_ms / 1000 + 30)
        failed = [f for f in futures if not f.is_done or f.failed()]
        if failed:
            raise PublishError(
                f"{len(failed)} of {len(futures)} event(s) not acknowledged: {failed[0].exception}"
            )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
