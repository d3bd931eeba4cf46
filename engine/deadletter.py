"""Dead letters: the reasons a record is set aside undecided, and the copy that says why.

A record Goodwill cannot take goes to the dead-letter topic as it was read (key, value,
headers) plus `goodwill.*` headers naming the reason, a detail for people, and where it
was read from. Its own module because that copy is a contract with whoever reads the
topic (`goodwill redrive`, a rebuild, an operator), which changes for other reasons than
how a batch is decided.
"""

from __future__ import annotations

from collections.abc import Sequence

from events.log import Record

PROCESSING_FAILED = "processing_failed"
"""The dead-letter reason for a record that Goodwill failed to decide (see
`engine.service.Processor.process`)."""
LATE = "late"
"""The dead-letter reason for an event older than the retention allows (`Ledger.retain`)."""
WRONG_CURRENCY = "wrong_currency"
"""The dead-letter reason for money in another currency than the policy set decides in:
amounts are compared and summed as they are, so 20 EUR must never count as 20 USD."""
WRONG_PERIOD = "wrong_period"
"""The dead-letter reason for a `budget.allocated` whose period is not the kind its budget
is kept by (a month for a weekly budget): no charge would ever read that allocation."""
UNKNOWN_BUDGET = "unknown_budget"
"""The dead-letter reason for a `budget.allocated` of a budget policies/budgets.yaml does
not define (a misspelt name): no charge would ever read it either."""
DEADLETTER_HEADERS = frozenset(
    (
        "goodwill.reason",
        "goodwill.detail",
        "goodwill.source.topic",
        "goodwill.source.partition",
        "goodwill.source.offset",
        "goodwill.truncated.bytes",  # a copy cut to fit (engine/delivery.py)
        "goodwill.truncated.sha256",
    )
)
"""The headers a dead-letter copy carries besides the original record's."""
DETAIL_CHARS = 2000
"""The most characters of the error a `processing_failed` dead letter's detail carries."""


def deadletter_copy(
    record: Record, reason: str, detail: str
) -> tuple[tuple[tuple[str, bytes], ...], str]:
    """The headers of `record`'s dead-letter copy (its own, then Goodwill's) and the id
    the copy has in the outbox."""
    headers = (
        *record.headers,
        ("goodwill.reason", reason.encode()),
        ("goodwill.detail", detail.encode()),
        ("goodwill.source.topic", record.topic.encode()),
        ("goodwill.source.partition", str(record.partition).encode()),
        ("goodwill.source.offset", str(record.offset).encode()),
    )
    return headers, _ident(record.topic, str(record.partition), str(record.offset))


def copy_ident(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """The outbox id of the dead-letter copy that carries `headers`, read back from its
    `goodwill.source.*` headers; None for a record that lacks them."""
    found = dict(headers)
    try:
        return _ident(*(found[f"goodwill.source.{k}"].decode() for k in _SOURCE))
    except (KeyError, UnicodeDecodeError):
        return None


_SOURCE = ("topic", "partition", "offset")


def _ident(topic: str, partition: str, offset: str) -> str:
    return f"dlq:{topic}:{partition}:{offset}"
