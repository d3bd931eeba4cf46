"""Decisions per second of the decision core, against a bare durable_rules post loop.

    python bench/decide.py                      # 200,000 events, 50,000 customers
    python bench/decide.py --quick              # 20,000 events, 5,000 customers
    python bench/decide.py --policies-scale     # 10 vs 300 generated policies

One run streams `bench.workload.generate` through these measurements, batch by batch:

- (b) pipeline: `Processor.process` on batches of records — decode, dedupe, fold state in
  SQLite, enrich, decide, outbox, commit — then `relay` of the batch's outputs to a log that
  discards them, as `goodwill run` publishes after each batch. Every event yields one
  `decision.made`.
- (a) pure decision: `Decider.decide` on the same events with the state facts the pipeline
  computed and its budget/alert reads replayed, so only the decision is timed; each
  decision must equal the pipeline's.
- bare durable_rules: the C engine alone, on a fresh copy of the same compiled rulesets,
  posting the lean facts the decider posted (the same posts per event): encode, assert_event
  and, on a match, start_action + the rule's name from the answer (`verbatim_rule`, as the
  engine reads it, else json.loads) + complete. That is the least any caller does
  to get an answer from durable_rules, so it is the baseline of the ratio. RuleHost.match
  and durable's own Host.post over the same posts are shown for context.
- floor: the parts the contract makes every decision pay, with no engine between them:
  decoding the record (`events.codec.decode`, pydantic), encoding the decision the pipeline
  made (pydantic's `to_json` of the same document), a minimal SQLite batch (per event: read
  one state row, insert the event id, write one state row and one outbox row; commit; read
  the outbox back and mark it sent) and the bare durable_rules loop above. Their sum is a
  lower bound on the pipeline's cost per event, so it bounds what the pipeline can reach:
  decisions per CPU second and `ratio_vs_bare_durable_rules`.

Figures go to stdout as aligned lines plus one JSON line; progress goes to stderr. Nothing
here asserts on time: it is a benchmark, not a test. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic_core import to_json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import durable_rules_engine as dre
from durable.engine import Host, MessageNotHandledException

from bench.workload import generate
from engine.compile import CompiledSet, load
from engine.decide import Decider, StateView
from engine.errors import PolicyError
from engine.facts import Scalar, vocabulary
from engine.outcome import Outcome
from engine.rules import RuleHost, verbatim_rule
from engine.service import Processor, relay
from engine.state import StateStore
from events.codec import decode
from events.log import Record
from events.models import Envelope

POLICIES = Path(__file__).resolve().parent.parent / "policies"
BASE, LARGE = 10, 300  # --policies-scale: policy counts compared
TARGETS = {"decisions_per_s": 20_000, "ratio": 0.5, "p99_us": 1_000, "scale_growth": 2.0}
# ruleset, lean fact, what it fired: the rule (event rulesets) or the rules (fact rulesets)
Post = tuple[str, dict[str, Scalar], str | tuple[str, ...] | None]
T = TypeVar("T")
# The cheapest way to serialise a fact for durable, as RuleHost does: one encoder, reused.
_ENCODE = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


# ---------------------------------------------------------------- capture and replay


class _Answers:
    """A StateView over the store that remembers its answers (`store=None`: replays them)."""

    def __init__(self, store: StateView | None, answers: dict[tuple[Any, ...], Any]) -> None:
        self.store = store
        self.answers = answers

    def _ask(self, key: tuple[Any, ...], ask: Callable[[StateView], Any]) -> Any:
        if self.store is not None:
            self.answers[key] = ask(self.store)
        return self.answers[key]

    def budget_usage(self, budget: str, owner: str, period: str) -> tuple[int | None, int]:
        key = ("budget", budget, owner, period)
        return cast(tuple[int | None, int], self._ask(key, lambda s: s.budget_usage(*key[1:])))

    def last_alert(self, sku: str) -> datetime | None:
        return cast(datetime | None, self._ask(("alert", sku), lambda s: s.last_alert(sku)))

    def sku_reports(self, sku: str, since: datetime, until: datetime) -> tuple[int, list[str]]:
        key = ("reports", sku, since, until)
        reports = self._ask(key, lambda s: s.sku_reports(sku, since, until))
        return cast(tuple[int, list[str]], reports)


@dataclasses.dataclass(frozen=True)
class _Case:
    """One decision the pipeline made, with everything needed to make it again."""

    event: Envelope
    state: Mapping[str, Scalar]
    view: _Answers
    outcome: Outcome


class _CapturingDecider(Decider):
    """The pipeline's decider: decides as usual and keeps what the pure run needs."""

    def __init__(self, compiled: CompiledSet) -> None:
        super().__init__(compiled)
        self.cases: list[_Case] = []

    def decide(self, event: Envelope, state: Mapping[str, Scalar], view: StateView) -> Outcome:
        answers: dict[tuple[Any, ...], Any] = {}
        outcome = super().decide(event, state, _Answers(view, answers))
        self.cases.append(_Case(event, state, _Answers(None, answers), outcome))
        return outcome


class _TimedProcessor(Processor):
    """Times each record of a batch in wall and CPU time (the commit is the batch's)."""

    def __init__(self, store: StateStore, decider: Decider) -> None:
        super().__init__(store, decider)
        self.wall_ns: list[int] = []
        self.cpu_ns: list[int] = []

    def _one(self, record: Record) -> None:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        super()._one(record)
        self.cpu_ns.append(time.thread_time_ns() - cpu)
        self.wall_ns.append(time.perf_counter_ns() - wall)


class _Discard:
    """The log the pipeline publishes to: takes every output, keeps none."""

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Any = ()) -> None:
        pass

    def flush(self) -> None:
        pass


class _PostRecorder:
    """Stands in for RuleHost: passes each post on and keeps (ruleset, lean fact, answer)."""

    def __init__(self, host: RuleHost) -> None:
        self.host = host
        self.posts: list[Post] = []

    def match(self, ruleset: str, fact: Mapping[str, Scalar]) -> str | None:
        rule = self.host.match(ruleset, fact)
        self.posts.append((ruleset, dict(fact), rule))
        return rule

    def match_all(
        self, ruleset: str, fact: Mapping[str, Scalar], *, checked: bool = False
    ) -> tuple[str, ...]:
        rules = self.host.match_all(ruleset, fact, checked=checked)
        self.posts.append((ruleset, dict(fact), rules))
        return rules


class _Bare:
    """The compiled rulesets created straight in durable's C engine: no Python host."""

    def __init__(self, rulesets: Mapping[str, Mapping[str, Any]], facts: set[str]) -> None:
        self.handles = {
            name: dre.create_ruleset(name, json.dumps(rules, ensure_ascii=False))
            for name, rules in rulesets.items()
        }
        self.facts = facts
        self.next_id = 0

    def post_all(self, posts: list[Post]) -> list[str | tuple[str, ...] | None]:
        fired: list[str | tuple[str, ...] | None] = []
        encode, handles, event_id = _ENCODE, self.handles, self.next_id
        for ruleset, fact, _ in posts:
            handle = handles[ruleset]
            event_id += 1
            payload = encode({**fact, "sid": "0", "id": event_id})
            if ruleset in self.facts:  # every matching rule fires; a matched fact is retracted
                code, state = dre.assert_fact(handle, payload)
                names: list[str] = []
                if code == 0:
                    message = dre.start_action_for_state(handle, state)[1]
                    while message is not None:
                        name = verbatim_rule(message, payload) or next(iter(json.loads(message)))
                        if name not in names:
                            names.append(name)
                        message = dre.complete_and_start_action(handle, state)
                    dre.retract_fact(handle, payload)  # one that matched nothing is not held
                fired.append(tuple(names))
                continue
            code, state = dre.assert_event(handle, payload)
            rule = None
            if code == 0:  # handled: a rule fired; take its name and complete its action
                message = dre.start_action_for_state(handle, state)[1]
                rule = verbatim_rule(message, payload) or next(iter(json.loads(message)))
                dre.complete_and_start_action(handle, state)
            fired.append(rule)
        self.next_id = event_id
        return fired


class _PlainHost(Host):  # type: ignore[misc]  # durable ships no type information
    """durable's public API as its README uses it (Host.post); timers off, no-op actions."""

    def __init__(self, rulesets: Mapping[str, Mapping[str, Any]], facts: set[str]) -> None:
        super().__init__()
        for name, rules in rulesets.items():
            self.register_rulesets({name: {r: {**d, "run": "noop"} for r, d in rules.items()}})
        self.facts = facts
        self.next_id = 0

    def _run(self) -> None:
        pass

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        return lambda c: None

    def post_all(self, posts: list[Post]) -> None:
        for ruleset, fact, _ in posts:
            self.next_id += 1
            message = {**fact, "sid": "0", "id": self.next_id}
            with contextlib.suppress(MessageNotHandledException):  # matched nothing
                if ruleset in self.facts:
                    self.assert_fact(ruleset, message)
                    self.retract_fact(ruleset, message)
                else:
                    self.post(ruleset, message)


class _Floor:
    """The least storage a batch of decisions needs (docs/kafka.md, "Delivery guarantees"), in a
    SQLite file of its own with the store's settings: per event one state row read and one
    written, its id remembered and its decision in the outbox; the next offset; one commit;
    then the outbox read back and marked sent, and rows sent long ago forgotten."""

    def __init__(self, directory: Path) -> None:
        conn = sqlite3.connect(directory / "floor.db", isolation_level=None)
        for pragma in (
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "cache_size = -65536",
            "temp_store = MEMORY",
        ):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, at INTEGER) WITHOUT ROWID")
        conn.execute("CREATE TABLE state (id TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")
        conn.execute("CREATE TABLE positions (part INTEGER PRIMARY KEY, next INTEGER)")
        conn.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY, key BLOB, value BLOB NOT NULL,"
            " sent INTEGER NOT NULL DEFAULT 0)"
        )
        conn.execute("CREATE INDEX outbox_unsent ON outbox (id) WHERE sent = 0")
        self.conn = conn

    def store(self, rows: list[tuple[str, str, bytes]], next_offset: int) -> None:
        """`rows`: (event id, customer id, decision bytes) per event of one batch."""
        conn = self.conn
        read = "SELECT value FROM state WHERE id = ?"
        conn.execute("BEGIN IMMEDIATE")
        for _, customer, _ in rows:
            conn.execute(read, (customer,)).fetchone()
        conn.executemany("INSERT INTO seen VALUES (?, 0)", [(e,) for e, _, _ in rows])
        conn.executemany(
            "INSERT OR REPLACE INTO state VALUES (?, ?)", [(c, e.encode()) for e, c, _ in rows]
        )
        conn.executemany(
            "INSERT INTO outbox (key, value) VALUES (?, ?)", [(c.encode(), v) for _, c, v in rows]
        )
        conn.execute("INSERT OR REPLACE INTO positions VALUES (0, ?)", (next_offset,))
        conn.execute("COMMIT")
        pending = conn.execute(
            "SELECT id, key, value FROM outbox WHERE sent = 0 ORDER BY id LIMIT ?", (len(rows),)
        ).fetchall()
        conn.execute("BEGIN IMMEDIATE")
        last = pending[-1][0]
        conn.execute("UPDATE outbox SET sent = 1 WHERE id <= ? AND sent = 0", (last,))
        conn.execute("DELETE FROM outbox WHERE id <= ?", (last - 10_000,))
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------- one run


@dataclasses.dataclass
class Loop:
    """Wall and CPU nanoseconds spent in one kind of work, summed over the batches."""

    wall_ns: int = 0
    cpu_ns: int = 0

    def timed(self, work: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        result = work()
        self.cpu_ns += time.thread_time_ns() - cpu
        self.wall_ns += time.perf_counter_ns() - wall
        return result

    def rate(self, n: int) -> tuple[float, float]:
        """n per wall second, n per CPU second."""
        return n / max(self.wall_ns, 1) * 1e9, n / max(self.cpu_ns, 1) * 1e9


@dataclasses.dataclass
class Timings:
    pipeline: Loop = dataclasses.field(default_factory=Loop)
    pure: Loop = dataclasses.field(default_factory=Loop)
    bare: Loop = dataclasses.field(default_factory=Loop)
    rulehost: Loop = dataclasses.field(default_factory=Loop)
    host_post: Loop = dataclasses.field(default_factory=Loop)
    decode: Loop = dataclasses.field(default_factory=Loop)
    encode: Loop = dataclasses.field(default_factory=Loop)
    store: Loop = dataclasses.field(default_factory=Loop)
    event_wall_ns: list[int] = dataclasses.field(default_factory=list)
    event_cpu_ns: list[int] = dataclasses.field(default_factory=list)
    batch_wall_ns: list[int] = dataclasses.field(default_factory=list)
    pure_wall_ns: list[int] = dataclasses.field(default_factory=list)
    events: int = 0
    posts: int = 0
    fired: int = 0
    mismatched_decisions: int = 0
    mismatched_posts: int = 0


def _batches(n_events: int, n_customers: int, seed: int, size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for offset, raw in enumerate(generate(n_events, n_customers, seed)):
        batch.append(Record(topic="bench", partition=0, offset=offset, key=None, value=raw))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(compiled: CompiledSet, args: argparse.Namespace, label: str, context: bool) -> Timings:
    """Stream the workload through the pipeline; after each batch, replay its decisions
    through the pure decider and its posts through the bare loop (with `context`, through
    RuleHost.match and Host.post too). Only one batch of captures is held at a time."""
    t = Timings()
    pure = Decider(compiled)
    recorder = _PostRecorder(compiled.host)
    recording = Decider(dataclasses.replace(compiled, host=cast(RuleHost, recorder)))
    facts = {s.name for packs in compiled.shared.values() for s in packs}
    bare, plain = _Bare(compiled.rulesets, facts), _PlainHost(compiled.rulesets, facts)
    began, step = time.perf_counter(), max(1, args.events // 10)

    def pure_loop(cases: list[_Case]) -> None:
        decide, clock, out = pure.decide, time.perf_counter_ns, t.pure_wall_ns
        for case in cases:
            start = clock()
            decide(case.event, case.state, case.view)
            out.append(clock() - start)

    def rulehost_loop(posts: list[Post]) -> None:
        host = compiled.host
        for ruleset, fact, _ in posts:
            if host.is_fact_ruleset(ruleset):
                host.match_all(ruleset, fact)
            else:
                host.match(ruleset, fact)

    def decode_loop(records: list[Record]) -> None:
        for record in records:
            decode(record.value)

    def encode_loop(documents: list[Any]) -> list[bytes]:
        return [to_json(document) for document in documents]

    with tempfile.TemporaryDirectory(prefix="goodwill-bench-") as tmp:
        store = StateStore.open(Path(tmp))
        floor = _Floor(Path(tmp))

        def run_batch(records: list[Record]) -> None:
            processor.process(records)
            # As `goodwill run` does after each batch: the outbox goes out (here to a log
            # that keeps nothing) and is marked sent, which keeps it from growing.
            relay(store, _Discard())

        capture = _CapturingDecider(compiled)
        processor = _TimedProcessor(store, capture)
        processor.activate()
        for records in _batches(args.events, args.customers, args.seed, args.batch):
            before = t.pipeline.wall_ns
            t.pipeline.timed(lambda: run_batch(records))  # noqa: B023
            t.batch_wall_ns.append(t.pipeline.wall_ns - before)
            cases, capture.cases = capture.cases, []

            # Untimed: collect the decider's posts, and check that the replay is faithful.
            recorder.posts = []
            for case in cases:
                if recording.decide(case.event, case.state, case.view) != case.outcome:
                    t.mismatched_decisions += 1
            posts = recorder.posts

            t.pure.timed(lambda: pure_loop(cases))  # noqa: B023
            fired = t.bare.timed(lambda: bare.post_all(posts))  # noqa: B023
            t.mismatched_posts += sum(f != p[2] for f, p in zip(fired, posts, strict=True))
            if context:
                # The floor: the same records decoded, the same decisions encoded from plain
                # documents (parsed untimed) and stored in the minimal batch.
                t.decode.timed(lambda: decode_loop(records))  # noqa: B023
                documents = [json.loads(case.outcome.raw) for case in cases]
                raws = t.encode.timed(lambda: encode_loop(documents))  # noqa: B023
                rows = [
                    (case.event.event_id, case.event.customer_id or "", raw)
                    for case, raw in zip(cases, raws, strict=True)
                ]
                t.store.timed(lambda: floor.store(rows, records[-1].offset + 1))  # noqa: B023
                t.rulehost.timed(lambda: rulehost_loop(posts))  # noqa: B023
                t.host_post.timed(lambda: plain.post_all(posts))  # noqa: B023

            t.posts += len(posts)
            t.fired += sum(
                len(rule) if isinstance(rule, tuple) else rule is not None for rule in fired
            )
            t.events += len(records)
            if t.events % step < len(records) or t.events == args.events:
                print(
                    f"{label}: {t.events:,}/{args.events:,} events"
                    f" ({100 * t.events // args.events}%), pipeline"
                    f" {t.pipeline.rate(t.events)[0]:,.0f}/s,"
                    f" {time.perf_counter() - began:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
        t.event_wall_ns, t.event_cpu_ns = processor.wall_ns, processor.cpu_ns
        store.close()
        floor.close()
    return t


# ---------------------------------------------------------------- figures


def _pct(values_ns: list[int], q: float) -> float:
    """The q-quantile of sorted nanoseconds, in microseconds."""
    return round(values_ns[min(len(values_ns) - 1, int(q * len(values_ns)))] / 1000, 1)


def figures(t: Timings) -> dict[str, Any]:
    """Rates per wall second (what a user sees) and per CPU second (what the code costs,
    whatever else the machine is running); latencies in wall time unless named cpu."""
    event_wall, event_cpu = sorted(t.event_wall_ns), sorted(t.event_cpu_ns)
    batch, pure = sorted(t.batch_wall_ns), sorted(t.pure_wall_ns)
    pipeline, pipeline_cpu = t.pipeline.rate(t.events)
    decide, decide_cpu = t.pure.rate(t.events)
    bare, bare_cpu = t.bare.rate(t.events)  # events whose posts the bare loop made, per s
    return {
        "pipeline": {
            "decisions_per_s": round(pipeline),
            "decisions_per_cpu_s": round(pipeline_cpu),
            "cpu_us_per_decision": round(1e6 / pipeline_cpu, 1),
            "p50_us": _pct(event_wall, 0.50),
            "p99_us": _pct(event_wall, 0.99),
            "p99_cpu_us": _pct(event_cpu, 0.99),
            "batch_p50_ms": round(_pct(batch, 0.50) / 1000, 1),
            "batch_p99_ms": round(_pct(batch, 0.99) / 1000, 1),
            # Batch time outside the records: storing positions, and the commit.
            "commit_us_per_decision": round((sum(batch) - sum(event_wall)) / t.events / 1e3, 1),
        },
        "pure": {
            "decisions_per_s": round(decide),
            "decisions_per_cpu_s": round(decide_cpu),
            "cpu_us_per_decision": round(1e6 / decide_cpu, 1),
            "p50_us": _pct(pure, 0.50),
            "p99_us": _pct(pure, 0.99),
            "same_as_pipeline": t.mismatched_decisions == 0,
        },
        "bare": {
            "posts": t.posts,
            "posts_per_event": round(t.posts / t.events, 3),
            "fired_per_event": round(t.fired / t.events, 3),
            "posts_per_s": round(t.bare.rate(t.posts)[0]),
            "events_per_s": round(bare),
            "events_per_cpu_s": round(bare_cpu),
            "cpu_us_per_event": round(1e6 / bare_cpu, 2),
            "rulehost_match_posts_per_s": round(t.rulehost.rate(t.posts)[0]),
            "host_post_posts_per_s": round(t.host_post.rate(t.posts)[0]),
            "same_rules_fired": t.mismatched_posts == 0,
        },
        "floor": floor(t),
        "ratio_vs_bare_durable_rules": round(pipeline / bare, 3),
        "ratio_vs_bare_durable_rules_cpu": round(pipeline_cpu / bare_cpu, 3),
        "ratio_pure_vs_bare_durable_rules": round(decide / bare, 3),
        "ratio_pure_vs_bare_durable_rules_cpu": round(decide_cpu / bare_cpu, 3),
    }


def floor(t: Timings) -> dict[str, Any] | None:
    """CPU us per event of each part the contract makes a decision pay, their sum, and the
    most the pipeline could reach if it cost nothing else (None: the floor was not run)."""
    if not t.store.cpu_ns:
        return None
    parts = {
        "decode_us": t.decode.cpu_ns,
        "encode_us": t.encode.cpu_ns,
        "store_us": t.store.cpu_ns,
        "durable_rules_us": t.bare.cpu_ns,
    }
    per = {name: ns / t.events / 1e3 for name, ns in parts.items()}
    total = sum(per.values())
    pipeline_cpu = t.pipeline.cpu_ns / t.events / 1e3
    return {name: round(us, 1) for name, us in per.items()} | {
        "sum_us": round(total, 1),
        "ceiling_decisions_per_cpu_s": round(1e6 / total),
        "ceiling_ratio_vs_bare_durable_rules": round(per["durable_rules_us"] / total, 3),
        # A pure decision pays durable_rules and the encoding only (its input is decoded).
        "ceiling_ratio_pure": round(
            per["durable_rules_us"] / (per["durable_rules_us"] + per["encode_us"]), 3
        ),
        "pipeline_over_floor": round(pipeline_cpu / total, 2),
    }


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _target(met: bool, text: str) -> str:
    return f"  (target {text}: {'met' if met else 'NOT met'})"


def _print(rows: list[tuple[str, str]]) -> None:
    width = max(len(key) for key, value in rows if value)  # section titles stand alone
    for key, value in rows:
        print(f"{key:<{width}}  {value}" if value else key)


def report(f: dict[str, Any], header: str) -> None:
    p, d, b = f["pipeline"], f["pure"], f["bare"]
    ratio, yes = f["ratio_vs_bare_durable_rules"], {True: "yes", False: "NO"}
    rate_met = p["decisions_per_s"] >= TARGETS["decisions_per_s"]
    _print(
        [
            (header, ""),
            (
                "(b) pipeline: decode, dedupe, fold, enrich, decide, outbox, commit, publish",
                "",
            ),
            ("  decisions/s", f"{p['decisions_per_s']:,}" + _target(rate_met, ">= 20,000")),
            ("  decisions per CPU second", f"{p['decisions_per_cpu_s']:,}"),
            (
                "  per event p50 / p99 (us)",
                f"{p['p50_us']:,} / {p['p99_us']:,}, commit apart"
                + _target(p["p99_us"] <= TARGETS["p99_us"], "p99 <= 1,000"),
            ),
            ("  per event p99 in CPU time (us)", f"{p['p99_cpu_us']:,}"),
            ("  commit + publish per decision (us)", f"{p['commit_us_per_decision']}"),
            ("  per batch p50 / p99 (ms)", f"{p['batch_p50_ms']} / {p['batch_p99_ms']}"),
            ("(a) pure decision: Decider.decide with precomputed state facts", ""),
            ("  decisions/s", f"{d['decisions_per_s']:,}"),
            ("  decisions per CPU second", f"{d['decisions_per_cpu_s']:,}"),
            ("  per decision p50 / p99 (us)", f"{d['p50_us']:,} / {d['p99_us']:,}"),
            ("  same decisions as the pipeline", yes[d["same_as_pipeline"]]),
            ("bare durable_rules: C engine, same rulesets, same lean facts", ""),
            ("  posts (per event)", f"{b['posts']:,} ({b['posts_per_event']})"),
            ("  posts/s", f"{b['posts_per_s']:,}  (same rules: {yes[b['same_rules_fired']]})"),
            ("  events/s (per CPU second)", f"{b['events_per_s']:,} ({b['events_per_cpu_s']:,})"),
            ("  for context: RuleHost.match posts/s", f"{b['rulehost_match_posts_per_s']:,}"),
            ("  for context: durable Host.post posts/s", f"{b['host_post_posts_per_s']:,}"),
            (
                "ratio_vs_bare_durable_rules",
                f"{ratio} (pipeline; CPU {f['ratio_vs_bare_durable_rules_cpu']})"
                + _target(ratio >= TARGETS["ratio"], ">= 0.5"),
            ),
            (
                "ratio, pure decision",
                f"{f['ratio_pure_vs_bare_durable_rules']}"
                f" (CPU {f['ratio_pure_vs_bare_durable_rules_cpu']})",
            ),
            *_floor_rows(f["floor"]),
            ("rss max (MB)", f"{f['rss_mb']}"),
        ]
    )


def _floor_rows(fl: dict[str, Any] | None) -> list[tuple[str, str]]:
    if fl is None:
        return []
    rate, ratio = fl["ceiling_decisions_per_cpu_s"], fl["ceiling_ratio_vs_bare_durable_rules"]
    return [
        ("floor: the contract's parts alone, CPU us per event", ""),
        ("  decode the record (events.codec.decode)", f"{fl['decode_us']}"),
        ("  encode the decision (pydantic to_json)", f"{fl['encode_us']}"),
        ("  store (minimal SQLite batch + relay)", f"{fl['store_us']}"),
        ("  durable_rules (the bare loop)", f"{fl['durable_rules_us']}"),
        ("  sum", f"{fl['sum_us']}"),
        (
            "  ceiling: decisions per CPU second",
            f"{rate:,}"
            + ("  (below the 20,000 target)" if rate < TARGETS["decisions_per_s"] else ""),
        ),
        (
            "  ceiling: ratio_vs_bare_durable_rules",
            f"{ratio}" + ("  (below the 0.5 target)" if ratio < TARGETS["ratio"] else ""),
        ),
        ("  ceiling: ratio, pure decision", f"{fl['ceiling_ratio_pure']}"),
        ("  pipeline CPU / floor", f"{fl['pipeline_over_floor']}x"),
    ]


# ---------------------------------------------------------------- --policies-scale

# Share of the generated policies per event type: most listen where reps act.
SCALE_TYPES = {
    "remedy.requested": 25,
    "contact.opened": 15,
    "item.defect_reported": 15,
    "shipment.delayed": 10,
    "order.placed": 10,
    "order.shipped": 5,
    "contact.transferred": 5,
    "case.resolved": 5,
    "shipment.lost": 5,
    "remedy.fulfilled": 5,
}
_WORDS = ["gold", "silver", "web", "phone", "store", "expedited", "overnight", "credit", "refund"]


def _spread(n: int) -> list[str]:
    """`n` event types in SCALE_TYPES proportions (largest remainder, heavier types first)."""
    total = sum(SCALE_TYPES.values())
    exact = {t: n * w / total for t, w in SCALE_TYPES.items()}
    counts = {t: int(x) for t, x in exact.items()}
    for t in sorted(exact, key=lambda t: counts[t] - exact[t])[: n - sum(counts.values())]:
        counts[t] += 1
    return [t for t, c in counts.items() for _ in range(c)]


def _leaf(rng: random.Random, on: str, flags: bool) -> str:
    """One comparison on an event, customer or order field, mostly past the workload's range
    (a flag alone, often true, only where `flags`: in a conjunction)."""
    fields = [
        f
        for f in vocabulary(on, False).values()
        if f.path.split(".")[0] in ("event", "customer", "order")
        and not f.path.endswith((".id", ".type", "_id", ".source"))
        and (flags or f.type != "bool")
    ]
    f = rng.choice(fields)
    if f.type == "money":
        return f"{f.path} > {rng.choice([500, 1000, 2500, 5000])}"
    if f.type == "number":
        return f"{f.path} >= {rng.choice([5, 10, 30, 100])}"
    if f.type == "text":
        return f"{f.path} == '{rng.choice(_WORDS)}'"
    return f.path if rng.random() < 0.5 else f"not {f.path}"


def write_policies(directory: Path, n: int, seed: int, *, catch_alls: bool = True) -> None:
    """`n` valid policies with 1-3 rules of 2-3 comparisons each, mostly not matching;
    about one in fifty ends with a rule that always applies. Without `catch_alls`, only
    the first `BASE` policies may have one, so a larger set does the same work per event
    plus its extra policies' matching. The first `BASE` policies are the same either way.
    Beside them, the library's budgets.yaml: the workload allocates its budgets (an
    allocation of a budget the set does not define is dead-lettered)."""
    (directory / "budgets.yaml").write_bytes((POLICIES / "budgets.yaml").read_bytes())
    rng = random.Random(seed)
    then = "    then:\n      authorize: [{remedy: credit, up_to: 5}]\n      say: Generated.\n"
    for i, on in enumerate(_spread(n)):
        rules = []
        for r in range(rng.randint(1, 3)):
            conjunction = rng.random() >= 0.2
            leaves = (_leaf(rng, on, conjunction) for _ in range(rng.randint(2, 3)))
            when = (" and " if conjunction else " or ").join(leaves)
            rules.append(f'  - name: rule-{r}\n    when: "{when}"\n{then}')
        if rng.random() < 0.02 and (catch_alls or i < BASE):
            rules.append(f"  - name: otherwise\n{then}")
        (directory / f"gen-{i:03d}.yaml").write_text(
            f"policy: gen-{i:03d}\nversion: 1\nowner: bench\n"
            "principle: Generated for bench/decide.py --policies-scale.\n"
            f"summary: A generated policy whose conditions rarely match.\non: {on}\nrules:\n"
            + "".join(rules),
            encoding="utf-8",
        )


def _scale_run(args: argparse.Namespace, n: int, catch_alls: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="goodwill-policies-") as tmp:
        write_policies(Path(tmp), n, args.seed, catch_alls=catch_alls)
        compiled = load(Path(tmp))
    label = f"{n} policies" + ("" if catch_alls else ", extras rarely apply")
    return figures(run(compiled, args, label, context=False))


def scale(args: argparse.Namespace, header: str) -> dict[str, Any]:
    """The cost per decision with 10 and with 300 generated policies, in CPU time, twice:

    - `same_work`: the 290 extra policies have no catch-all rules, so few of their rules
      fire (with seed 7, 0.10 -> 0.84 rules per event: their `or` rules on a common value
      such as `order.channel == 'web'` do match) and the growth is mostly what the extra
      policies cost to match. This is the figure the target (<= 2x) is judged on. Printed
      with it: the least growth durable_rules' own extra cost on the same posts leaves.
    - `proportional`: the extras have catch-alls in the same proportion (1 in 50), so
      ~19x more rules fire per event and each decision carries ~19x more grants, `why`
      entries and words. Reported so the cost of firing rules is visible too.
    """
    small = _scale_run(args, BASE, catch_alls=True)
    out: dict[str, Any] = {}
    for name, catch_alls in (("same_work", False), ("proportional", True)):
        large = _scale_run(args, LARGE, catch_alls=catch_alls)
        out[name] = _growth({BASE: small, LARGE: large}, f"{header} [{name}]")
    growth = out["same_work"]["pure_cpu_us"]["growth"]
    least = out["same_work"]["least_pure_growth"]
    _print(
        [
            (
                "growth per decision, extras rarely apply",
                f"{growth}x" + _target(growth <= TARGETS["scale_growth"], "<= 2x"),
            ),
            ("  of which durable_rules' own posts alone", f"{least}x"),
        ]
    )
    return out


def _growth(per: dict[int, dict[str, Any]], header: str) -> dict[str, Any]:
    measures = {
        "posts_per_event": ("bare", "posts per event"),
        "fired_per_event": ("bare", "rules fired per event"),
        "pure_cpu_us": ("pure", "(a) pure decision, CPU us per decision"),
        "pipeline_cpu_us": ("pipeline", "(b) pipeline, CPU us per decision"),
        "bare_cpu_us": ("bare", "bare durable_rules, CPU us per event"),
        "pure_p99_us": ("pure", "(a) pure decision p99 us"),
        "pipeline_p99_us": ("pipeline", "(b) pipeline p99 us (commit apart)"),
    }
    keys = {"pure_cpu_us": "cpu_us_per_decision", "pipeline_cpu_us": "cpu_us_per_decision"}
    keys |= {
        "bare_cpu_us": "cpu_us_per_event",
        "pure_p99_us": "p99_us",
        "pipeline_p99_us": "p99_us",
    }
    out: dict[str, Any] = {}
    rows = [(header, ""), ("", f"{BASE} policies -> {LARGE} policies (growth)")]
    for name, (part, title) in measures.items():
        small, large = (per[n][part][keys.get(name, name)] for n in (BASE, LARGE))
        out[name] = {
            BASE: small,
            LARGE: large,
            "growth": round(large / small, 2) if small else None,
        }
        rows.append((title, f"{small} -> {large} ({out[name]['growth']}x)"))
    extra = out["posts_per_event"][LARGE] - out["posts_per_event"][BASE]
    for name in ("pure_cpu_us", "bare_cpu_us"):
        out[f"{name}_per_extra_post"] = round((out[name][300] - out[name][10]) / extra, 2)
    rows.append(
        (
            "CPU us per extra post: decider / bare",
            f"{out['pure_cpu_us_per_extra_post']} / {out['bare_cpu_us_per_extra_post']}",
        )
    )
    # The least the decision's growth can be: durable_rules' own extra cost on the same
    # posts, added to the small set's decision, with nothing of the decider's own on top.
    pure, bare = out["pure_cpu_us"], out["bare_cpu_us"]
    out["least_pure_growth"] = round((pure[BASE] + bare[LARGE] - bare[BASE]) / pure[BASE], 2)
    rows.append(
        ("least growth durable_rules leaves (a)", f"{out['least_pure_growth']}x"),
    )
    _print(rows)
    return out


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, help="events (200,000; 50,000 with --policies-scale)")
    parser.add_argument("--customers", type=int, help="distinct customers (a quarter of --events)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 events, 5,000")
    parser.add_argument("--batch", type=int, default=500, help="records per transaction (500)")
    parser.add_argument("--seed", type=int, default=7, help="workload and policy seed (7)")
    parser.add_argument("--policies", type=Path, default=POLICIES, help="the policy directory")
    parser.add_argument(
        "--policies-scale", action="store_true", help="compare 10 with 300 generated policies"
    )
    args = parser.parse_args(argv)
    # --policies-scale posts ~25x more per event: its default run is a quarter as long.
    size = 20_000 if args.quick else 50_000 if args.policies_scale else 200_000
    args.events = size if args.events is None else args.events
    args.customers = args.events // 4 if args.customers is None else args.customers
    if min(args.events, args.customers, args.batch) < 1:
        parser.error("--events, --customers and --batch must be at least 1")
    today = datetime.now(UTC).date().isoformat()
    header = (
        f"bench/decide.py {today}: {args.events:,} events, {args.customers:,} customers,"
        f" batch {args.batch}, seed {args.seed}, python {sys.version.split()[0]}"
    )
    result: dict[str, Any] = {"bench": "decide", "date": today, "events": args.events}
    result |= {"customers": args.customers, "batch": args.batch, "seed": args.seed}
    if args.policies_scale:
        result |= {"mode": "policies-scale", **scale(args, header)}
    else:
        try:
            compiled = load(args.policies)
        except PolicyError as err:
            sys.exit(f"{err.render()}\nbench/decide.py: the policy set was refused")
        n = len(compiled.policy_set.policies)
        f = figures(run(compiled, args, "decide", context=True)) | {"rss_mb": _rss_mb()}
        report(f, f"{header}, {n} policies")
        result |= {"mode": "default", "policies": n, **f}
    result["rss_mb"] = _rss_mb()
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
