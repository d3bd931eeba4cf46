"""Where the engine is in the log: the SQLite file, its batches, and delivery bookkeeping.

The ledger records how far processing has come — event ids already applied, the next
offset per input partition, the event-time watermark — and the outbox of outputs to
publish. `engine.state.StateStore` extends it with the projections, so that one SQLite
transaction per batch covers state, positions, seen ids and outputs together: after a
crash the engine resumes from stored positions and finds exactly the state and outputs
that go with them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, ParamSpec, Self

STATE_FILE: Final = "state.db"
OUTBOX_KEEP_SENT: Final = 10_000
"""Published outputs the outbox keeps (the most recent ones), e.g. for `goodwill explain`."""
STATE_SCHEMA_VERSION: Final = 3
"""Bump when an older build would misread what is stored; a file of a version not in
`_READS` is refused. 3 since retention, follow-up lanes and the budget-stage mode: a build
that reads only 2 refuses a file this build has written instead of misreading it (it would
decide again an event whose id retention forgot). A file at 2 is raised to 3 by the first
batch this build commits to it."""
_READS: Final = (2, 3)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_CACHE_KIB: Final = 64 * 1024  # SQLite's page cache bounds the memory state may use
_CHECKPOINT_PAGES: Final = 16_384  # the engine's own, only if the checkpointer falls behind
_WATERMARK: Final = "watermark"  # its meta key
_WAL_LIMIT_BYTES: Final = 64 * 1024 * 1024
_CHECKPOINT_FRAMES: Final = 8192  # pages (32 MB) per background checkpoint, about
_CHECKPOINT_PAUSE_S: Final = (0.1, 1.0)  # bounds of its pause between checkpoints

_log = logging.getLogger("goodwill.state")

_LEDGER_SCHEMA: Final = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE seen (event_id TEXT PRIMARY KEY, at INTEGER) WITHOUT ROWID;
CREATE TABLE positions (
    source TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (source, part)
) WITHOUT ROWID;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, ident TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, topic TEXT NOT NULL,
    key BLOB, value BLOB NOT NULL, headers TEXT NOT NULL DEFAULT '[]',
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent = 0;
"""

_OUTBOX_INSERT: Final = (
    "INSERT OR IGNORE INTO outbox (ident, kind, topic, key, value, headers)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

# Columns added after version 2, to tables of older files on open: (table, column, type).
_ADDED_COLUMNS: Final = (
    ("seen", "at", "INTEGER"),  # NULL: seen before it existed
    ("positions", "event_time", "INTEGER"),  # NULL: not an events partition, or not known
)
_RETAIN: Final = "retain_days"  # its meta key (see Ledger.retain)
_SOURCE_HEAD: Final = "source-head:"  # + a file source's topic (see Ledger.note_source)
DAY_US: Final = 86_400_000_000

_P = ParamSpec("_P")

Headers = tuple[tuple[str, bytes], ...]
Pending = tuple[int, str, bytes | None, bytes, Headers]
"""An unsent output: (rowid, topic, key, value, headers)."""


class StateVersionError(RuntimeError):
    """The state file was written by a build with another schema version."""


class StateModeError(RuntimeError):
    """The state was made in another mode than the one asked (e.g. --budget-stage)."""


def micros(t: datetime) -> int:
    """Event time as integer microseconds since the epoch: exact, so windows compare exactly."""
    return (t - _EPOCH) // _MICROSECOND


def datetime_of(us: int) -> datetime:
    """The UTC datetime for `micros` output."""
    return _EPOCH + timedelta(microseconds=us)


class Ledger:
    """The connection, batching, watermark, seen ids, positions and outbox."""

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
        # Outbox rows of the open batch, inserted together before it commits.
        self._outbox_rows: list[tuple[str, str, str, bytes | None, bytes, str]] = []
        self._checkpointer = _Checkpointer.start_for(conn) if checkpoints else None
        # A file at an older schema version is raised to this one by the first batch it
        # commits (`commit`), not when opened: a run refused before deciding anything
        # (lost state, another budget-stage mode) leaves it for the build it came from.
        self._stale_version = (_version(conn) or STATE_SCHEMA_VERSION) < STATE_SCHEMA_VERSION
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

    @staticmethod
    def _connect(
        path: Path,
        full_sync: bool,
        schema: str,
        added: str = "",
        columns: tuple[tuple[str, str, str], ...] = (),
    ) -> sqlite3.Connection:
        """Open (creating) the file. `columns` (table, column, type) and `added`,
        idempotent statements (`IF NOT EXISTS`), are what a newer build added to older
        files: checked on every open, columns first, so older files gain them."""
        if path.is_dir():
            path = path / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; begin()/commit() mark a batch.
        conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if full_sync else 'NORMAL'}")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
            # `_Checkpointer` copies the WAL into the file from its own thread at ~32 MB;
            # this connection checkpoints itself only if that falls behind. Rare
            # checkpoints copy each hot page fewer times, as consecutive batches rewrite
            # the same pages (measured: 32 MB against 4 MB, commit 26-29 against 31-32 us
            # per decision; the engine's thread doing it at 40 MB, 38-42 us).
            conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
            conn.execute("BEGIN IMMEDIATE")
            # executescript() would commit on its own; create the tables statement by
            # statement so a half-created schema can never be left behind.
            found = _version(conn)
            if found is None:
                for statement in (_LEDGER_SCHEMA + schema).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?)", (STATE_SCHEMA_VERSION,)
                )
            elif found not in _READS:  # before touching it
                conn.execute("ROLLBACK")
                raise StateVersionError(
                    f"{path}: state schema version {found}, this build reads"
                    f" {' or '.join(map(str, _READS))}; "
                    + (
                        "it was written by a newer build: run that one, or rebuild the state"
                        " with this one by replaying the log into a new data directory"
                        if found > STATE_SCHEMA_VERSION
                        else "rebuild the state by replaying the log into a new data directory"
                    )
                )
            for table, column, kind in (*_ADDED_COLUMNS, *columns):
                known = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in known:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            for statement in added.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _connect_readonly(
        path: Path, columns: tuple[tuple[str, str, str], ...] = ()
    ) -> sqlite3.Connection:
        """An existing store, read only: no write lock is taken, so it can be read beside a
        running service (each statement sees the last committed batch). A file of an older
        build, not yet opened for writing by this one, lacks the `columns` (table, column,
        type) added since: a temporary view of each such table reads them as NULL, the value
        `_connect` gives them (`goodwill status` and `explain` before the first run)."""
        if path.is_dir():
            path = path / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no state file {path}")
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            found = _version(conn)
            if found not in _READS:
                raise StateVersionError(
                    f"{path}: state schema version {found}, this build reads"
                    f" {' or '.join(map(str, _READS))}"
                )
            lacking: dict[str, list[str]] = {}
            for table, column, _ in (*_ADDED_COLUMNS, *columns):
                known = {row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")}
                if column not in known:
                    lacking.setdefault(table, []).append(column)
            for table, names in lacking.items():  # the temp schema is read before main
                nulls = ", ".join(f"NULL AS {name}" for name in names)
                conn.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {nulls} FROM main.{table}")
        except BaseException:
            conn.close()
            raise
        return conn

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
        self._outbox_rows.clear()
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

    def outbox_add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        kind: str,
        ident: str,
    ) -> None:
        """Record an output to publish on `topic`. The same `ident` again is ignored: a
        replayed decision has the same id and bytes, and must be published once."""
        # latin-1 maps every byte to one code point, so header bytes survive as JSON text
        packed = (
            json.dumps([[name, raw.decode("latin-1")] for name, raw in headers])
            if headers
            else "[]"
        )
        row = (ident, kind, topic, key, value, packed)
        if self._conn.in_transaction:
            # Written with the batch's other rows in one executemany (see _flush_outbox).
            self._outbox_rows.append(row)
        else:
            self._cur.execute(_OUTBOX_INSERT, row)

    def _write_behind(self) -> None:
        """Write what the batch kept in memory; runs inside the batch, before COMMIT."""
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        if self._outbox_rows:
            self._cur.executemany(_OUTBOX_INSERT, self._outbox_rows)
            self._outbox_rows.clear()

    def outbox_pending(self, limit: int) -> list[Pending]:
        """Up to `limit` unsent outputs as (rowid, topic, key, value, headers), oldest first."""
        self._flush_outbox()
        rows = self._cur.execute(
            "SELECT id, topic, key, value, headers FROM outbox WHERE sent = 0 ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            (rowid, topic, key, value, _unpack_headers(h)) for rowid, topic, key, value, h in rows
        ]

    def outbox_mark_sent(self, rowids: Sequence[int]) -> None:
        """Mark outputs published, and forget published ones beyond the `OUTBOX_KEEP_SENT`
        most recent: the log holds them now, and an outbox that only grows would fill the
        disk and crowd the state out of SQLite's page cache."""
        if not self._conn.in_transaction:
            self._autocommit(self.outbox_mark_sent, rowids)
            return
        if not rowids:
            return
        self._cur.executemany("UPDATE outbox SET sent = 1 WHERE id = ?", [(r,) for r in rowids])
        self._cur.execute(
            "DELETE FROM outbox WHERE id <= ? AND sent = 1", (max(rowids) - OUTBOX_KEEP_SENT,)
        )

    def outputs(self, kind: str | None = None) -> Iterator[bytes]:
        """The outputs the outbox holds: every one not yet published and the most recent
        published ones (`OUTBOX_KEEP_SENT`), in insertion order.

        Streams from its own cursor; do not write to the store while iterating.
        """
        self._flush_outbox()
        if kind is None:
            cursor = self._conn.execute("SELECT value FROM outbox ORDER BY id")
        else:
            cursor = self._conn.execute(
                "SELECT value FROM outbox WHERE kind = ? ORDER BY id", (kind,)
            )
        while rows := cursor.fetchmany(512):
            for (value,) in rows:
                yield value

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

    def set_meta(self, key: str, value: str) -> None:
        if key in (_WATERMARK, _RETAIN):
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


class _Checkpointer:
    """Copies the write-ahead log into the database file on a thread of its own.

    sqlite3 releases the GIL while SQLite works, so the copy and its fsync run beside the
    engine instead of inside whichever commit happens to cross the autocheckpoint size
    (measured on the Kafka service: such a batch took up to 70 ms, the tail of decision
    latency). PASSIVE neither waits for nor blocks the engine's connection.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self.checkpoints = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="goodwill-checkpoint", daemon=True)

    @classmethod
    def start_for(cls, conn: sqlite3.Connection) -> _Checkpointer | None:
        row = conn.execute("PRAGMA database_list").fetchone()
        if row is None or not row[2]:
            return None  # in memory: no file, no log to copy
        checkpointer = cls(row[2])
        checkpointer._thread.start()
        return checkpointer

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        # Rare checkpoints copy each hot page fewer times (consecutive batches rewrite the
        # same pages), so the pause adapts to let about `_CHECKPOINT_FRAMES` pages
        # accumulate: a checkpoint that found n pages waits target/n times as long next
        # time, within bounds; one that could not copy everything (a batch committed
        # meanwhile) comes back soon, as the log restarts only once it is all copied.
        # Measured under full load: 5,000-8,000 pages a second.
        pause = _CHECKPOINT_PAUSE_S[0]
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(pause):
                try:
                    if conn is None:
                        conn = sqlite3.connect(
                            self._path, isolation_level=None, check_same_thread=False
                        )
                    _busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    _log.debug("background checkpoint: %s", exc)
                    continue
                self.checkpoints += 1
                lo, hi = _CHECKPOINT_PAUSE_S
                if log < 0 or copied < log:
                    pause = lo  # busy, or not all copied
                else:
                    pause = min(hi, max(lo, pause * _CHECKPOINT_FRAMES / max(1, log)))
        finally:
            if conn is not None:
                conn.close()


def _dump_query(conn: sqlite3.Connection, table: str) -> str:
    # table_info rows are (cid, name, type, notnull, default, pk), pk being the column's
    # position in the primary key (0: not part of it).
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    key = [name for _, name, *_, pk in sorted(info, key=lambda c: c[5]) if pk]
    order = key or [name for _, name, *_ in info]
    return f"SELECT * FROM {table} ORDER BY {', '.join(order)}"


def _unpack_headers(packed: str) -> Headers:
    if packed == "[]":  # decisions carry none; skip the parse
        return ()
    return tuple((name, value.encode("latin-1")) for name, value in json.loads(packed))


def _version(conn: sqlite3.Connection) -> int | None:
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'schema_version'").fetchone() is None:
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return None if row is None or row[0] is None else int(row[0])
