"""The background WAL checkpoint: copying the state file's write-ahead log into the file.

SQLite in WAL mode appends each commit to the log, and a checkpoint copies the log into
the database file. The engine's own connection would do it inside whichever commit
crosses the autocheckpoint size, a stall in the tail of decision latency; `Checkpointer`
does it on a thread of its own instead (`engine.ledger.Ledger` starts one per writable
file). Its own module because when and how often the log is copied is tuned against
measurements (bench/README.md), apart from what the store writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Final

_CHECKPOINT_FRAMES: Final = 8192  # pages (32 MB) per background checkpoint, about
_CHECKPOINT_PAUSE_S: Final = (0.1, 1.0)  # bounds of its pause between checkpoints

_log = logging.getLogger("goodwill.state")


class Checkpointer:
    """Copies the write-ahead log into the database file on a thread of its own.

    sqlite3 releases the GIL while SQLite works, so the copy and its fsync run beside the
    engine instead of inside whichever commit happens to cross the autocheckpoint size
    (measured on the Kafka service: such a batch took up to 70 ms, the tail of decision
    latency). PASSIVE neither waits for nor blocks the engine's connection.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="goodwill-checkpoint", daemon=True)

    @classmethod
    def start_for(cls, conn: sqlite3.Connection) -> Checkpointer | None:
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
                lo, hi = _CHECKPOINT_PAUSE_S
                if log < 0 or copied < log:
                    pause = lo  # busy, or not all copied
                else:
                    pause = min(hi, max(lo, pause * _CHECKPOINT_FRAMES / max(1, log)))
        finally:
            if conn is not None:
                conn.close()
