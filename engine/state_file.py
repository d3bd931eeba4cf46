"""The state file: where it is, how it is opened, and which schema versions this build reads.

Every store is one SQLite file in WAL mode (`STATE_FILE` in a data directory). `connect`
sets the connection's pragmas, creates the ledger's tables and the store's in a new file,
refuses a file of a schema version this build does not read (`StateVersionError`) and adds
to an older one what was added since; `connect_readonly` reads one beside a running
service. An older file is raised to `STATE_SCHEMA_VERSION` by the first batch committed to
it (`engine.ledger.Ledger.commit`). Its own module because it changes with the on-disk
format and the file's tuning, not with what a batch records.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

STATE_FILE: Final = "state.db"
STATE_SCHEMA_VERSION: Final = 4
"""Bump when an older build would misread what is stored; a file of a version not in
`_READS` is refused. 3 since retention, follow-up lanes and the budget-stage mode: a build
that reads only 2 refuses a file this build has written instead of misreading it (it would
decide again an event whose id retention forgot). 4 since an order's `delayed` and `lost`
count the reports (`order.delay_reports`, `order.lost_reports`): a build that reads 3 at
most took 2 for "not delayed" or "not lost". A file at 2 or 3 is raised to 4 by the first
batch this build commits to it."""
_READS: Final = (2, 3, 4)
_READS_TEXT: Final = ", ".join(map(str, _READS[:-1])) + f" or {_READS[-1]}"

_CACHE_KIB: Final = 64 * 1024  # SQLite's page cache bounds the memory state may use
_CHECKPOINT_PAGES: Final = 16_384  # the engine's own, only if the checkpointer falls behind
_WAL_LIMIT_BYTES: Final = 64 * 1024 * 1024

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

# Columns added after version 2, to tables of older files on open: (table, column, type).
_ADDED_COLUMNS: Final = (
    ("seen", "at", "INTEGER"),  # NULL: seen before it existed
    ("positions", "event_time", "INTEGER"),  # NULL: not an events partition, or not known
)


class StateVersionError(RuntimeError):
    """The state file was written by a build with another schema version."""


def connect(
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
        # `Checkpointer` (engine.checkpointer) copies the WAL into the file from its own
        # thread at ~32 MB; this connection checkpoints itself only if that falls behind.
        # Rare checkpoints copy each hot page fewer times, as consecutive batches rewrite
        # the same pages (measured: 32 MB against 4 MB, commit 26-29 against 31-32 us
        # per decision; the engine's thread doing it at 40 MB, 38-42 us).
        conn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
        conn.execute("BEGIN IMMEDIATE")
        # executescript() would commit on its own; create the tables statement by
        # statement so a half-created schema can never be left behind.
        found = version(conn)
        if found is None:
            for statement in (_LEDGER_SCHEMA + schema).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (STATE_SCHEMA_VERSION,))
        elif found not in _READS:  # before touching it
            conn.execute("ROLLBACK")
            raise StateVersionError(
                f"{path}: state schema version {found}, this build reads"
                f" {_READS_TEXT}; "
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


def connect_readonly(
    path: Path, columns: tuple[tuple[str, str, str], ...] = ()
) -> sqlite3.Connection:
    """An existing store, read only: no write lock is taken, so it can be read beside a
    running service (each statement sees the last committed batch). A file of an older
    build, not yet opened for writing by this one, lacks the `columns` (table, column,
    type) added since: a temporary view of each such table reads them as NULL, the value
    `connect` gives them (`goodwill status` and `explain` before the first run)."""
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no state file {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        found = version(conn)
        if found not in _READS:
            raise StateVersionError(
                f"{path}: state schema version {found}, this build reads {_READS_TEXT}"
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


def version(conn: sqlite3.Connection) -> int | None:
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'schema_version'").fetchone() is None:
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return None if row is None or row[0] is None else int(row[0])
