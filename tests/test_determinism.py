"""Where a batch or a run ends changes nothing: every output and the state are the same bytes.

Guarantee 1 (README, "Guarantees") says the same log and policy set give byte-identical
decisions. A service cuts its input wherever a poll or a restart happens to fall, so the
decisions must not depend on that: here the example is decided in one run of batches of
500, then again cut at random lines into runs (each a process restart: the store closed
and opened again) of batches of random sizes, and the outputs and the state digest are
compared.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.compile import CompiledSet, load
from engine.decide import Decider
from engine.service import DECISIONS_TOPIC, Processor, relay
from engine.state import StateStore
from events.log import Headers, Record

ROOT = Path(__file__).resolve().parent.parent
LINES = (ROOT / "examples" / "shop-day.jsonl").read_bytes().splitlines()
RECORDS = [Record("file:example", 0, i, None, line) for i, line in enumerate(LINES, start=1)]


class Outputs:
    """Every output published, in order: (topic, key, value)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes | None, bytes]] = []

    def append(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        self.published.append((topic, key, value))

    def flush(self) -> None:
        pass


def decide(compiled: CompiledSet, data: Path, runs: list[list[int]]) -> tuple[Outputs, str]:
    """Decide RECORDS in runs of batches of the given sizes; the outputs and state digest."""
    out, at = Outputs(), 0
    for sizes in runs:
        store = StateStore.open(data)
        try:
            processor = Processor(store, Decider(compiled))
            processor.activate()
            for size in sizes:
                processor.process(RECORDS[at : at + size])
                relay(store, out)
                at += size
            digest = store.digest()
        finally:
            store.close()
    assert at == len(RECORDS)
    return out, digest


@pytest.fixture(scope="module")
def current() -> CompiledSet:
    return load(ROOT / "policies")


@pytest.fixture(scope="module")
def in_one_run(
    current: CompiledSet, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Outputs, str]:
    sizes = [500] * (len(RECORDS) // 500) + [len(RECORDS) % 500]
    return decide(current, tmp_path_factory.mktemp("one") / "state.db", [sizes])


@st.composite
def cuts(draw: st.DrawFn) -> list[list[int]]:
    """Runs of batches covering every record: sizes of 1 to 600, at most 6 runs."""
    runs: list[list[int]] = [[]]
    left = len(RECORDS)
    while left:
        size = min(left, draw(st.integers(1, 600)))
        runs[-1].append(size)
        left -= size
        if left and len(runs) < 6 and draw(st.booleans()):
            runs.append([])  # a restart here
    return runs


@settings(max_examples=20, derandomize=True)
@given(runs=cuts())
def test_where_batches_and_runs_end_changes_no_output(
    runs: list[list[int]],
    current: CompiledSet,
    in_one_run: tuple[Outputs, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    expected, digest = in_one_run
    got, got_digest = decide(current, tmp_path_factory.mktemp("cut") / "state.db", runs)
    decisions = [o for o in expected.published if o[0] == DECISIONS_TOPIC]
    assert len(decisions) > 600  # the example's decisions, escalations, alert, activation
    assert got.published == expected.published
    assert got_digest == digest
