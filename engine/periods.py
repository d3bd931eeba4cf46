"""Budget periods and follow-up deadlines, in event time.

A charge falls in the period of its event's `occurred_at` (UTC's day, ISO week or month),
and a promised follow-up is due a fixed time after it: calendar arithmetic with no clock,
kept apart because the decision, the processing loop and the specs' steps all name periods
the same way, and its edge cases (offsets, the end of the calendar) are its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_LAST_MOMENT = datetime.max.replace(tzinfo=UTC)


def period_key(period: str, at: datetime) -> str:
    # Formatted by hand: the same text as strftime("%Y-%m-%d") / ("%Y-%m"), at a third of
    # the cost, and budget policies ask for it once or twice per event. Periods are UTC's:
    # one moment falls in one period however its producer wrote the offset.
    if at.utcoffset():
        at = at.astimezone(UTC)
    if period == "day":
        return f"{at.year}-{at.month:02d}-{at.day:02d}"
    if period == "week":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{at.year}-{at.month:02d}"


def period_kind(key: str) -> str:
    """ "month", "week" or "day": the kind of a period key `period_key` writes (2026-11,
    2026-W47, 2026-11-23), as `budget.allocated` carries it."""
    return "week" if "W" in key else "day" if len(key) > 8 else "month"


def due_time(at: datetime, within: timedelta) -> datetime:
    """`at + within`; a promise that would fall past year 9999 is due at the last moment
    there is, so that a valid event near the end of the calendar is still decided."""
    if at.year < 9989:  # a follow-up is at most ten years (engine.policy_file)
        return at + within
    try:
        due = at + within
        due.astimezone(UTC)  # within the calendar in UTC too
    except OverflowError:
        return _LAST_MOMENT
    return due
