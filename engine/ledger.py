"""Where the engine is in the log: its batches, and delivery bookkeeping.

The ledger records how far processing has come — event ids already applied, the next
offset per input partition, the event-time watermark. `engine.outbox` adds the outputs to
publish and `engine.state.StateStore` the projections, so that one SQLite transaction per
batch covers state, positions, seen ids and outputs together: after a crash the engine
resumes from stored positions and finds exactly the state and outputs that go with them.
The file itself, its opening and its schema versions, is `engine.state_file`'s.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Final, ParamSpec, Self

from engine.checkpointer import Checkpointer
from engine.micros import DAY_US, datetime_of, micros
from engine.state_file import STATE_SCHEMA_VERSION, version

_WATERMARK: Final = "watermark"  # its meta key
_RETAIN: Final = "retain_days"  # its meta key (see Ledger.retain)
_REBUILDING: Final = "rebuilding"  # set while `goodwill rebuild` makes the state
_SOURCE_HEAD: Final = "source-head:"  # + a file source's topic (see Ledger.note_source)

_P = ParamSpec("_P")


class StateModeError(RuntimeError):
    """The state was made in another mode than the one asked (e.g. --budget-stage)."""


class Ledger:
    """The connection, batching, watermark, seen ids and positions."""

    def __init__(self, conn: sqlite3.Connection, *, checkpoints: bool = True) -> None:
        self._conn = conn
        # One reused cursor for statements whose rows are consumed at once; sqlite3
        # caches each prepared statement by its SQL text.
        self._cur = conn.cursor()
        # The watermark changes on nearly every event; it is kept here and written once
        # per batch, in the batch's transaction (see commit/rollback).
        self._watermark: int | None = self._stored_watermark()
        self._watermark_dirty = False
        self._watermark_at: tuple[int, datetime] | None = None
        self._checkpointer = Checkpointer.start_for(conn) if checkpoints else None
        # A file at an older schema version is raised to this one by the first batch it
        # commits (`commit`), not when opened: a run refused before deciding anything
        # (lost state, another budget-stage mode) leaves it for the build it came from.
        self._stale_version = (version(conn) or STATE_SCHEMA_VERSION) < STATE_SCHEMA_VERSION
        # Retention (see `retain`): the horizon in microseconds of event time, or None to
        # keep everything; and the cutoff the history was last pruned to.
        stored = self.meta(_RETAIN)
        self._horizon: int | None = None if stored is None else int(stored) * DAY_US
        self._pruned_to: int | None = None
        # Per input partition, the latest event time decided from it (`note_time`), as
        # stored with its position or changed in this batch; loaded on first use.
        self._part_times: dict[tuple[str, int], int | None] = {}
        # Per partition number, the latest of those times over every source: the
        # partition's watermark, by which the deadlines of its cases fall due (`lane_time`).
        self._lanes: dict[int, int | None] = {}
        self._lane_at: dict[int, tuple[int, datetime]] = {}
        self._last_at: datetime | None = None
        self._last_us = 0

    def close(self) -> None:
        """Close the file; an unfinished batch is discarded, as a crash would."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._conn.in_transaction:
            self.rollback()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- batching

    def begin(self) -> None:
        if self._conn.in_transaction:
            raise RuntimeError("begin(): a batch is already open")
        # IMMEDIATE takes the write lock now rather than failing mid-batch on upgrade.
        self._conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if not self._conn.in_transaction:
            raise RuntimeError("commit(): no batch is open")
        self._write_behind()
        # Once per day of event time (the cutoff moves in whole days), not per batch.
        # Whatever the batches, each prune forgets everything before its cutoff, so the
        # same log leaves the same state.
        cutoff = self.forgotten_before()
        if cutoff is not None and (self._pruned_to is None or cutoff > self._pruned_to):
            self._prune(cutoff)
            self._pruned_to = cutoff
        if self._watermark_dirty and self._watermark is not None:
            self._cur.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (_WATERMARK, self._watermark),
            )
        if self._stale_version:
            self._cur.execute("UPDATE schema_version SET version = ?", (STATE_SCHEMA_VERSION,))
        self._conn.execute("COMMIT")
        self._watermark_dirty = False
        self._stale_version = False

    def rollback(self) -> None:
        self._pruned_to = None  # a prune it undid is done again at the next commit
        self._part_times.clear()
        self._lanes.clear()
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._watermark = self._stored_watermark()
        self._watermark_dirty = False

    def _autocommit(self, fold: Callable[_P, None], *args: _P.args, **kwargs: _P.kwargs) -> None:
        """Run a multi-statement fold called outside a batch as a batch of its own."""
        self.begin()
        try:
            fold(*args, **kwargs)
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def _write_behind(self) -> None:
        """Write what the batch kept in memory; runs inside the batch, before COMMIT."""

    # ---------------------------------------------------------------- event time

    def watermark(self) -> datetime | None:
        """The latest event time folded (never moves backwards); None before any event."""
        if self._watermark is None:
            return None
        # The service asks after every event; build the datetime only when it moved.
        if self._watermark_at is None or self._watermark_at[0] != self._watermark:
            self._watermark_at = (self._watermark, datetime_of(self._watermark))
        return self._watermark_at[1]

    def _time(self, at: datetime) -> int:
        """`micros(at)`. The service asks for one event's time several times (seen, late,
        folds, enrich), and converting pydantic's aware datetimes costs about a
        microsecond: the last one is remembered. Holding `at` keeps it alive, so the
        identity test cannot see a recycled object."""
        if at is not self._last_at:
            self._last_at = at
            self._last_us = micros(at)
        return self._last_us

    def _advance(self, t: int) -> None:
        if self._watermark is None or t > self._watermark:
            self._watermark = t
            self._watermark_dirty = True

    def _stored_watermark(self) -> int | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (_WATERMARK,)).fetchone()
        return None if row is None else int(row[0])

    # ---------------------------------------------------------------- delivery bookkeeping

    def seen(self, event_id: str) -> bool:
        return (
            self._cur.execute("SELECT 1 FROM seen WHERE event_id = ?", (event_id,)).fetchone()
            is not None
        )

    def mark_seen(self, event_id: str) -> None:
        self._cur.execute("INSERT OR IGNORE INTO seen (event_id) VALUES (?)", (event_id,))

    def first_sighting(self, event_id: str, at: datetime | None = None) -> bool:
        """Mark `event_id` seen; True if it was not seen before. One statement instead of
        `seen` + `mark_seen`, for the hot path: inside a batch's transaction, a rollback
        forgets the mark together with the effects. `at`: the event's time, by which
        retention forgets the id (`retain`); None keeps it for good."""
        t = None if at is None else self._time(at)
        self._cur.execute("INSERT OR IGNORE INTO seen (event_id, at) VALUES (?, ?)", (event_id, t))
        return self._cur.rowcount == 1

    # ---------------------------------------------------------------- retention

    def retain(self, days: int) -> None:
        """Keep `days` of event time before the watermark, and forget older history.

        From now on (the setting is stored with the state, so it holds for every later
        run): an event older than the watermark by more than `days` is late (`late`),
        which the service dead-letters instead of deciding; and each commit forgets the
        ids of events older than that, which no event the service accepts can repeat, with
        the history that no window reaches any more (`_prune`). Decisions on events that
        are not late do not change. Raising it later keeps more from then on; what was
        forgotten stays forgotten.
        """
        if days < 1:
            raise ValueError(f"retention must be at least 1 day, not {days}")
        self._autocommit(self._retain, days)
        self._horizon, self._pruned_to = days * DAY_US, None

    def _retain(self, days: int) -> None:
        self._cur.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_RETAIN, str(days))
        )
        for statement in self._retention_indexes():
            self._cur.execute(statement)

    @property
    def retain_days(self) -> int | None:
        """The retention in days (`retain`), or None: everything is kept."""
        return None if self._horizon is None else self._horizon // DAY_US

    def forgotten_before(self) -> int | None:
        """The event time (`micros`, a whole day) before which retention forgets history
        at the next commit, or None: everything is kept."""
        if self._horizon is None or self._watermark is None:
            return None
        return (self._watermark - self._horizon) // DAY_US * DAY_US

    def late(self, at: datetime) -> bool:
        """Whether an event at `at` is older than the retention allows (`retain`): more
        than the horizon before the watermark, the latest event time over every partition
        of this store. Not per partition: an id is forgotten by the watermark, so only
        lateness by the same clock guarantees that no copy of a forgotten id is decided."""
        horizon, watermark = self._horizon, self._watermark
        if horizon is None or watermark is None:
            return False
        return self._time(at) < watermark - horizon

    def partition_time(self, source: str, partition: int) -> int | None:
        """The latest event time (`micros`) decided from (source, partition), or None."""
        key = (source, partition)
        try:
            return self._part_times[key]
        except KeyError:
            row = self._cur.execute(
                "SELECT event_time FROM positions WHERE source = ? AND part = ?", key
            ).fetchone()
            mark = self._part_times[key] = None if row is None else row[0]
            return mark

    def ahead(self, at: datetime) -> int:
        """How far (`micros`) an event at `at` is ahead of the watermark; 0 if not."""
        watermark = self._watermark
        if watermark is None:
            return 0
        return max(0, self._time(at) - watermark)

    def note_time(self, source: str, partition: int, at: datetime) -> None:
        """An event at `at` from (source, partition) is being decided; stored with the
        partition's next position (`set_position`), so that a partition coming back to
        this store can be told apart when the store forgot history it reads."""
        t, mark = self._time(at), self.partition_time(source, partition)
        if mark is None or t > mark:
            self._part_times[(source, partition)] = t
            lane = self._lanes[partition] if partition in self._lanes else self.lane_time(partition)
            if lane is None or t > lane:
                self._lanes[partition] = t

    def lane_time(self, partition: int) -> int | None:
        """The watermark of input partition number `partition`: the latest event time
        (`micros`) decided from it, whatever the source (the files and the embedded log
        given to an embedded store are all its partition 0); None before any."""
        try:
            return self._lanes[partition]
        except KeyError:
            row = self._cur.execute(
                "SELECT max(event_time) FROM positions WHERE part = ?", (partition,)
            ).fetchone()
            mark: int | None = row[0]
            self._lanes[partition] = mark
            return mark

    def lane_watermark(self, partition: int) -> datetime | None:
        """`lane_time` as a datetime (built only when it moved)."""
        t = self.lane_time(partition)
        if t is None:
            return None
        cached = self._lane_at.get(partition)
        if cached is None or cached[0] != t:
            cached = self._lane_at[partition] = (t, datetime_of(t))
        return cached[1]

    def lanes(self) -> list[int]:
        """Every input partition number with a watermark, in order."""
        rows = self._cur.execute(
            "SELECT DISTINCT part FROM positions WHERE event_time IS NOT NULL"
        ).fetchall()
        known = {part for (part,) in rows} | {p for p, t in self._lanes.items() if t is not None}
        return sorted(known)

    def _retention_indexes(self) -> tuple[str, ...]:
        """The indexes `_prune` deletes through (created when retention is set)."""
        return ("CREATE INDEX IF NOT EXISTS seen_by_time ON seen (at) WHERE at IS NOT NULL",)

    def _prune(self, cutoff: int) -> None:
        """Forget what retention no longer keeps: here, event ids seen before `cutoff`."""
        self._cur.execute("DELETE FROM seen WHERE at < ?", (cutoff,))

    def position(self, source: str, partition: int) -> int | None:
        """The next offset to read from (source, partition), or None if never stored."""
        row = self._cur.execute(
            "SELECT next_offset FROM positions WHERE source = ? AND part = ?", (source, partition)
        ).fetchone()
        return None if row is None else int(row[0])

    def positions(self) -> list[tuple[str, int, int]]:
        """Every stored (source, partition, next offset), in order."""
        return self._cur.execute(
            "SELECT source, part, next_offset FROM positions ORDER BY source, part"
        ).fetchall()

    def set_position(self, source: str, partition: int, offset: int) -> None:
        self._cur.execute(
            "INSERT OR REPLACE INTO positions (source, part, next_offset, event_time)"
            " VALUES (?, ?, ?, ?)",
            (source, partition, offset, self.partition_time(source, partition)),
        )

    # ---------------------------------------------------------------- engine settings

    def meta(self, key: str) -> str | None:
        """A setting the engine keeps with its state (e.g. the active policy set hash)."""
        row = self._cur.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def keep_mode(self, key: str, value: str, where: str) -> None:
        """Record the mode `key` the state is made in (e.g. "budget_stage"), or raise
        StateModeError if it was made in another: the two would read each other's state
        wrongly. `where` names the state in the message."""
        stored = self.meta(key)
        if stored is None:
            self._autocommit(self.set_meta, key, value)
        elif stored != value:
            flag = "--" + key.replace("_", "-")
            raise StateModeError(
                f"{where} holds state made with {flag} {stored}, not {value}: every run and"
                f" rebuild on it uses the same (to change it, rebuild into an empty"
                f" --data-dir with {flag} {value})"
            )

    def note_source(self, source: str, head: str, restart: bool = False) -> None:
        """Remember the first line's digest of a file `source` read by line number, to
        tell later whether the file under that name is still the one read (delivery
        progress like its position: not part of the state's digest). `restart`: it is
        read from line 1, and its position goes back there with the digest, so that a run
        stopped before its first batch does not resume the new file at the old one's line."""
        self._autocommit(self._note_source, source, head, restart)

    def _note_source(self, source: str, head: str, restart: bool) -> None:
        self.set_meta(_SOURCE_HEAD + source, head)
        if restart:
            self.set_position(source, 0, 1)

    def source_head(self, source: str) -> str | None:
        return self.meta(_SOURCE_HEAD + source)

    def check_whole(self, where: str) -> None:
        """Raise StateModeError if a rebuild into this state stopped part way (`rebuilding`):
        deciding on from it would decide again what the history recorded."""
        if self.meta(_REBUILDING) is not None:
            raise StateModeError(
                f"{where} holds the partial state of a `goodwill rebuild` that stopped part"
                f" way; it must not be run: delete {where}/state.db* and rebuild again"
            )

    def rebuilding(self, underway: bool) -> None:
        """Mark the state as a rebuild under way (`check_whole` refuses it), or not."""
        self.begin()
        if underway:
            self._cur.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (_REBUILDING,)
            )
        else:
            self._cur.execute("DELETE FROM meta WHERE key = ?", (_REBUILDING,))
        self.commit()

    def set_meta(self, key: str, value: str) -> None:
        if key in (_WATERMARK, _RETAIN, _REBUILDING):
            raise ValueError(f"meta key {key!r} is reserved")
        self._cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def digest(self) -> str:
        """sha256 over a canonical dump of every table, for comparing two runs.

        Every table is included, in name order with rows in primary-key order, so a new
        table cannot be forgotten. Positions and the outbox's row ids and sent flags are
        delivery progress, not state; the watermark is hashed from memory (see commit).
        """
        self._write_behind()
        h = hashlib.sha256()
        tables = self._conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            " ORDER BY name"
        ).fetchall()
        for (table,) in tables:
            if table == "positions":
                continue
            h.update(f"\x00{table}\x00".encode())
            for row in self._conn.execute(_DUMPS.get(table) or _dump_query(self._conn, table)):
                h.update(repr(tuple(row)).encode())
                h.update(b"\n")
        h.update(f"\x00watermark\x00{self._watermark!r}".encode())
        return h.hexdigest()


_DUMPS: Final = {
    # by ident: with the budget stage, two stages interleave their outputs in time
    "outbox": "SELECT ident, kind, topic, key, value, headers FROM outbox ORDER BY ident",
    "meta": f"SELECT key, value FROM meta WHERE key != '{_WATERMARK}'"
    f" AND key NOT LIKE '{_SOURCE_HEAD}%' ORDER BY key",
}


def _dump_query(conn: sqlite3.Connection, table: str) -> str:
    # table_info rows are (cid, name, type, notnull, default, pk), pk being the column's
    # position in the primary key (0: not part of it).
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    key = [name for _, name, *_, pk in sorted(info, key=lambda c: c[5]) if pk]
    order = key or [name for _, name, *_ in info]
    return f"SELECT * FROM {table} ORDER BY {', '.join(order)}"
