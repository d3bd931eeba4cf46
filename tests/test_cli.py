"""The `goodwill` command on the embedded backend, as a user runs it."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from tests.limits import goodwill_limited

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shop-day.jsonl"


def goodwill(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed console script's code path, in a child process like a user's shell."""
    return subprocess.run(
        [sys.executable, "-c", "from engine.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def run_json(data_dir: Path, source: Path = EXAMPLE) -> list[dict[str, object]]:
    result = goodwill("run", source, "--data-dir", data_dir, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = tmp_path_factory.mktemp("run") / "data"
    result = goodwill("run", EXAMPLE, "--data-dir", data, "--json")
    assert result.returncode == 0, result.stderr
    return data, result.stdout


def test_two_runs_give_byte_identical_json(first_run: tuple[Path, str], tmp_path: Path) -> None:
    _, out = first_run
    again = goodwill("run", EXAMPLE, "--data-dir", tmp_path / "other", "--json")
    assert again.returncode == 0
    assert again.stdout == out
    assert out.count('"type":"decision.made"') == 601  # one per good input event


def test_every_input_line_yields_a_decision_or_a_dead_letter(first_run: tuple[Path, str]) -> None:
    data, out = first_run
    causes = {
        json.loads(line)["data"]["caused_by"]
        for line in out.splitlines()
        if '"type":"decision.made"' in line
    }
    good = set()
    for raw in EXAMPLE.read_bytes().splitlines():
        try:
            good.add(json.loads(raw)["event_id"])
        except (ValueError, KeyError):
            continue
    dead = [
        json.loads(line)
        for line in (data / "log" / "goodwill.deadletter.jsonl").read_text().splitlines()
    ]
    assert len(dead) == 7
    assert len(causes) + len(dead) == len(EXAMPLE.read_bytes().splitlines())
    assert causes <= good
    reasons = {h[0]: h[1] for h in dead[0]["h"]}
    assert reasons["goodwill.reason"] == "invalid_json"
    assert reasons["goodwill.source.offset"] == "25"  # the line number in the file


def test_rerunning_the_same_input_adds_nothing(first_run: tuple[Path, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(first_run[0], data)
    before = (
        sqlite3.connect(data / "state.db")
        .execute("SELECT count(*), (SELECT sum(charged) FROM budgets) FROM outbox")
        .fetchone()
    )
    again = goodwill("run", EXAMPLE, "--data-dir", data, "--json")
    assert again.returncode == 0 and again.stdout == ""
    after = (
        sqlite3.connect(data / "state.db")
        .execute("SELECT count(*), (SELECT sum(charged) FROM budgets) FROM outbox")
        .fetchone()
    )
    assert before == after
    readable = goodwill("run", EXAMPLE, "--data-dir", data, "-q")
    assert readable.returncode == 0, readable.stderr
    assert "decisions          0: nothing new since the last run" in readable.stdout
    assert "routed             0\n" in readable.stdout  # no list of routes to follow


def test_budgets_never_exceed_their_allocation(first_run: tuple[Path, str]) -> None:
    _, out = first_run
    spent: dict[tuple[str, str, str], int] = defaultdict(int)
    allocated: dict[tuple[str, str, str], int] = {}
    routed_for_budget = 0
    for line in out.splitlines():
        doc = json.loads(line)
        if doc["type"] != "decision.made":
            continue
        for c in doc["data"]["charges"]:
            key = (c["budget"], c["owner"], c["period"])
            spent[key] += round(float(c["amount"]) * 100)
            allocated[key] = round(float(c["allocated"]) * 100)
            assert round(float(c["remaining"]) * 100) == allocated[key] - spent[key]
        routed_for_budget += sum(1 for r in doc["data"]["routes"] if "budget" in r["context"])
    assert spent, "the example charges budgets"
    assert all(spent[k] <= allocated[k] for k in spent)
    assert routed_for_budget >= 1, "dee's expedite budget runs out in the example"


def test_the_example_guide_tells_what_the_run_does(first_run: tuple[Path, str]) -> None:
    import re
    from decimal import Decimal

    guide = (ROOT / "examples" / "README.md").read_text()
    _, out = first_run
    outputs = [json.loads(line) for line in out.splitlines()]
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for doc in outputs:
        if doc["type"] == "decision.made":
            for charge in doc["data"]["charges"]:
                if charge["budget"] == "goodwill":
                    spent[charge["owner"]] += Decimal(charge["amount"])
    shown = re.search(r"budgets are used \(east: \$(\d+), west: \$(\d+)\)", guide)
    assert shown is not None
    assert (Decimal(shown[1]), Decimal(shown[2])) == (spent["east"], spent["west"])
    overdue = [doc for doc in outputs if doc["type"] == "followup.overdue"]
    assert "counts eight overdue follow-ups" in guide and len(overdue) == 8
    assert len({doc["data"]["case_id"] for doc in overdue}) == 8  # "Eight cases ...", once each


def test_the_readmes_note_is_one_the_example_run_writes(first_run: tuple[Path, str]) -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    quoted = re.search(r"its `note` reads `(no alert: [^`]*) …`", readme)
    assert quoted is not None
    _, out = first_run
    notes = [
        why["note"]
        for line in out.splitlines()
        if '"note":' in line
        for why in json.loads(line)["data"]["why"]
        if "note" in why
    ]
    assert notes and all(note.startswith(quoted[1] + " ") for note in notes)


def test_a_quiet_run_says_how_far_it_has_got(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.cli_options import Progress

    monkeypatch.setattr(Progress, "EVERY", 200)  # 100,000 in a real run

    def run(*flags: str) -> str:
        data = tmp_path / "-".join(("data", *flags))
        with pytest.raises(SystemExit) as ended:
            main(["run", str(EXAMPLE), "--data-dir", str(data), "--batch", "100", *flags])
        assert ended.value.code == 0
        return capsys.readouterr().err

    said = [line for line in run("--quiet").splitlines() if "records read" in line]
    # The example's bad lines are its lines 25, 113, 207, 301, 388, 466 and 549.
    assert said == [
        "  200 records read: 198 decided, 2 dead-lettered, 0 already decided",
        "  400 records read: 395 decided, 5 dead-lettered, 0 already decided",
        "  600 records read: 593 decided, 7 dead-lettered, 0 already decided",
    ]
    assert "records read" not in run()  # each decision printed shows the way


def test_simulate_says_how_far_each_set_has_got(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.workload import generate
    from engine.cli_options import Progress

    monkeypatch.setattr(Progress, "EVERY", 1_000)  # 100,000 in a real run
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(generate(2_500, 250)) + b"\n")
    with pytest.raises(SystemExit) as ended:
        main(["simulate", str(stream), "--candidate", "policies"])
    assert ended.value.code == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "records read" in line]
    assert said == [  # after each batch of 1,000 the simulation decides
        f"  {label}: {n:,} records read: {n:,} decided, 0 dead-lettered, 0 already decided"
        for label in ("current", "candidate")
        for n in (1_000, 2_000)
    ]


def test_readable_output_and_summary(tmp_path: Path) -> None:
    result = goodwill("run", EXAMPLE, "--data-dir", tmp_path / "d")
    assert result.returncode == 0
    out = result.stdout
    assert "→ AUTHORIZED" in out and "→ ROUTED" in out
    assert "may give    replacement up to $" in out
    assert "FOLLOW-UP OVERDUE" in out and "ROOT-CAUSE ALERT  SKU-KETTLE-2" in out
    assert "events read        608" in out
    assert "dead-lettered      7" in out
    assert "expedite/dee 2026-11:" in out
    # promises, not deadlines: a case keeps one deadline, so several promises share it
    promised = out.count("    follow up   case ")
    assert f"follow-ups         {promised} promised, 8 overdue" in out
    # each bad line is named as FILE:LINE, as `goodwill emit` names them
    rows = EXAMPLE.read_bytes().splitlines()
    not_json = [number for number, row in enumerate(rows, 1) if not _is_json(row)]
    assert not_json
    for number in not_json:
        assert f"dead-lettered examples/shop-day.jsonl:{number}: " in result.stderr


def _is_json(row: bytes) -> bool:
    try:
        json.loads(row)
    except ValueError:
        return False
    return True


def test_a_budget_never_allocated_shows_its_own_amount_in_the_summary(tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    from tests.samples import sample

    budgets = YAML(typ="safe").load((ROOT / "policies" / "budgets.yaml").read_text())
    [expedite] = [b for b in budgets["budgets"] if b["name"] == "expedite"]
    stream = tmp_path / "no-allocation.jsonl"
    events = [
        sample("rep.assigned", event_id="r1", rep_id="ana", team="east", lead="lena"),
        sample("contact.opened", rep_id="ana"),
        sample("remedy.requested", rep_id="ana", remedy="expedite", amount="20.00"),
    ]
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = goodwill("run", stream, "--data-dir", tmp_path / "d", "-q")
    assert result.returncode == 0, result.stderr
    allocated = expedite["amount"]
    assert f"expedite/ana 2026-11: $20.00 of ${allocated}.00, ${allocated - 20}.00 left" in (
        result.stdout
    )


def test_explain_shows_the_clauses_and_values(first_run: tuple[Path, str]) -> None:
    data, out = first_run
    doc = next(
        json.loads(line)
        for line in out.splitlines()
        if '"outcome":"authorized"' in line and '"why":[{' in line
    )
    result = goodwill("explain", doc["data"]["caused_by"], "--data-dir", data)
    assert result.returncode == 0, result.stderr
    why = doc["data"]["why"][0]
    assert f"rule '{why['rule']}' matched because" in result.stdout
    assert why["clauses"][0]["text"] in result.stdout
    kept = data / "policy-sets" / doc["data"]["policy_set"]  # the rules as they were written
    assert f"  policy set  {doc['data']['policy_set']} (its files: {kept})\n" in result.stdout
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        p.name for p in (ROOT / "policies").glob("*.yaml")
    )
    # ... and what the decision did: a route over a budget says to whom, why, with numbers
    routed = next(
        json.loads(line)
        for line in out.splitlines()
        if '"outcome":"routed"' in line and '"requested":' in line
    )
    shown = goodwill("explain", routed["data"]["caused_by"], "--data-dir", data).stdout
    [route] = routed["data"]["routes"]
    assert f"routed to   {route['to']} ({route['person']}): {route['reason']} [" in shown
    assert f"requested={route['context']['requested']}" in shown
    assert all(f'say         "{words}"' in shown for words in routed["data"]["say"])
    missing = goodwill("explain", "no-such-id", "--data-dir", data)
    assert missing.returncode == 1 and "no decision" in missing.stderr


def test_explain_finds_a_decision_the_state_no_longer_keeps(
    first_run: tuple[Path, str], tmp_path: Path
) -> None:
    # Published outputs leave the outbox after a while (OUTBOX_KEEP_SENT); the embedded
    # decisions log still has them.
    data, out = first_run
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    with closing(sqlite3.connect(copy / "state.db")) as db, db:
        db.execute("DELETE FROM outbox")
    doc = next(json.loads(line) for line in reversed(out.splitlines()) if '"decision.made"' in line)

    result = goodwill("explain", doc["event_id"], "--data-dir", copy)

    assert result.returncode == 0, result.stderr
    assert doc["data"]["decision_id"] in result.stdout


def test_check_accepts_the_library_and_refuses_a_bad_set(tmp_path: Path) -> None:
    ok = goodwill("check", "policies")
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ")
    bad = tmp_path / "p"
    shutil.copytree(ROOT / "policies", bad)
    f = bad / "replace-broken-part.yaml"
    f.write_text(f.read_text().replace("order.age_days <= 365", "order.age_dayz <= 365"))
    refused = goodwill("check", bad)
    assert refused.returncode == 1
    assert "replace-broken-part.yaml:9:27: unknown field 'order.age_dayz'" in refused.stderr
    assert "did you mean 'order.age_days'?" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_check_speaks_json_and_github_annotations_for_ci(tmp_path: Path) -> None:
    bad = tmp_path / "p"
    shutil.copytree(ROOT / "policies", bad)
    f = bad / "replace-broken-part.yaml"
    f.write_text(f.read_text().replace("order.age_days <= 365", "order.age_dayz <= 365"))
    name = str(f)  # outside the working directory: shown as given

    as_json = goodwill("check", bad, "--format", "json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "ok": False,
        "problems": [
            {
                "file": name,
                "line": 9,
                "column": 27,
                "end_column": 41,
                "message": "unknown field 'order.age_dayz' on item.defect_reported",
                "hint": "did you mean 'order.age_days'?",
            }
        ],
    }
    annotated = goodwill("check", bad, "--format", "github")
    assert annotated.returncode == 1
    assert annotated.stdout == (
        f"::error file={name},line=9,col=27,endColumn=41,title=goodwill check::"
        "unknown field 'order.age_dayz' on item.defect_reported%0A"
        "did you mean 'order.age_days'?\n"
    )
    ok = goodwill("check", "policies", "--format", "json")
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["ok"] is True
    wrong = goodwill("check", "--format", "yaml")
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1


def test_a_refused_policy_set_decides_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "p"
    shutil.copytree(ROOT / "policies", bad)
    (bad / "follow-through.yaml").write_text("policy: [\n")
    result = goodwill("run", EXAMPLE, "--policies", bad, "--data-dir", tmp_path / "d")
    assert result.returncode == 1 and "policy set refused" in result.stderr
    assert not (tmp_path / "d").exists()


def test_schema_writes_one_file_per_event_type(tmp_path: Path) -> None:
    result = goodwill("schema", "--out", tmp_path / "s")
    assert result.returncode == 0
    names = {p.name for p in (tmp_path / "s").iterdir()}
    assert "remedy.requested.schema.json" in names and "index.json" in names


def test_emit_names_every_problem_of_an_invalid_event(tmp_path: Path) -> None:
    good = json.loads(EXAMPLE.read_bytes().splitlines()[10])  # an order.placed
    bad = {**good, "occurred_at": "2026-11-02T08:00:00", "customer_id": 7}
    bad["data"] = {**good["data"], "amount": 1.5, "currency": "usd"}
    source = tmp_path / "events.jsonl"
    source.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")

    result = goodwill("emit", source, "--data-dir", tmp_path / "data")

    assert result.returncode == 1
    # one line each, so that one fix and one more try put the event right
    assert result.stderr.splitlines() == [
        f"{source}:2: schema_invalid: data.amount: money must be a decimal string such as"
        ' "12.50", not a float (not sent)',
        f"{source}:2: schema_invalid: data.currency: must match pattern '^[A-Z]{{3}}$' (got 'usd')",
        f"{source}:2: schema_invalid: occurred_at: must have timezone info"
        " (got '2026-11-02T08:00:00')",
        f"{source}:2: schema_invalid: customer_id: must be a valid string (got 7)",
    ]
    assert "sent 1 event(s)" in result.stdout and "1 invalid, not sent" in result.stdout


def test_emit_warns_of_an_event_dated_well_ahead_of_the_clock_and_sends_it(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)

    def tick(ident: str, at: datetime) -> str:
        when = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return json.dumps(
            {"event_id": ident, "type": "clock.tick", "occurred_at": when,
             "schema_version": 1, "source": "cron", "data": {}}
        )  # fmt: skip

    source = tmp_path / "ticks.jsonl"
    source.write_text(tick("soon", now + timedelta(hours=2)) + "\n")
    source.write_text(source.read_text() + tick("typo", now + timedelta(days=400, hours=1)) + "\n")
    sent = goodwill("emit", source, "--data-dir", tmp_path / "data")
    assert sent.returncode == 0, sent.stderr  # warned of, not refused: it may be a backfill
    (warning,) = sent.stderr.splitlines()
    assert warning.startswith(f"{source}:2: warning: occurred_at ")
    assert " is 400 days ahead of this machine's clock; it is sent" in warning
    assert sent.stdout.startswith("sent 2 event(s)")


def test_emit_lists_twenty_problems_of_an_event_and_counts_the_rest(tmp_path: Path) -> None:
    order = json.loads(EXAMPLE.read_bytes().splitlines()[10])
    order["data"]["items"] = [{"sku": "S", "qty": i, "unit_price": "1.00"} for i in range(-24, 1)]
    source = tmp_path / "event.json"  # one event: named by the file alone
    source.write_text(json.dumps(order))

    result = goodwill("emit", source, "--data-dir", tmp_path / "data")

    problems = result.stderr.splitlines()
    assert result.returncode == 1 and len(problems) == 21  # 25 items with no quantity
    assert problems[0].startswith(f"{source}: schema_invalid: data.items.0.qty: ")
    assert problems[0].endswith(" (not sent)")
    assert problems[-1] == f"{source}: schema_invalid: 5 more"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--frobnicate"], "No such option"),
        (["run", "--batch", "0"], "--batch"),
        (["nonsense"], "No such command"),
        (["run", "missing.jsonl"], "no such input file: missing.jsonl"),
        (["fields", "remedy.requestd"], "did you mean 'remedy.requested'?"),
        (["run", "--data-dir", str(EXAMPLE), str(EXAMPLE)], "exists and is not a directory"),
        (["schema", "--out", str(EXAMPLE)], "exists and is not a directory"),
        (["run", str(ROOT / "examples")], "is a directory; give a .jsonl file"),
        (["run", str(EXAMPLE), "--metrics-port", "9999"], "--metrics-port: only with Kafka"),
        (["run", str(EXAMPLE), "--group-id", "g", "--budget-stage", "kafka"], "--group-id, --b"),
        (["topics", "create", "--kafka", "notaport"], "'notaport' is not a host:port address"),
        (["emit", str(EXAMPLE), "--kafka", "h:1,broker2"], "'broker2' is not a host:port"),
        (["run", "--kafka", "h:1", "--ssl-cafile", "/no/ca.pem"], "--ssl-cafile /no/ca.pem: no"),
    ],
)
def test_bad_usage_is_one_line_and_non_zero(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert expected.lower() in err.lower()
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_a_misspelt_log_level_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOODWILL_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--kafka", "127.0.0.1:1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == "goodwill: GOODWILL_LOG_LEVEL='LOUD': use one of DEBUG, INFO, WARNING, ERROR\n"


def test_state_made_with_one_budget_stage_is_refused_to_the_other(tmp_path: Path) -> None:
    from engine.state import StateStore

    with StateStore.open(tmp_path / "state.db") as store:  # as a --budget-stage local run
        store.keep_mode("budget_stage", "local", str(tmp_path))
        store.keep_mode("budget_stage", "local", str(tmp_path))  # the same: fine
    for command in (["run"], ["rebuild"]):
        done = goodwill(
            *command, "--kafka", "127.0.0.1:1", "--data-dir", tmp_path, "--budget-stage", "kafka"
        )
        assert done.returncode == 1
        assert done.stderr.endswith(
            f"goodwill: {tmp_path} holds state made with --budget-stage local, not kafka: every"
            " run and rebuild on it uses the same (to change it, rebuild into an empty"
            " --data-dir with --budget-stage kafka)\n"
        ), done.stderr


def test_a_directory_that_cannot_be_made_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args in (["schema", "--out"], ["run", str(EXAMPLE), "-q", "--data-dir"]):
        with pytest.raises(SystemExit) as exit_:
            main([*args, str(blocker / "inside")])
        assert exit_.value.code == 1
        err = capsys.readouterr().err
        assert err == f"goodwill: {blocker / 'inside'}: Not a directory\n"


@pytest.mark.parametrize(
    ("command", "written"),
    [
        (["schema", "--out"], "cannot write the schemas to {out}: File too large"),
        (["docs", "--out"], "cannot write {out}/index.html: File too large"),
    ],
)
def test_a_write_with_no_room_is_one_line_naming_what_to_do(
    tmp_path: Path, command: list[str], written: str
) -> None:
    out = tmp_path / "out"
    done = goodwill_limited(1_000, *command, str(out))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"goodwill: {written.format(out=out)}; free space (or raise the quota or the file-size"
        " limit), then run the same command again: what was stored is kept"
    ]


MAYBE_FULL = (
    ": disk I/O error; if the disk is full or a file is at its size limit, free space (or raise"
    " the quota or the file-size limit), then run the same command again: what was stored is"
    " kept"
)
SCRATCH_FULL = (
    ": disk I/O error; if that disk is full, free space or set TMPDIR to a directory with room,"
    " then run it again"
)


@pytest.mark.parametrize(
    ("command", "limit", "said"),
    [
        # Reading a state file makes its 32 kB -shm file: no room for it below that.
        (["status"], 30_000, "cannot read the state in {data}" + MAYBE_FULL),
        (["explain", "ev-000050"], 30_000, "cannot read the state in {data}" + MAYBE_FULL),
        (["verify"], 100_000, "the replay's scratch files under {tmp}" + SCRATCH_FULL),
        (
            ["simulate", str(EXAMPLE), "--candidate", "policies"],
            30_000,
            "the simulation's scratch files under {tmp}" + SCRATCH_FULL,
        ),
    ],
)
def test_a_command_that_reads_with_no_room_to_write_is_one_line(
    first_run: tuple[Path, str], command: list[str], limit: int, said: str
) -> None:
    data, _ = first_run
    args = [*command] if command[0] == "simulate" else [*command, "--data-dir", str(data)]
    if command == ["verify"]:
        args.append(str(EXAMPLE))
    done = goodwill_limited(limit, *args)
    assert done.returncode == 1
    tmp = tempfile.gettempdir()
    assert done.stderr.splitlines()[-1] == "goodwill: " + said.format(data=data, tmp=tmp)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "reads", "ignores"),
    [
        (["run"], ["--kafka", "--group-id", "--budget-topic"], []),
        (["emit"], ["--kafka", "--events-topic", "--sasl-username"], ["--group-id"]),
        (["explain"], ["--kafka", "--decisions-topic"], ["--events-topic", "--group-id"]),
        (["redrive"], ["--deadletter-topic", "--events-topic"], ["--session-timeout-ms"]),
        (["topics", "create"], ["--budget-topic", "--ssl-cafile"], ["--group-id"]),
    ],
)
def test_a_command_offers_only_the_kafka_flags_it_reads(
    command: list[str], reads: list[str], ignores: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    offered = {word for word in capsys.readouterr().out.split() if word.startswith("--")}
    assert set(reads) <= offered
    assert not set(ignores) & offered
    # ... yet takes the others, unlisted: one set of flags serves every command
    with pytest.raises(SystemExit) as exit_:
        main([*command, *(f"{flag}=x" for flag in ignores), "--help"])
    assert exit_.value.code == 0


def test_a_group_without_its_command_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["topics"])
    assert exit_.value.code == 0
    assert "Usage: goodwill topics" in capsys.readouterr().out


def test_status_and_explain_read_a_data_dir_an_older_build_left(tmp_path: Path) -> None:
    # A build from before follow-up lanes, seen times and partition times wrote none of
    # those columns; an operator who upgrades looks at the data dir before running.
    data = tmp_path / "data"
    assert goodwill("run", EXAMPLE, "--data-dir", data, "--quiet").returncode == 0
    before = goodwill("status", "--data-dir", data, "--json")
    with closing(sqlite3.connect(data / "state.db", isolation_level=None)) as old:
        old.execute("DROP INDEX followups_due_by_lane")
        for table, column in (("followups", "lane"), ("seen", "at"), ("positions", "event_time")):
            old.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        old.execute("UPDATE schema_version SET version = 2")  # as that build wrote it
    event_id = json.loads(EXAMPLE.read_bytes().splitlines()[164])["event_id"]

    status = goodwill("status", "--data-dir", data, "--json")
    explain = goodwill("explain", event_id, "--data-dir", data)

    assert status.returncode == 0, status.stderr
    found, expected = json.loads(status.stdout), json.loads(before.stdout)
    assert found["positions"][0]["event_time"] is None  # not known to the older build
    found["positions"][0]["event_time"] = expected["positions"][0]["event_time"]
    assert found == expected
    assert explain.returncode == 0, explain.stderr
    assert explain.stdout.startswith("decision ") and "caused by" in explain.stdout
    with closing(sqlite3.connect(data / "state.db")) as old:  # read, not changed
        assert "lane" not in {r[1] for r in old.execute("PRAGMA table_info(followups)")}
        assert old.execute("SELECT version FROM schema_version").fetchall() == [(2,)]


def test_explain_says_why_an_event_has_no_decision(first_run: tuple[Path, str]) -> None:
    data, _ = first_run
    # The example's line with a schema version from the future (examples/README.md).
    rows = EXAMPLE.read_bytes().splitlines()  # one of them is not UTF-8, on purpose
    line = next(row for row in rows if b'"schema_version":99' in row)
    event_id = json.loads(line)["event_id"]
    result = goodwill("explain", event_id, "--data-dir", data)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"goodwill: no decision for '{event_id}': the event was dead-lettered"
        " (unsupported_schema_version: case.resolved schema_version 99"
    )
    assert "see `goodwill redrive`" in result.stderr
    unknown = goodwill("explain", "ev-none", "--data-dir", data)
    assert unknown.returncode == 1
    assert "no decision with id or cause 'ev-none'" in unknown.stderr


def test_explain_names_a_damaged_log_line_in_one_line(
    first_run: tuple[Path, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(first_run[0], data)
    log = data / "log" / "goodwill.decisions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[99] = lines[99].replace('{"o":99,', '{"o":99,,', 1)
    log.write_text("".join(lines))
    result = goodwill("explain", "no-such-id", "--data-dir", data)
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"goodwill: {log}:100: unreadable record: ")
    assert line.endswith(" (searched up to it)")


def test_every_command_has_help_and_refuses_a_wrong_flag_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import typer

    from engine.cli import app

    def commands(group: Any, path: list[str]) -> list[list[str]]:
        found = []
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group, such as `topics`
                found.extend(commands(command, [*path, name]))
            else:
                found.append([*path, name])
        return found

    every = commands(typer.main.get_group(app), [])
    assert ["verify"] in every and ["topics", "create"] in every and len(every) == 14
    for command in every:
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert "Usage:" in capsys.readouterr().out
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--no-such-flag"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "No such option: --no-such-flag" in err, (command, err)


def test_status_reads_the_state_beside_a_batch_that_holds_the_write_lock(tmp_path: Path) -> None:
    from datetime import UTC

    from engine.compile import load
    from events.codec import DecodeError, decode

    data = tmp_path / "data"
    assert goodwill("run", EXAMPLE, "--data-dir", data, "--quiet").returncode == 0
    lines = EXAMPLE.read_bytes().splitlines()
    events = []
    for line in lines:
        with suppress(DecodeError):
            events.append(decode(line))
    with closing(sqlite3.connect(data / "state.db", isolation_level=None)) as service:
        service.execute("BEGIN IMMEDIATE")  # a batch in progress holds the write lock
        result = goodwill("status", "--data-dir", data, "--json")
        service.execute("ROLLBACK")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["policy_set"] == load(ROOT / "policies").hash
    assert found["policy_sets_kept"] == [found["policy_set"]]  # its files in policy-sets/
    assert found["watermark"] == max(e.occurred_at for e in events).astimezone(UTC).isoformat()
    latest = max(e.occurred_at for e in events).astimezone(UTC).isoformat()
    assert found["positions"] == [
        {
            "source": f"file:{EXAMPLE.resolve()}",
            "partition": 0,
            "next_offset": len(lines) + 1,
            "event_time": latest,  # the latest event decided from it
        }
    ]
    assert found["counts"]["events_seen"] == len(events)
    assert found["counts"]["outputs_pending"] == 0

    text = goodwill("status", "--data-dir", data)
    assert text.returncode == 0 and "events seen" in text.stdout
    assert f"(events up to {latest})" in text.stdout
    missing = goodwill("status", "--data-dir", tmp_path / "nothing")
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"goodwill: cannot read the state in {tmp_path / 'nothing'}")


def test_a_run_that_cannot_use_its_data_directory_is_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.state import StateStore
    from events.log import FileLog

    data = tmp_path / "data"
    assert goodwill("run", EXAMPLE, "--data-dir", data, "--quiet").returncode == 0

    def refused(*args: str | Path) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["run", str(EXAMPLE), "--quiet", *map(str, args)])
        assert exit_.value.code == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        return err

    with FileLog.open(data / "log"):  # another run holds the directory
        err = refused("--data-dir", data, "--retain-days", "3")
    assert "is already open by another FileLog" in err
    assert err.endswith(f"(is `goodwill run` running on {data}?)\n")
    with StateStore.open(data / "state.db") as store:
        assert store.retain_days is None  # the refused run's --retain-days changed nothing

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "state.db").write_bytes(b"not a database, " * 1000)
    err = refused("--data-dir", damaged)
    assert err == f"goodwill: the state in {damaged}: file is not a database\n"

    newer = tmp_path / "newer"
    shutil.copytree(data, newer)
    with closing(sqlite3.connect(newer / "state.db")) as conn, conn:
        conn.execute("UPDATE schema_version SET version = version + 1")
    assert (
        "state schema version 5, this build reads 2, 3 or 4; it was written by a newer build"
        in (refused("--data-dir", newer))
    )

    torn = tmp_path / "torn"
    shutil.copytree(data, torn)
    decisions = torn / "log" / "goodwill.decisions.jsonl"
    lines = decisions.read_bytes().splitlines(keepends=True)
    decisions.write_bytes(b"".join([*lines[:3], b"damaged\n", *lines[4:]]))
    assert "record 3 is damaged but is not the last line" in refused("--data-dir", torn)


def test_a_lost_state_beside_a_published_log_is_refused_not_decided_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert goodwill("run", EXAMPLE, "--data-dir", data, "--quiet").returncode == 0
    decisions = data / "log" / "goodwill.decisions.jsonl"
    published = decisions.read_bytes()
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (data / name).unlink(missing_ok=True)
    again = goodwill("run", EXAMPLE, "--data-dir", data, "--quiet")
    assert again.returncode == 1
    assert again.stderr == (
        f"goodwill: {data / 'state.db'} is empty, yet {data / 'log'} holds"
        f" {len(published.splitlines())} outputs published from the state it replaces: deciding"
        " again would publish them twice (under other ids if the policies changed); restore"
        f" the state file, or move {data} aside to start over\n"
    )
    assert decisions.read_bytes() == published  # nothing decided twice


def test_a_new_file_under_a_name_already_read_is_read_from_its_first_line(tmp_path: Path) -> None:
    # A daily export written to the same path: resuming at the old line number skipped the
    # new file's first lines without a word.
    lines = EXAMPLE.read_bytes().splitlines(keepends=True)
    today, data = tmp_path / "today.jsonl", tmp_path / "data"

    def decided(part: list[bytes], data_dir: Path) -> tuple[set[str], str]:
        today.write_bytes(b"".join(part))
        done = goodwill("run", today, "--data-dir", data_dir, "--json")
        assert done.returncode == 0, done.stderr
        docs = map(json.loads, done.stdout.splitlines())
        return {d["data"]["caused_by"] for d in docs if d["type"] == "decision.made"}, done.stderr

    def alone(part: list[bytes]) -> set[str]:  # what a fresh data directory decides of it
        return decided(part, Path(tempfile.mkdtemp(dir=tmp_path)))[0]

    decided(lines[:50], data)
    second, warned = decided(lines[50:120], data)  # the next day's 70 lines
    assert f"{today} is not the file read before under that name (another first line)" in warned
    assert second == alone(lines[50:120]) and len(second) > 60

    # The same file, shorter (its last 20 lines cut): read again from line 1, nothing twice.
    third, warned = decided(lines[50:100], data)
    assert "(50 lines, not 70)" in warned
    assert third == set()

    # Appended to: no warning, and only the lines after those read are decided.
    fourth, warned = decided(lines[50:130], data)
    assert "not the file read before" not in warned
    assert fourth == alone(lines[120:130]) and fourth


def test_a_new_file_is_read_from_line_1_after_a_run_stopped_before_its_first_batch(
    tmp_path: Path,
) -> None:
    # The new file's first line was noted before any of it was decided: a run stopped
    # there (a crash, a second Ctrl-C, a full disk) left the old file's line number, and
    # the next run took the new file for the one read and skipped its first 50 lines.
    from engine.embedded import _resume_at
    from engine.state import StateStore

    lines = EXAMPLE.read_bytes().splitlines(keepends=True)
    today, data = tmp_path / "today.jsonl", tmp_path / "data"
    today.write_bytes(b"".join(lines[:50]))
    assert goodwill("run", today, "--data-dir", data, "--quiet").returncode == 0
    today.write_bytes(b"".join(lines[50:120]))
    with StateStore.open(data / "state.db") as store:  # the stopped run's start
        assert _resume_at(store, today, f"file:{today.resolve()}") == 1

    again = run_json(data, today)

    decided = {d["data"]["caused_by"] for d in again if d["type"] == "decision.made"}
    alone = run_json(tmp_path / "alone", today)
    assert decided == {d["data"]["caused_by"] for d in alone if d["type"] == "decision.made"}


def test_a_pipe_or_device_is_refused_in_one_line(tmp_path: Path) -> None:
    for given in ("/dev/null", "-"):
        done = goodwill("run", given, "--data-dir", tmp_path / "data")
        assert done.returncode == 2
        assert done.stderr.startswith(f"goodwill: {given} is not a regular file: ")
        assert done.stderr.count("\n") == 1


def test_sigterm_stops_an_embedded_run_after_a_batch_and_a_rerun_goes_on(tmp_path: Path) -> None:
    stream = tmp_path / "big.jsonl"
    made = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workload.py"), "--events", "6000"],
        capture_output=True,
        check=True,
    )
    stream.write_bytes(made.stdout)
    data, whole = tmp_path / "data", tmp_path / "whole"
    cmd = [sys.executable, "-c", "from engine.cli import main; main()", "run", str(stream)]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(data), "--json", "--batch", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = [proc.stdout.readline() for _ in range(300)]  # a batch or two is decided
    proc.terminate()
    # Read on through the same buffered reader: communicate() reads the pipe beneath it
    # and would miss what readline() had already buffered. Stderr holds the summary only.
    rest, err = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(timeout=120) == 130, err
    stopped = err.decode()
    assert stopped.endswith(
        "goodwill: stopped by a signal after a whole batch; run the same command again to go on\n"
    )
    assert "— summary" in stopped  # what it did before it stopped
    again = goodwill("run", stream, "--data-dir", data, "--json", "--batch", "200")
    assert again.returncode == 0, again.stderr
    clean = goodwill("run", stream, "--data-dir", whole, "--json")

    def decisions(lines: list[bytes]) -> list[bytes]:
        return [line for line in lines if b'"type":"decision.made"' in line]

    # Every decision printed once, the bytes of an uninterrupted run: nothing the stopped
    # run decided went unprinted, nothing was decided twice.
    printed = decisions([*first, *rest.splitlines(True), *again.stdout.encode().splitlines(True)])
    expected = decisions(clean.stdout.encode().splitlines(True))
    assert len(expected) == 6_000 and sorted(printed) == sorted(expected)
    log = "log/goodwill.decisions.jsonl"
    assert (data / log).read_bytes() == (whole / log).read_bytes()


def test_a_routes_context_reads_unambiguously_in_the_human_output(tmp_path: Path) -> None:
    # A rep's note with commas ran into the next field, and a value not on record
    # printed as `order.id=`.
    done = goodwill("run", EXAMPLE, "--data-dir", tmp_path / "data")
    assert done.returncode == 0, done.stderr
    handover = [line for line in done.stdout.splitlines() if "transferred with context" in line]
    assert any(
        'event.note="handing over with full history, customer prefers a callback",' in line
        for line in handover
    )
    assert any(line.endswith("order.id=(none)]") for line in handover)
    assert not [line for line in done.stdout.splitlines() if "=," in line or "=]" in line]
