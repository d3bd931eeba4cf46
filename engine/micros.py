"""Time as the state keeps it: integer microseconds since the Unix epoch (UTC).

Event times, watermarks, windows and the retention horizon are stored and compared as
these integers, so a window's boundary compares exactly; `micros` and `datetime_of`
convert at the edges, and `DAY_US` is a day of them. Its own module because the ledger,
the projections, the Kafka service and the CLI all speak this unit, and none of them owns
it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
DAY_US: Final = 86_400_000_000


def micros(t: datetime) -> int:
    """Event time as integer microseconds since the epoch: exact, so windows compare exactly."""
    return (t - _EPOCH) // _MICROSECOND


def datetime_of(us: int) -> datetime:
    """The UTC datetime for `micros` output."""
    return _EPOCH + timedelta(microseconds=us)
