"""Reproducing an embedded history: every recorded output made again, compared byte for byte.

A decision is a pure function of its event, the state as of that event and the policy set
it names, so the inputs of a data directory, decided again from scratch by the policy
sets its decisions name, must give back every output its log recorded. `verify` does that
in a throwaway directory: it reads the recorded outputs into a spool beside it, replays the
inputs in order (switching policy set where the history did: before the first event that
a decision of the other set answered), and compares each output the replay publishes with
the recorded one of the same id.

An input the history failed to decide (a `processing_failed` dead letter: a fault of the
build that read it) is dead-lettered again where it was read, and decided where it was sent
again (`goodwill redrive`), as the history did.

Activations (`policy_set.activated`) are counted, not compared: they record when a run
started, not anything the inputs decide. Dead letters are counted too. A history decided
on Kafka cannot be verified this way: which of two partitions' events charged a shared
budget first is not in the topics (docs/kafka.md), so `goodwill rebuild` takes recorded
decisions as facts instead.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from engine.compile import CompiledSet
from engine.deadletter import PROCESSING_FAILED
from engine.decide import Decider
from engine.service import DEADLETTER_TOPIC, DECISIONS_TOPIC, Processor, relay
from engine.state import StateStore
from engine.verdict import Mismatch, Verdict, difference
from events.log import Headers, LogCorrupted, Record, scan_topic

ACTIVATED = "policy_set.activated"

_SPOOL = """
CREATE TABLE recorded (
    ident TEXT PRIMARY KEY, type TEXT NOT NULL, cause TEXT, policy_set TEXT,
    key BLOB, value BLOB NOT NULL, seen INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX recorded_by_cause ON recorded (cause);
CREATE TABLE again (ident TEXT NOT NULL, at INTEGER NOT NULL, key BLOB, value BLOB NOT NULL);
"""


class NoHistory(ValueError):
    """The data directory holds no embedded decisions log to verify."""


class ScratchFailed(RuntimeError):
    """The replay's own scratch files (under TMPDIR) failed: a full disk, most likely."""


def verify(
    data_dir: Path,
    inputs: Iterable[Record],
    sets: Mapping[str, CompiledSet],
    batch: int = 500,
    keep: int = 20,
    progress: Callable[[int], None] | None = None,
) -> Verdict:
    """Replay `inputs` with the policy sets in `sets` (by hash) and compare what they make
    with what `data_dir`'s log recorded; keep the first `keep` mismatches. `progress` is
    called with the records replayed so far, every 50,000."""
    log_dir = recorded_log(data_dir)
    verdict = Verdict(retain_days=_retention(data_dir))
    service_log = logging.getLogger("goodwill.service")
    level = service_log.level
    service_log.setLevel(logging.ERROR)  # the history's dead letters were reported by `run`
    try:
        with tempfile.TemporaryDirectory(prefix="goodwill-verify-") as scratch:
            spool = sqlite3.connect(Path(scratch) / "recorded.db", isolation_level=None)
            try:
                outputs = scan_topic(log_dir, DECISIONS_TOPIC)
                first, again = _spool(spool, outputs, log_dir, verdict)
                sink = _Comparer(spool, verdict, keep, again)
                failed = _failed(scan_topic(log_dir, DEADLETTER_TOPIC))
                _replay(Path(scratch), spool, sink, inputs, sets, first, failed, batch, progress)
                _unmatched(spool, verdict, keep)
            except sqlite3.Error as err:  # its databases are the scratch ones
                where = Path(scratch).parent  # the directory itself is gone by now
                raise ScratchFailed(f"the replay's scratch files under {where}: {err}") from err
            finally:
                spool.close()
    finally:
        service_log.setLevel(level)
    verdict.lacking = {h: n for h, n in verdict.decided_by.items() if h not in sets}
    return verdict


def recorded_log(data_dir: Path) -> Path:
    """The directory of `data_dir`'s embedded log, if it holds a decisions topic."""
    log_dir = data_dir / "log"
    if not (log_dir / f"{DECISIONS_TOPIC}.jsonl").is_file():
        raise NoHistory(
            f"{data_dir} holds no embedded decisions log ({log_dir / DECISIONS_TOPIC}.jsonl):"
            " verify replays a history `goodwill run` decided without a broker"
        )
    return log_dir


def _retention(data_dir: Path) -> int | None:
    """The retention `data_dir`'s state keeps (`--retain-days`), if any: the history
    dead-lettered an event older than that as late, so the replay must too."""
    if not (data_dir / "state.db").is_file():
        return None
    store = StateStore.open_readonly(data_dir / "state.db")
    try:
        return store.retain_days
    finally:
        store.close()


def _spool(
    spool: sqlite3.Connection, outputs: Iterator[Record], log_dir: Path, verdict: Verdict
) -> tuple[str | None, set[str]]:
    """Keep the recorded outputs by id; return the policy set of the first decision, and
    the ids published more than once (a relay stopped before it marked its outputs sent
    publishes them again): their later copies are kept aside, to be compared as well."""
    spool.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + _SPOOL)
    first: str | None = None
    again: set[str] = set()
    spool.execute("BEGIN")
    for record in outputs:
        kind, ident, data = _output(record, log_dir)
        if kind == ACTIVATED:
            verdict.activations += 1
            continue
        policy_set = data.get("policy_set") if kind == "decision.made" else None
        inserted = spool.execute(
            "INSERT OR IGNORE INTO recorded (ident, type, cause, policy_set, key, value)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ident, kind, data.get("caused_by"), policy_set, record.key, record.value),
        )
        if not inserted.rowcount:
            spool.execute(
                "INSERT INTO again (ident, at, key, value) VALUES (?, ?, ?, ?)",
                (ident, record.offset, record.key, record.value),
            )
            again.add(ident)
            verdict.republished += 1
            continue
        if policy_set is not None:
            first = first or policy_set
            verdict.decided_by[policy_set] = verdict.decided_by.get(policy_set, 0) + 1
        verdict.recorded += 1
    spool.execute("COMMIT")
    return first, again


def _failed(letters: Iterable[Record]) -> Counter[bytes]:
    """The records the history failed to decide (`processing_failed`), by their bytes: a
    fault of the build that read them, which the replay cannot make again. A copy sent
    again (`goodwill redrive`) was decided where it was read, after the rest."""
    return Counter(
        letter.value
        for letter in letters
        if dict(letter.headers).get("goodwill.reason") == PROCESSING_FAILED.encode()
    )


def _output(record: Record, log_dir: Path) -> tuple[str, str, dict[str, Any]]:
    """A recorded output's type, id and data; a record of another shape is damage."""
    try:
        doc = json.loads(record.value)
        kind, ident, data = doc["type"], doc["event_id"], doc.get("data") or {}
    except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, not an object
        data = None
    if not isinstance(data, dict):
        where = f"{log_dir / DECISIONS_TOPIC}.jsonl:{record.offset + 1}"
        raise LogCorrupted(f"{where}: not an output Goodwill publishes")
    return kind, ident, data


class _Comparer:
    """The replay's sink: each output is compared with the recorded one of the same id."""

    def __init__(
        self, spool: sqlite3.Connection, verdict: Verdict, keep: int, again: set[str]
    ) -> None:
        self.spool, self.verdict, self.keep, self.again = spool, verdict, keep, again

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        if topic != DECISIONS_TOPIC:
            self.verdict.deadlettered += 1
            return
        doc = json.loads(value)
        kind, ident = doc["type"], doc["event_id"]
        if kind == ACTIVATED:
            self.verdict.switches += 1
            return
        cause = (doc.get("data") or {}).get("caused_by")
        found = self.spool.execute(
            "SELECT key, value FROM recorded WHERE ident = ?", (ident,)
        ).fetchone()
        if found is None:
            detail = "made by the replay, not in the record"
            self._mismatch(Mismatch("extra", ident, kind, cause, detail))
            return
        self.spool.execute("UPDATE recorded SET seen = 1 WHERE ident = ?", (ident,))
        if (key, value) == (found[0], found[1]):
            self.verdict.reproduced[kind] += 1
        else:
            where = difference(found[0], found[1], key, doc)
            self._mismatch(Mismatch("differs", ident, kind, cause, where))
        if ident in self.again:
            copies = self.spool.execute(
                "SELECT at, key, value FROM again WHERE ident = ? ORDER BY at", (ident,)
            )
            for at, k, v in copies.fetchall():
                if (k, v) != (key, value):
                    where = f"its copy at offset {at} of the log: {difference(k, v, key, doc)}"
                    self._mismatch(Mismatch("differs", ident, kind, cause, where))

    def flush(self) -> None:
        pass

    def _mismatch(self, mismatch: Mismatch) -> None:
        self.verdict.counts[mismatch.kind] += 1
        if len(self.verdict.mismatches) < self.keep:
            self.verdict.mismatches.append(mismatch)


def _replay(
    scratch: Path,
    spool: sqlite3.Connection,
    sink: _Comparer,
    inputs: Iterable[Record],
    sets: Mapping[str, CompiledSet],
    first: str | None,
    failed: Counter[bytes],
    batch: int,
    progress: Callable[[int], None] | None,
) -> None:
    verdict = sink.verdict
    if first is not None and first not in sets:
        verdict.stopped_at = "the first event"
        return
    current = first if first is not None else next(iter(sets))
    store = StateStore.open(scratch / "state.db")
    try:
        if verdict.retain_days is not None:
            store.retain(verdict.retain_days)
        processor = Processor(store, Decider(sets[current]))
        processor.activate()
        chunk: list[Record] = []

        def decide() -> None:
            if chunk:
                processor.process(chunk)
                chunk.clear()
            relay(store, sink)

        for record in inputs:
            if failed[record.value] > 0:  # dead-lettered there by the history, as here
                failed[record.value] -= 1
                verdict.records += 1
                verdict.deadlettered += 1
                verdict.failed += 1
                continue
            wanted: str = _decided_by(spool, record.value) or current
            if wanted != current:
                decide()
                if wanted not in sets:
                    verdict.stopped_at = _event_id(record.value)
                    break
                current = wanted
                processor.decider = Decider(sets[current])
                processor.activate()
            chunk.append(record)
            verdict.records += 1
            if len(chunk) >= batch:
                decide()
            if progress is not None and verdict.records % 50_000 == 0:
                progress(verdict.records)
        decide()
    finally:
        store.close()


def _event_id(value: bytes) -> str | None:
    try:
        ident = json.loads(value).get("event_id")
    except (ValueError, AttributeError):  # not JSON, not UTF-8, not an object
        return None
    return ident if isinstance(ident, str) else None


def _decided_by(spool: sqlite3.Connection, value: bytes) -> str | None:
    """The policy set the record's recorded decision names, if it has one the replay has not
    made yet (a later copy of an event is a duplicate, whatever set is active then)."""
    ident = _event_id(value)
    if ident is None:
        return None
    found = spool.execute(
        "SELECT policy_set FROM recorded WHERE cause = ? AND type = 'decision.made' AND seen = 0",
        (ident,),
    ).fetchone()
    return None if found is None else str(found[0])


def _unmatched(spool: sqlite3.Connection, verdict: Verdict, keep: int) -> None:
    """Recorded outputs the replay did not make: missing, or not reached for want of a set."""
    rows = spool.execute("SELECT ident, type, cause FROM recorded WHERE seen = 0 ORDER BY rowid")
    for ident, kind, cause in rows:
        if verdict.stopped_at is not None:
            verdict.unreplayed += 1
            continue
        verdict.counts["missing"] += 1
        if len(verdict.mismatches) < keep:
            detail = "recorded, not made by the replay"
            verdict.mismatches.append(Mismatch("missing", ident, kind, cause, detail))
