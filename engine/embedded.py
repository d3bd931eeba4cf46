"""The embedded backend: no broker; events from a .jsonl file or the embedded log.

State and positions live in `<data-dir>/state.db`; decisions and dead letters are
published to a file log in `<data-dir>/log/` (one JSON-lines file per topic). A file
source is read like a one-partition topic whose offsets are line numbers, so running
the same file again resumes after the last line it decided — nothing twice — unless the
file under that name is another one (`_resume_at`), which is read from line 1.
"""

from __future__ import annotations

import hashlib
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.archive import keep
from engine.compile import CompiledSet
from engine.decide import Decider
from engine.outbox import Pending
from engine.service import (
    DEADLETTER_TOPIC,
    DECISIONS_TOPIC,
    RELAY_CHUNK,
    Listener,
    Processor,
    relay,
)
from engine.state import StateStore
from engine.tally import Tally
from events.log import FileLog, Record, read_jsonl_source

EVENTS_TOPIC = "goodwill.events"

log = logging.getLogger("goodwill.embedded")


class StateLost(RuntimeError):
    """The data directory's log holds outputs, but its state is new: it was lost."""


@dataclass(frozen=True)
class Summary:
    tally: Tally
    budgets: list[tuple[str, str, str, int, int]]  # budget, owner, period, allocated, charged
    stats: dict[str, int]
    policy_set: str
    deadletter_file: Path
    data_dir: Path
    stopped: bool = False  # by a signal, after a whole batch: running again goes on


def file_records(path: Path, start: int) -> Iterator[Record]:
    topic = f"file:{path.resolve()}"
    for line_no, raw in read_jsonl_source(path):
        if line_no >= start:
            yield Record(topic=topic, partition=0, offset=line_no, key=None, value=raw)


@contextmanager
def stop_after_batch() -> Iterator[Callable[[], bool]]:
    """While open, SIGTERM and Ctrl-C ask `run_embedded` (through the callable it yields)
    to stop once the batch under way is decided, published and printed; a second signal
    raises KeyboardInterrupt at once (that batch is dropped, as a crash drops it, and
    decided by the next run)."""
    signals: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if signals:
            raise KeyboardInterrupt
        signals.append(signum)

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(signals)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _resume_at(store: StateStore, source: Path, topic: str) -> int:
    """The line to go on reading `source` from: after the last line decided, unless the
    file under that name is not the one read before (another first line, or fewer lines
    than were read: a new day's export under the same name, a file rewritten). Then from
    line 1, with a warning: events already decided are skipped by their ids."""
    start = store.position(topic, 0) or 1
    head, lines = _head_and_lines(source)
    before = store.source_head(topic)
    restart = start > 1 and ((before is not None and before != head) or lines < start - 1)
    if restart:
        log.warning(
            "%s is not the file read before under that name (%s): reading it from line 1;"
            " events already decided are skipped as duplicates",
            source,
            "another first line"
            if before not in (None, head)
            else f"{lines} lines, not {start - 1}",
        )
        start = 1
    if before != head or restart:
        store.note_source(topic, head, restart)
    return start


def _head_and_lines(path: Path) -> tuple[str, int]:
    """A digest of the first non-blank line of `path` (BOM and line end aside), and how
    many lines it has, the last counted even without its newline."""
    first: bytes | None = None
    lines = 0
    with path.open("rb") as file:
        for line in file:
            lines += 1
            if first is None and line.strip(b"\xef\xbb\xbf \t\r\n"):
                first = line.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
    return hashlib.sha256(first or b"").hexdigest()[:32], lines


def _log_records(log: FileLog, start: int, batch: int) -> Iterator[Record]:
    offset = start
    while True:
        records = log.read(EVENTS_TOPIC, 0, offset, batch)
        if not records:
            return
        yield from records
        offset = records[-1].offset + 1


def settle_published(store: StateStore, out: FileLog) -> int:
    """Mark sent the unsent outputs the log already holds, and return how many.

    A run that stopped after appending a chunk of outputs but before its store recorded
    them sent (killed, or a disk that failed at that commit) left them in both; `relay`
    alone would append them again. `relay` appends the oldest unsent outputs first, at
    most `RELAY_CHUNK` at a time, so such outputs are the first unsent ones of each topic,
    and the last records of its file, in the same order: those are matched by key, value
    and headers, made durable, and marked sent. Anything else stays unsent.
    """
    by_topic: dict[str, list[Pending]] = {}
    for row in store.outbox_pending(RELAY_CHUNK):
        by_topic.setdefault(row[1], []).append(row)
    held: list[int] = []
    for topic, rows in sorted(by_topic.items()):
        end = out.end_offset(topic, 0)
        tail = out.read(topic, 0, max(0, end - len(rows)), len(rows))
        held += [row[0] for row in rows[: _held(tail, rows)]]
    if held:
        out.flush()  # on disk before the store says they are published
        store.begin()
        store.outbox_mark_sent(sorted(held))
        store.commit()
        log.info(
            "%d unsent outputs are in %s already (a run stopped before it recorded them"
            " published); they are not published again",
            len(held),
            out.directory,
        )
    return len(held)


def _held(tail: list[Record], rows: list[Pending]) -> int:
    """The largest k for which the last k records of `tail` are the first k of `rows`."""
    for start in range(len(tail)):  # the earliest match is the longest
        if all(
            (r.key, r.value, r.headers) == (key, value, headers)
            for r, (_, _, key, value, headers) in zip(tail[start:], rows, strict=False)
        ):
            return len(tail) - start
    return 0


def run_embedded(
    compiled: CompiledSet,
    data_dir: Path,
    source: Path | None,
    batch: int,
    on_output: Listener | None = None,
    retain_days: int | None = None,
    stopping: Callable[[], bool] = lambda: False,
    progress: Callable[[Tally], None] | None = None,
) -> Summary:
    """Decide `source` (or the embedded log) into `data_dir`. `progress` is told the counts
    so far after each batch commits (`Processor.on_batch`); `stopping` is asked after each
    batch is decided and published, and when it says so, the run ends there."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # The log's lock first: a second run on this directory is refused before it touches
    # the state (a --retain-days it was given must not change the running one's).
    out = FileLog.open(data_dir / "log")
    try:
        store = StateStore.open(data_dir / "state.db")
    except BaseException:
        out.close()
        raise
    try:
        store.check_whole(str(data_dir))
        published = out.end_offset(DECISIONS_TOPIC, 0)
        if published and store.meta("policy_set") is None:
            raise StateLost(
                f"{data_dir / 'state.db'} is empty, yet {data_dir / 'log'} holds {published}"
                " outputs published from the state it replaces: deciding again would publish"
                " them twice (under other ids if the policies changed); restore the state file,"
                f" or move {data_dir} aside to start over"
            )
        if retain_days is not None:
            store.retain(retain_days)
        settle_published(store, out)
        relay(store, out)  # outputs a crash left unpublished go out first, unchanged
        processor = Processor(store, Decider(compiled), on_output)
        processor.on_batch = progress
        keep(data_dir, compiled.policy_set)
        processor.activate()
        if source is not None:
            topic = f"file:{source.resolve()}"
            records = file_records(source, _resume_at(store, source, topic))
        else:
            records = _log_records(out, store.position(EVENTS_TOPIC, 0) or 0, batch)
        chunk: list[Record] = []
        stopped = False
        for record in records:
            chunk.append(record)
            if len(chunk) >= batch:
                processor.process(chunk)
                relay(store, out)
                chunk = []
                if stopped := stopping():
                    break
        if chunk:
            processor.process(chunk)
        relay(store, out)
        return Summary(
            tally=processor.tally,
            budgets=[  # a period without budget.allocated has the budget's own amount
                (name, owner, period, compiled.policy_set.allocated(name, stored), charged)
                for name, owner, period, stored, charged in store.budgets()
            ],
            stats=store.stats(),
            policy_set=compiled.hash,
            deadletter_file=data_dir / "log" / f"{DEADLETTER_TOPIC}.jsonl",
            data_dir=data_dir,
            stopped=stopped,
        )
    finally:
        out.close()
        store.close()
