"""`goodwill redrive` on the embedded backend: a dead letter, once its cause is fixed, is
sent again and decided; sending it twice decides it once. (Kafka: tests/test_cli_kafka.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.compile import load
from engine.embedded import run_embedded
from engine.report import Printer
from engine.state import StateStore
from events.log import FileLog
from tests.test_cli import EXAMPLE, ROOT, goodwill

FAULT = "ev-000150"  # a remedy.requested of the example stream


def _decided(output: str) -> list[str]:
    lines = [json.loads(line) for line in output.splitlines()]
    return [o["data"]["caused_by"] for o in lines if o["type"] == "decision.made"]


def test_a_dead_letter_sent_again_is_decided_once_its_cause_is_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    apply_event = StateStore.apply_event

    def faulty(store: StateStore, event: Any) -> None:  # a fault only this event reaches
        if event.event_id == FAULT:
            raise ZeroDivisionError("division by zero")
        apply_event(store, event)

    monkeypatch.setattr(StateStore, "apply_event", faulty)
    summary = run_embedded(load(ROOT / "policies"), data, EXAMPLE, batch=100)
    monkeypatch.undo()  # the fix is deployed
    assert summary.tally.deadlettered["processing_failed"] == 1
    Printer(json_lines=False, quiet=False, currency="USD").summary(summary)
    assert "Goodwill failed to decide 1 valid event(s)" in capsys.readouterr().out
    original = next(line for line in EXAMPLE.read_bytes().splitlines() if FAULT.encode() in line)

    listed = goodwill("redrive", "--data-dir", data, "--embedded", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert "processing_failed  ZeroDivisionError: division by zero" in listed.stdout
    assert "would send 1 dead letter(s) (processing_failed)" in listed.stdout
    assert "left alone: invalid_json 1, not_utf8 1, schema_invalid 3" in listed.stdout
    with FileLog.open(data / "log") as log:
        assert log.end_offset("goodwill.events", 0) == 0  # a dry run sends nothing

    sent = goodwill("redrive", "--data-dir", data, "--embedded")
    assert sent.returncode == 0, sent.stderr
    assert "sent 1 dead letter(s)" in sent.stdout
    with FileLog.open(data / "log") as log:
        (record,) = log.read("goodwill.events", 0, 0, 10)
    assert record.value == original

    first = goodwill("run", "--data-dir", data, "--json")
    assert first.returncode == 0, first.stderr
    assert _decided(first.stdout) == [FAULT]

    again = goodwill("redrive", "--data-dir", data, "--embedded")
    assert again.returncode == 0, again.stderr
    second = goodwill("run", "--data-dir", data, "--json")
    assert second.returncode == 0, second.stderr
    assert _decided(second.stdout) == []  # already decided: skipped by its event id


def test_an_unknown_reason_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    result = goodwill("redrive", "--data-dir", tmp_path, "--reason", "schema_invald")
    assert result.returncode == 2
    assert result.stderr.startswith("goodwill: unknown reason 'schema_invald'; did you mean")
    assert "'schema_invalid'" in result.stderr
    assert not (tmp_path / "log").exists()


def test_a_data_dir_with_no_embedded_log_is_refused_and_left_uncreated(tmp_path: Path) -> None:
    mistyped = tmp_path / "goodwil-data"
    for args in (["--dry-run"], []):
        done = goodwill("redrive", "--data-dir", mistyped, "--embedded", *args)
        assert done.returncode == 1
        expected = f"goodwill: no embedded log in {mistyped}: nothing was run or emitted there\n"
        assert done.stderr == expected
    assert not mistyped.exists()
