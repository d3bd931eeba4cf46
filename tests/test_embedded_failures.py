"""Embedded runs that stop mid-way, by a write that fails or by kill -9: the next run goes
on to the outputs and the state of a run that never stopped, nothing published twice.

The failures are real: a write fails because the kernel refuses it (the run is a child
process whose files may not grow past a limit, RLIMIT_FSIZE, with SIGXFSZ ignored, so
some write of SQLite or of the log fails with EFBIG wherever that limit falls), and a
kill is SIGKILL at some point of a run reading a larger stream.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.compile import load
from engine.embedded import run_embedded
from engine.state import StateStore
from events.log import FileLog
from tests.limits import goodwill_limited
from tests.test_kafka_service import _invalid

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop-day.jsonl"
LOGS = ("log/goodwill.decisions.jsonl", "log/goodwill.deadletter.jsonl")


def _run(data: Path, file_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    command = ["run", str(EXAMPLE), "--data-dir", str(data), "--batch", "100", "--quiet"]
    return goodwill_limited(file_limit, *command)


def _logs(data: Path) -> dict[str, bytes | None]:
    return {name: (data / name).read_bytes() if (data / name).exists() else None for name in LOGS}


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
            assert last.endswith("then run the same command again: what was stored is kept")
        again = _run(data)
        assert again.returncode == 0, again.stderr
        # Every output once, in the order of a run that never failed.
        assert _logs(data) == _logs(clean), file_limit
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
    assert _logs(data) == _logs(clean)
    assert _digest(data) == _digest(clean)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 6,000-event stream, and a data directory that decided it uninterrupted."""
    made = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workload.py"), "--events", "6000"],
        capture_output=True,
        check=True,
    )
    directory = tmp_path_factory.mktemp("stream")
    path = directory / "big.jsonl"
    path.write_bytes(made.stdout)
    data = directory / "clean"
    assert _goodwill("run", path, "--data-dir", data, "--quiet").wait(timeout=300) == 0
    return path, data


def _goodwill(*args: str | Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import main; main()", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


@pytest.mark.parametrize("published", [1, 1_500, 4_000])
def test_a_run_killed_at_any_point_is_gone_on_from_as_if_it_had_not_been(
    stream: tuple[Path, Path], tmp_path: Path, published: int
) -> None:
    path, clean = stream
    data = tmp_path / "data"
    log = data / LOGS[0]
    run = _goodwill("run", path, "--data-dir", data, "--batch", "200", "--quiet")
    deadline = time.monotonic() + 120
    # Until the log holds `published` outputs; polled, as nothing else tells.
    while run.poll() is None and time.monotonic() < deadline:
        if log.exists() and log.read_bytes().count(b"\n") >= published:
            break
        time.sleep(0.005)
    assert run.poll() is None, "the run ended before it was killed"
    run.kill()
    assert run.wait(timeout=60) == -signal.SIGKILL
    assert _goodwill("run", path, "--data-dir", data, "--quiet").wait(timeout=300) == 0
    assert _logs(data) == _logs(clean)
    assert _digest(data) == _digest(clean)


def test_emit_to_a_full_embedded_log_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    good = [line for line in EXAMPLE.read_bytes().splitlines()[:200] if not _invalid(line)]
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(good) + b"\n")
    data = tmp_path / "data"
    log = data / "log" / "goodwill.events.jsonl"

    full = goodwill_limited(20_000, "emit", str(source), "--data-dir", str(data))
    assert full.returncode == 1
    assert full.stderr.splitlines()[-1] == (
        f"goodwill: {log}: File too large; free space (or raise the quota or the file-size"
        " limit), then run the same command again: what was stored is kept"
    )
    again = goodwill_limited(None, "emit", str(source), "--data-dir", str(data))
    assert again.returncode == 0, again.stderr
    with FileLog.open(data / "log") as opened:  # the torn line is cut; the rest reads
        sent = opened.read("goodwill.events", 0, 0, 1_000)
    ids = [json.loads(line)["event_id"] for line in good]
    assert 0 < len(sent) - len(ids) < len(ids)  # the first try stored some, not all
    assert [json.loads(r.value)["event_id"] for r in sent[-len(ids) :]] == ids
