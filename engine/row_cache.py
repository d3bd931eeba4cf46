"""The write-behind row cache through which the store reads and changes its hot rows.

A batch changes the rows the hot folds touch (customers, orders, cases, reps) in memory
and writes them in one executemany before its COMMIT; a rollback drops the cache. Memory
stays bounded by `_CACHE_ROWS` per table, whatever the number of customers. Its own
module because how rows are kept between batches is a matter of speed and memory, apart
from what the rows mean (`engine.state`) and how they are laid out (`engine.state_schema`).
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any, Final

_CACHE_ROWS: Final = 50_000  # rows kept per cached table between batches


class Rows:
    """A bounded write-behind cache of one table's rows by primary key.

    `get` reads a row (as a list to change in place) or None; `put` stores a new or changed
    row. Changed rows are written by `flush` with INSERT OR REPLACE, inside the batch's
    transaction. `forget` drops everything (a rollback may have undone what is cached).
    """

    def __init__(self, cur: sqlite3.Cursor, table: str, columns: tuple[str, ...]) -> None:
        self._cur = cur
        names = ", ".join(columns)
        self._select = f"SELECT {names} FROM {table} WHERE {columns[0]} = ?"
        marks = ", ".join("?" * len(columns))
        self._write = f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})"
        self._rows: dict[str, list[Any] | None] = {}
        self._dirty: dict[str, list[Any]] = {}

    def get(self, key: str) -> list[Any] | None:
        try:
            return self._rows[key]
        except KeyError:
            found = self._cur.execute(self._select, (key,)).fetchone()
            row = None if found is None else list(found)
            self._rows[key] = row
            return row

    def put(self, key: str, row: list[Any]) -> None:
        self._rows[key] = row
        self._dirty[key] = row

    def flush(self) -> None:
        if self._dirty:
            self._cur.executemany(self._write, self._dirty.values())
            self._dirty.clear()
        if len(self._rows) > _CACHE_ROWS:  # oldest first: dicts keep insertion order
            for key in list(itertools.islice(self._rows, len(self._rows) - _CACHE_ROWS * 3 // 4)):
                del self._rows[key]

    def forget(self) -> None:
        self._rows.clear()
        self._dirty.clear()
