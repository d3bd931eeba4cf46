"""Writes that fail mid-run, on the embedded backend: the run stops in one line, and the
next one goes on to the outputs and the state of a run that never failed, nothing
published twice.

The real failures come from the kernel: the run is a child process whose files may not
grow past a limit (RLIMIT_FSIZE, with SIGXFSZ ignored), so some write of SQLite or of the
log fails with EFBIG wherever that limit falls.
"""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.compile import load
from engine.embedded import run_embedded
from engine.state import StateStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop-day.jsonl"
LOGS = ("log/goodwill.decisions.jsonl", "log/goodwill.deadletter.jsonl")


def _run(data: Path, file_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit_files() -> None:
        assert file_limit is not None
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    command = ["run", str(EXAMPLE), "--data-dir", str(data), "--batch", "100", "--quiet"]
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        preexec_fn=None if file_limit is None else limit_files,
    )


def _digest(data: Path) -> str:
    store = StateStore.open(data / "state.db")
    try:
        return store.digest()
    finally:
        store.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("clean") / "data"
    assert _run(data).returncode == 0
    return data


def test_files_that_cannot_grow_stop_the_run_in_one_line_and_the_next_run_loses_nothing(
    clean: Path, tmp_path: Path
) -> None:
    # Limits below what a whole run writes (its state file and log reach about 0.7 MB,
    # the write-ahead log more), so each fails at some write: where depends on the limit.
    failed = 0
    for file_limit in range(100_000, 1_400_000, 260_000):
        data = tmp_path / str(file_limit)
        first = _run(data, file_limit)
        assert first.returncode in (0, 1), first.stderr
        if first.returncode == 1:
            failed += 1
            last = first.stderr.splitlines()[-1]
            assert last.startswith("goodwill: ") and "Traceback" not in first.stderr, last
        again = _run(data)
        assert again.returncode == 0, again.stderr
        for log in LOGS:  # every output once, in the order of a run that never failed
            assert (data / log).read_bytes() == (clean / log).read_bytes(), (file_limit, log)
        assert _digest(data) == _digest(clean), file_limit  # nothing folded twice
    assert failed >= 3  # the limits did stop runs: this is not a test of clean runs


def test_outputs_a_run_published_but_did_not_mark_are_not_published_again(
    clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit that records a chunk as published fails after the log has it (a full
    disk, or a kill at that moment): the next run finds the chunk in the log."""
    compiled = load(ROOT / "policies")
    data = tmp_path / "data"
    mark = StateStore.outbox_mark_sent
    calls = []

    def fails_the_third_time(store: StateStore, rowids: list[int]) -> None:
        calls.append(len(rowids))
        if len(calls) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        mark(store, rowids)

    monkeypatch.setattr(StateStore, "outbox_mark_sent", fails_the_third_time)
    with pytest.raises(sqlite3.OperationalError):
        run_embedded(compiled, data, EXAMPLE, 100)
    published = (data / LOGS[0]).read_bytes().count(b"\n")
    assert 0 < published < 611  # some outputs were in the log, unmarked, when it stopped
    monkeypatch.setattr(StateStore, "outbox_mark_sent", mark)

    summary = run_embedded(compiled, data, EXAMPLE, 100)
    assert summary.tally.read > 0
    for log in LOGS:
        assert (data / log).read_bytes() == (clean / log).read_bytes(), log
    assert _digest(data) == _digest(clean)
