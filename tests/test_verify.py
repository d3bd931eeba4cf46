"""`goodwill verify`: a history's inputs decided again, every output compared byte for byte."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.archive import SETS_DIR, keep, kept
from engine.cli import main
from engine.compile import CompiledSet, load
from engine.decide import Decider
from engine.embedded import EVENTS_TOPIC, file_records, run_embedded
from engine.verdict import first_difference, report
from engine.verify import verify
from events.log import scan_topic
from events.models import Envelope

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop-day.jsonl"
LOG = Path("log") / "goodwill.decisions.jsonl"


@pytest.fixture(scope="module")
def current() -> CompiledSet:
    return load(ROOT / "policies")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, current: CompiledSet) -> Path:
    """The example decided into a data directory, as `goodwill run` decides it."""
    data = tmp_path_factory.mktemp("history") / "data"
    run_embedded(current, data, EXAMPLE, 500)
    return data


def copy_of(history: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(history, data)
    return data


def recorded(data: Path) -> list[dict[str, Any]]:
    """The outputs of the data directory's decisions log, as documents."""
    return [json.loads(json.loads(line)["v"]) for line in (data / LOG).read_text().splitlines()]


def rewrite(data: Path, change: Callable[[list[dict[str, Any]]], None]) -> None:
    """Change the decisions log's lines (each {"o", "k", "v", "h"}), then number them again."""
    path = data / LOG
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    change(lines)
    for offset, line in enumerate(lines):
        line["o"] = offset
    text = "".join(json.dumps(x, ensure_ascii=False, separators=(",", ":")) + "\n" for x in lines)
    path.write_text(text)


def halves(tmp_path: Path, copy_of_line: int | None = None) -> tuple[Path, Path]:
    """The example's first 300 lines and the rest, as two files; with `copy_of_line`, a
    copy of that line of the first amid the second."""
    lines = EXAMPLE.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"".join(lines[:300]))
    copy = [] if copy_of_line is None else lines[copy_of_line : copy_of_line + 1]
    second.write_bytes(b"".join(lines[300:400] + copy + lines[400:]))
    return first, second


def with_limit(tmp_path: Path, old: str, new: str) -> CompiledSet:
    """The library with one line of goodwill-by-lifetime-value changed."""
    policies = tmp_path / "changed"
    shutil.copytree(ROOT / "policies", policies)
    f = policies / "goodwill-by-lifetime-value.yaml"
    assert old in f.read_text()
    f.write_text(f.read_text().replace(old, new))
    return load(policies)


def test_every_recorded_output_is_made_again_byte_for_byte(
    history: Path, current: CompiledSet
) -> None:
    outputs = recorded(history)
    types = Counter(o["type"] for o in outputs)
    activations = types.pop("policy_set.activated")
    for batch in (500, 37):  # a replay cut into other batches decides the same
        v = verify(history, file_records(EXAMPLE, 1), {current.hash: current}, batch)
        assert v.ok and not v.mismatches
        assert v.reproduced == types  # decisions, follow-up escalations and the alert
        assert v.recorded == len(outputs) - activations and v.activations == activations
        assert v.decided_by == {current.hash: types["decision.made"]}
        assert v.deadlettered == 7  # the example's bad lines, dead-lettered again


def test_a_changed_decision_is_named_with_the_field_that_differs(
    history: Path, current: CompiledSet, tmp_path: Path
) -> None:
    data = copy_of(history, tmp_path)
    changed: list[str] = []

    def raise_a_grant(lines: list[dict[str, Any]]) -> None:
        for line in lines:
            doc = json.loads(line["v"])
            if doc["type"] == "decision.made" and doc["data"]["grants"]:
                was = doc["data"]["grants"][0]["up_to"]
                line["v"] = line["v"].replace(f'"up_to":"{was}"', f'"up_to":"9{was}"', 1)
                changed.extend([doc["event_id"], was])
                return

    rewrite(data, raise_a_grant)
    v = verify(data, file_records(EXAMPLE, 1), {current.hash: current})
    assert not v.ok and v.counts == {"differs": 1}
    [m] = v.mismatches
    assert (m.kind, m.ident) == ("differs", changed[0])
    assert m.detail == f'data.grants[0].up_to: recorded "9{changed[1]}", replayed "{changed[1]}"'


def test_an_output_under_another_key_differs_by_its_key(
    history: Path, current: CompiledSet, tmp_path: Path
) -> None:
    data = copy_of(history, tmp_path)
    moved = recorded(history)[50]
    customer = moved["customer_id"]

    def rekey(lines: list[dict[str, Any]]) -> None:
        lines[50]["k"] = "c-elsewhere"

    rewrite(data, rekey)
    v = verify(data, file_records(EXAMPLE, 1), {current.hash: current})
    assert [(m.kind, m.ident, m.detail) for m in v.mismatches] == [
        ("differs", moved["event_id"], f'the key: recorded "c-elsewhere", replayed "{customer}"')
    ]


def test_an_output_lost_from_the_log_is_made_by_the_replay_alone(
    history: Path, current: CompiledSet, tmp_path: Path
) -> None:
    data = copy_of(history, tmp_path)
    lost = recorded(history)[100]
    rewrite(data, lambda lines: lines.pop(100))
    v = verify(data, file_records(EXAMPLE, 1), {current.hash: current})
    assert v.counts == {"extra": 1}
    assert [(m.kind, m.ident) for m in v.mismatches] == [("extra", lost["event_id"])]


def test_outputs_of_inputs_not_given_are_missing(
    history: Path, current: CompiledSet, tmp_path: Path
) -> None:
    lines = EXAMPLE.read_bytes().splitlines(keepends=True)
    first = tmp_path / "first.jsonl"
    first.write_bytes(b"".join(lines[:300]))
    later = {
        m[1].decode() for line in lines[300:] if (m := re.search(rb'"event_id":"([^"]+)"', line))
    }
    v = verify(history, file_records(first, 1), {current.hash: current}, keep=3)
    assert not v.ok and set(v.counts) == {"missing"}
    assert v.counts["missing"] == v.recorded - sum(v.reproduced.values()) > 300
    assert len(v.mismatches) == 3  # only the first 3 listed
    assert all(m.kind == "missing" and m.cause in later for m in v.mismatches)


def test_a_policy_change_midway_is_replayed_with_the_set_each_decision_names(
    current: CompiledSet, tmp_path: Path
) -> None:
    # a copy of an early event amid the second file is a duplicate, whatever set is active
    first, second = halves(tmp_path, copy_of_line=10)
    changed = with_limit(tmp_path, "up_to: 75", "up_to: 70")
    data = tmp_path / "data"
    run_embedded(current, data, first, 500)
    run_embedded(changed, data, second, 500)
    by_set = Counter(
        o["data"]["policy_set"] for o in recorded(data) if o["type"] == "decision.made"
    )
    assert set(by_set) == {current.hash, changed.hash}

    def inputs() -> Any:
        return [*file_records(first, 1), *file_records(second, 1)]

    both = {current.hash: current, changed.hash: changed}
    v = verify(data, inputs(), both)
    assert v.ok and v.decided_by == dict(by_set)
    assert v.activations == v.switches == 2  # where the history switched, and only there
    assert v.reproduced["decision.made"] == sum(by_set.values())

    # the example in one file is the same history: the file's name is not in a decision
    assert verify(data, file_records(EXAMPLE, 1), both).ok

    v = verify(data, inputs(), {current.hash: current})
    assert not v.ok and v.lacking == {changed.hash: by_set[changed.hash]}
    assert v.reproduced["decision.made"] == by_set[current.hash]
    later = [o for o in recorded(data) if o["type"] == "decision.made"]
    first_of_changed = next(o for o in later if o["data"]["policy_set"] == changed.hash)
    assert v.stopped_at == first_of_changed["data"]["caused_by"]
    assert v.unreplayed > 0 and not v.counts  # not reached is not the same as missing
    assert (
        f"the replay stopped at the first event that set decided ({v.stopped_at});"
        f" {v.unreplayed:,} recorded outputs after it were not reached"
    ) in report(v)

    # and the other way round: the set that decided the first event is not given
    v = verify(data, inputs(), {changed.hash: changed})
    assert v.stopped_at == "the first event" and not v.reproduced
    assert any(
        line.startswith("the replay stopped at the first event that set decided (the first event)")
        for line in report(v)
    )
    assert v.lacking == {current.hash: by_set[current.hash]}


def test_first_difference_names_the_path_and_both_values() -> None:
    a = {"data": {"grants": [{"up_to": "30.00"}], "say": "Hi"}, "type": "decision.made"}
    assert first_difference(a, a) == "the bytes: the same values, written otherwise"
    b = {"data": {"grants": [{"up_to": "25.00"}], "say": "Hi"}, "type": "decision.made"}
    assert first_difference(a, b) == 'data.grants[0].up_to: recorded "30.00", replayed "25.00"'
    c = {"data": {"grants": [], "say": "Hi"}, "type": "decision.made"}
    assert first_difference(a, c) == 'data.grants: recorded [{"up_to": "30.00"}], replayed []'
    d = {"data": {"grants": [{"up_to": "30.00"}]}, "type": "decision.made"}
    assert first_difference(a, d) == 'data.say: recorded "Hi", replayed (absent)'
    long = {"data": "x" * 200}
    assert first_difference(long, {"data": 1}).startswith('data: recorded "xxx')
    assert first_difference(long, {"data": 1}).endswith("..., replayed 1")


def goodwill(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """`goodwill ARGS` in this process: its exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_the_command_says_verified_and_exits_0(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = goodwill(
        capsys, "verify", EXAMPLE, "--data-dir", history, "--policies", ROOT / "policies"
    )
    assert code == 0, out + err
    assert out.splitlines()[-1] == "verified: every recorded output was made again, byte for byte"
    assert f"replaying {EXAMPLE} against {history / 'log'}" in err


def test_the_command_lists_what_differs_and_exits_1(
    history: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = copy_of(history, tmp_path)
    rewrite(data, lambda lines: lines.pop(100))
    code, out, _ = goodwill(capsys, "verify", EXAMPLE, "--data-dir", data, "--show", "0")
    assert code == 1
    assert "NOT reproduced: 0 differs, 0 missing, 1 extra" in out
    assert "  … 1 more (use --show N)" in out and "the decision of an input" in out


def test_the_command_names_a_policy_set_neither_kept_nor_given(
    history: Path, current: CompiledSet, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = copy_of(history, tmp_path)
    shutil.rmtree(data / SETS_DIR)  # as in a data directory of a build that kept none
    changed = with_limit(tmp_path, "up_to: 75", "up_to: 70")
    code, out, _ = goodwill(
        capsys, "verify", EXAMPLE, "--data-dir", data, "--policies", tmp_path / "changed"
    )
    assert code == 1
    assert f"policy set {changed.hash} from {tmp_path / 'changed'}" in out
    assert (
        f"not verified: 601 recorded decisions name policy set {current.hash}, which no"
        " --policies directory given holds" in out
    )
    code, out, _ = goodwill(capsys, "verify", EXAMPLE, "--data-dir", data)  # ./policies
    assert code == 0 and f"policy set {current.hash} from policies" in out


def test_each_run_keeps_its_policy_set_and_verify_uses_the_kept_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = halves(tmp_path)
    changed = with_limit(tmp_path, "up_to: 75", "up_to: 70")
    data = tmp_path / "data"
    assert goodwill(capsys, "run", "-q", first, "--data-dir", data)[0] == 0
    run = ["run", "-q", second, "--data-dir", data, "--policies", tmp_path / "changed"]
    assert goodwill(capsys, *run)[0] == 0
    current = load(ROOT / "policies")
    for policy_set, source in ((current, ROOT / "policies"), (changed, tmp_path / "changed")):
        files = {p.name: p.read_text() for p in (data / SETS_DIR / policy_set.hash).iterdir()}
        assert files == {p.name: p.read_text() for p in source.glob("*.yaml")}
    code, out, err = goodwill(capsys, "verify", first, second, "--data-dir", data)
    assert code == 0, out + err
    assert f"policy set {changed.hash} kept in {data / SETS_DIR / changed.hash}" in out
    # a kept file changed afterwards no longer hashes to its set: not used, and said so
    kept = data / SETS_DIR / changed.hash / "goodwill-by-lifetime-value.yaml"
    kept.write_text(kept.read_text().replace("up_to: 70", "up_to: 75"))
    code, out, err = goodwill(capsys, "verify", first, second, "--data-dir", data)
    assert code == 1
    assert (
        f"goodwill: warning: {kept.parent}: its files hash to {current.hash}, so they changed"
        " after they were kept; not used" in err
    )
    assert f"name policy set {changed.hash}, which no --policies directory given holds" in out


def test_a_set_that_cannot_be_kept_is_a_warning_and_the_run_goes_on(
    current: CompiledSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / SETS_DIR).write_text("a file where the directory goes")
    run_embedded(current, data, EXAMPLE, 500)
    assert f"could not keep policy set {current.hash}" in caplog.text
    assert len(recorded(data)) > 600  # decided all the same
    assert keep(data, current.policy_set) is None


def test_a_set_is_kept_whole_or_not_at_all(
    current: CompiledSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    sets = data / SETS_DIR
    # a run that died writing the set, under this process's id: half its files
    died = sets / f".{current.hash}-{os.getpid()}"
    died.mkdir(parents=True)
    (died / "follow-through.yaml").write_text("")
    found = kept(data)
    assert (found.sets, found.refused) == ({}, [])  # never read as a set
    assert keep(data, current.policy_set) == sets / current.hash
    assert [p.name for p in sets.iterdir()] == [current.hash]  # what it left is gone
    files = {p.name: p.read_text() for p in (sets / current.hash).iterdir()}
    assert files == {p.name: p.read_text() for p in (ROOT / "policies").glob("*.yaml")}

    # a write that fails midway leaves nothing behind, not a set missing files
    shutil.rmtree(sets)
    synced: list[int] = []

    def fails_on_the_second(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fails_on_the_second)
    assert keep(data, current.policy_set) is None
    assert len(synced) == 2 and list(sets.iterdir()) == []


def test_the_embedded_events_log_is_the_default_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    code, out, err = goodwill(capsys, "emit", EXAMPLE, "--data-dir", data, "--embedded")
    assert code == 1 and "7 invalid, not sent" in out + err  # the bad lines are not sent
    code, _, err = goodwill(capsys, "run", "-q", "--data-dir", data, "--embedded")
    assert code == 0, err
    code, out, err = goodwill(capsys, "verify", "--data-dir", data)
    assert code == 0, out + err
    assert f"the embedded events log of {data}" in err
    assert "verified: every recorded output" in out


def test_files_then_the_embedded_events_log_as_the_history_read_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = halves(tmp_path)
    data = tmp_path / "data"
    assert goodwill(capsys, "run", "-q", first, "--data-dir", data)[0] == 0
    goodwill(capsys, "emit", second, "--data-dir", data, "--embedded")
    assert goodwill(capsys, "run", "-q", "--data-dir", data, "--embedded")[0] == 0
    code, out, err = goodwill(capsys, "verify", first, "--events-log", "--data-dir", data)
    assert code == 0, out + err
    assert f"replaying {first}, then the embedded events log of {data} against" in err
    code, out, _ = goodwill(capsys, "verify", first, "--data-dir", data)
    assert code == 1 and re.search(r"NOT reproduced: 0 differs, \d+ missing, 0 extra", out)


def test_a_data_dir_without_an_embedded_history_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = goodwill(capsys, "verify", "--data-dir", tmp_path / "none")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"goodwill: {tmp_path / 'none'} holds no embedded decisions log"
        f" ({tmp_path / 'none' / LOG}): verify replays a history `goodwill run` decided"
        " without a broker"
    ]
    assert not (tmp_path / "none").exists()
    code, _, err = goodwill(capsys, "verify", tmp_path / "nope.jsonl")
    assert code == 2 and err == f"goodwill: no such input file: {tmp_path / 'nope.jsonl'}\n"


def test_a_history_read_from_files_and_no_file_given_is_one_line_naming_them(
    history: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the quickstart's data directory, verified as the embedded events log: it has none
    data = copy_of(history, tmp_path)
    code, out, err = goodwill(capsys, "verify", "--data-dir", data)
    assert (code, out) == (1, "")
    events = data / "log" / f"{EVENTS_TOPIC}.jsonl"
    assert err.splitlines() == [
        f"goodwill: {data} has no embedded events log ({events}): give the files its history"
        f" read, in the order it read them; its state names {EXAMPLE}"
    ]
    code, out, err = goodwill(capsys, "verify", EXAMPLE, "--events-log", "--data-dir", data)
    assert (code, out) == (1, "")
    assert err == f"goodwill: {data} has no embedded events log ({events})\n"


def test_every_copy_of_an_output_published_twice_is_compared(
    history: Path, current: CompiledSet, tmp_path: Path
) -> None:
    data = copy_of(history, tmp_path)
    outputs = recorded(history)
    activations = sum(o["type"] == "policy_set.activated" for o in outputs)
    decisions = sum(o["type"] == "decision.made" for o in outputs)
    first, later = outputs[50], outputs[60]
    end = len(outputs)  # the offset of the first copy appended

    def publish_twice(lines: list[dict[str, Any]]) -> None:
        # a relay stopped before it marked its outputs sent publishes them again, unchanged
        lines.append(dict(lines[50]))
        lines.append(dict(lines[60]))
        # a copy that differs, first or later, is not hidden by one that does not
        lines[50]["v"] = lines[50]["v"].replace('"customer_id":"', '"customer_id":"x', 1)
        lines[-1]["v"] = lines[-1]["v"].replace('"customer_id":"', '"customer_id":"y', 1)

    rewrite(data, publish_twice)
    v = verify(data, file_records(EXAMPLE, 1), {current.hash: current})
    assert not v.ok and v.counts == {"differs": 2}
    assert v.decided_by == {current.hash: decisions}  # each decision once
    assert v.republished == 2 and v.recorded == len(outputs) - activations
    assert [(m.ident, m.detail) for m in v.mismatches] == [
        (
            first["event_id"],
            f'customer_id: recorded "x{first["customer_id"]}", replayed "{first["customer_id"]}"',
        ),
        (
            later["event_id"],
            f"its copy at offset {end + 1} of the log: customer_id: recorded"
            f' "y{later["customer_id"]}", replayed "{later["customer_id"]}"',
        ),
    ]


def test_a_history_kept_with_retention_is_replayed_with_it(
    current: CompiledSet, tmp_path: Path
) -> None:
    # an order from the first day, sent once the history is days past it: late, for a
    # history that keeps one day, and dead-lettered instead of decided
    late = json.loads(EXAMPLE.read_bytes().splitlines()[10])
    late.update(event_id="ev-late", occurred_at="2026-11-02T09:00:00Z")
    source = tmp_path / "late.jsonl"
    source.write_bytes(EXAMPLE.read_bytes() + json.dumps(late).encode() + b"\n")
    data = tmp_path / "data"
    run_embedded(current, data, source, 500, retain_days=1)
    assert "ev-late" not in {o["data"].get("caused_by") for o in recorded(data)}
    v = verify(data, file_records(source, 1), {current.hash: current})
    assert v.ok, v.mismatches
    assert v.retain_days == 1 and v.deadlettered == 8  # the example's 7 and the late one


def test_a_state_file_of_a_newer_build_is_one_line_and_exit_1(
    history: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = copy_of(history, tmp_path)
    with sqlite3.connect(data / "state.db") as conn:  # where the retention is read from
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    conn.close()
    code, _, err = goodwill(capsys, "verify", EXAMPLE, "--data-dir", data)
    assert code == 1 and err.splitlines()[-1].startswith(
        f"goodwill: {data / 'state.db'}: state schema version 99, this build reads "
    )


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda line: line.replace('{"o":99,', '{"o":99,,', 1), "unreadable record"),
        (lambda line: line.replace('"v":"{', '"v":"[{', 1), "not an output Goodwill publishes"),
    ],
)
def test_a_damaged_record_in_the_log_is_one_line_and_exit_1(
    history: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    damage: Callable[[str], str],
    says: str,
) -> None:
    data = copy_of(history, tmp_path)
    lines = (data / LOG).read_text().splitlines(keepends=True)
    lines[99] = damage(lines[99])
    (data / LOG).write_text("".join(lines))
    code, out, err = goodwill(capsys, "verify", EXAMPLE, "--data-dir", data)
    assert code == 1 and "verified" not in out
    assert err.splitlines()[-1].startswith(f"goodwill: {data / LOG}:100: {says}")


def test_an_event_the_history_failed_to_decide_is_decided_where_it_was_redriven(
    current: CompiledSet,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decide = Decider.decide

    def fails_on_the_first_order(self: Decider, event: Envelope, *args: Any) -> Any:
        if event.event_id == "ev-000011":  # c-003's first order: later decisions read it
            raise ValueError("a fault of the build that decided it")
        return decide(self, event, *args)

    data = tmp_path / "data"
    with monkeypatch.context() as patched:
        patched.setattr(Decider, "decide", fails_on_the_first_order)
        run_embedded(current, data, EXAMPLE, 500)
    # fixed: the dead letter is sent again and decided after the rest of the file
    assert goodwill(capsys, "redrive", "--data-dir", data)[0] == 0
    assert goodwill(capsys, "run", "-q", "--data-dir", data, "--embedded")[0] == 0
    inputs = [*file_records(EXAMPLE, 1), *scan_topic(data / "log", EVENTS_TOPIC)]
    v = verify(data, inputs, {current.hash: current})
    assert v.ok, v.mismatches
    assert v.failed == 1 and v.deadlettered == 8  # the example's bad lines, and that one
    code, out, _ = goodwill(capsys, "verify", EXAMPLE, "--events-log", "--data-dir", data)
    assert code == 0, out
    assert "(8 dead-lettered, 1 of them as the history did: processing_failed)" in out
