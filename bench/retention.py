"""What `--retain-days` costs and saves: the pipeline over weeks of event time, with and
without retention, in the same run.

    python bench/retention.py                       # 200,000 events ~23 days apart, 7 days kept
    python bench/retention.py --events 50000 --retain-days 2

The workload is `bench.workload.generate` spread out in event time (`--pace` seconds
between events, about), so that retention has history to forget. Each pass streams it
through `Processor.process` and `relay` (as `bench/decide.py`'s pipeline) into a fresh
data directory: first keeping everything (the baseline), then with `--retain-days`. It
prints each pass's events/s, the ratio of the two (retention's cost; the machine is noisy,
so compare within a run), the size of `state.db` once its write-ahead log is copied in,
the event ids kept, and whether both passes made the same decisions (they must: no event
of this stream is late). Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.decide import POLICIES, _Discard
from bench.workload import generate
from engine.compile import load
from engine.decide import Decider
from engine.service import DECISIONS_TOPIC, Processor
from engine.state import StateStore
from events.log import Record


class _Digest(_Discard):
    """Takes every output and keeps a hash of the decisions, in order."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.decisions = 0

    def append(self, topic: str, key: bytes | None, value: bytes, headers: object = ()) -> None:
        if topic == DECISIONS_TOPIC and value.startswith(b'{"type":"decision.made"'):
            self.hash.update(value)
            self.decisions += 1


def one_pass(args: argparse.Namespace, retain: int | None) -> dict[str, object]:
    from engine.service import relay

    compiled = load(args.policies)
    out = _Digest()
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore.open(Path(tmp))
        if retain is not None:
            store.retain(retain)
        processor = Processor(store, Decider(compiled))
        batch: list[Record] = []
        events = generate(args.events, args.customers, args.seed, args.pace)
        began_wall, began_cpu, done = time.perf_counter(), time.thread_time(), 0
        for offset, raw in enumerate(events):
            batch.append(Record("bench", 0, offset, None, raw))
            if len(batch) == args.batch:
                processor.process(batch)
                relay(store, out)
                done += len(batch)
                batch = []
                if done % (args.events // 10 or 1) < args.batch:
                    print(f"  {'retain' if retain else 'keep'}: {done:,} events", file=sys.stderr)
        if batch:
            processor.process(batch)
            relay(store, out)
        wall, cpu = time.perf_counter() - began_wall, time.thread_time() - began_cpu
        counts = store.stats()
        watermark = store.watermark()
        store.close()
        with sqlite3.connect(Path(tmp) / "state.db") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
            (page,) = conn.execute("PRAGMA page_size").fetchone()
        size = (Path(tmp) / "state.db").stat().st_size
    return {
        "retain_days": retain,
        "events_per_s": round(args.events / wall),
        "cpu_us_per_event": round(cpu / args.events * 1e6, 1),
        "state_mb": round(size / 1e6, 1),
        "free_mb": round(free * page / 1e6, 1),  # pages forgotten rows left, reused first
        "ids_kept": counts["events_seen"],
        "late": processor.tally.deadlettered.get("late", 0),
        "decisions": out.decisions,
        "decisions_sha256": out.hash.hexdigest()[:16],
        "last_event": None if watermark is None else watermark.isoformat(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=None, help="default: events / 4")
    parser.add_argument("--pace", type=float, default=10.0, help="seconds between events")
    parser.add_argument("--retain-days", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--policies", type=Path, default=POLICIES)
    args = parser.parse_args(argv)
    if args.events < 1 or args.retain_days < 1:
        parser.error("--events and --retain-days must be at least 1")
    args.customers = args.customers or max(1, args.events // 4)
    kept = one_pass(args, None)
    pruned = one_pass(args, args.retain_days)
    ratio = pruned["events_per_s"] / kept["events_per_s"]  # type: ignore[operator]
    same = kept["decisions_sha256"] == pruned["decisions_sha256"]
    print(
        f"bench/retention.py: {args.events:,} events, {args.customers:,} customers, pace"
        f" {args.pace:g} s (to {kept['last_event']}), batch {args.batch}, seed {args.seed}"
    )
    for label, result in (("keep everything", kept), (f"--retain-days {args.retain_days}", pruned)):
        print(
            f"  {label:<18} {result['events_per_s']:>7,} events/s"
            f"  {result['cpu_us_per_event']:>6} CPU us/event"
            f"  state.db {result['state_mb']:>6} MB ({result['free_mb']} MB free for reuse)"
            f"  ids kept {result['ids_kept']:>9,}"
        )
    print(f"  ratio_retain_vs_keep   {ratio:.2f} (events/s)")
    print(f"  same decisions         {'yes' if same else 'NO'} ({kept['decisions']:,})")
    print(json.dumps({"bench": "retention", "keep": kept, "retain": pruned, "ratio": ratio}))


if __name__ == "__main__":
    main()
