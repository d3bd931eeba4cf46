"""The outbox: the outputs a batch decides, stored in its transaction until published.

Decisions, alerts, dead letters and requests to the budget stage are not sent while a
batch runs: `outbox_add` records each with the batch, so the one SQLite transaction that
commits the state and the positions commits the outputs that go with them, and a crash
loses all of them or none. The relay publishes the unsent ones (`outbox_pending`) and
marks them sent (`outbox_mark_sent`); the most recent published ones are kept
(`OUTBOX_KEEP_SENT`). `Outbox` extends `engine.ledger.Ledger`, and `engine.state.StateStore`
extends it. Its own module because what is kept of an output, and for how long, changes
with publishing, not with where the engine is in the log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from engine.ledger import Ledger

OUTBOX_KEEP_SENT: Final = 10_000
"""Published outputs the outbox keeps (the most recent ones), e.g. for `goodwill explain`."""

_OUTBOX_INSERT: Final = (
    "INSERT OR IGNORE INTO outbox (ident, kind, topic, key, value, headers)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)

Headers = tuple[tuple[str, bytes], ...]
Pending = tuple[int, str, bytes | None, bytes, Headers]
"""An unsent output: (rowid, topic, key, value, headers)."""


class Outbox(Ledger):
    """The ledger with the outputs to publish."""

    def __init__(self, conn: sqlite3.Connection, *, checkpoints: bool = True) -> None:
        super().__init__(conn, checkpoints=checkpoints)
        # Outbox rows of the open batch, inserted together before it commits.
        self._outbox_rows: list[tuple[str, str, str, bytes | None, bytes, str]] = []

    def rollback(self) -> None:
        self._outbox_rows.clear()
        super().rollback()

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
        self._flush_outbox()
        super()._write_behind()

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


def _unpack_headers(packed: str) -> Headers:
    if packed == "[]":  # decisions carry none; skip the parse
        return ()
    return tuple((name, value.encode("latin-1")) for name, value in json.loads(packed))
