"""Rebuilding lost state from the events and decisions topics (engine/rebuild.py)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.archive import SETS_DIR
from engine.compile import CompiledSet, load
from engine.decide import Decider
from engine.kafka_service import KafkaService
from engine.ledger import StateModeError
from engine.service import BUDGET_TOPIC, Processor
from engine.service_options import ServiceOptions
from engine.state import StateStore
from events.kafka import KafkaConfig, create_topics
from events.log import Record
from tests.limits import small_files
from tests.test_kafka_service import (
    DECIDED,
    POLICIES,
    ROOT,
    _invalid,
    clean_run_digest,
    decisions_by_id,
    digest,
    embedded_outputs,
    produce,
    read_topic,
    running,
    shop_lines,
)

SPLIT = 400  # inputs decided before the state is lost; the rest arrive afterwards


@pytest.fixture(scope="module")
def compiled() -> CompiledSet:
    return load(ROOT / "policies")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, compiled: CompiledSet) -> list[bytes]:
    return embedded_outputs(tmp_path_factory.mktemp("embedded"), compiled)


def rebuild_cli(
    cfg: KafkaConfig,
    data_dir: Path,
    policies: Path = POLICIES,
    *extra: str,
    file_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """`goodwill rebuild`; with `file_limit`, its files may not grow past that many bytes
    (tests/limits.py), so a write past it fails as on a full disk."""

    args = [
        sys.executable, "-m", "engine.cli", "rebuild",
        "--kafka", cfg.bootstrap_servers,
        "--events-topic", cfg.events_topic,
        "--decisions-topic", cfg.decisions_topic,
        "--deadletter-topic", cfg.deadletter_topic,
        "--budget-topic", cfg.budget_topic,
        "--data-dir", str(data_dir),
        "--policies", str(policies),
        "--idle-polls", "3",
        *extra,
    ]  # fmt: skip
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=None if file_limit is None else small_files(file_limit),
    )


def lose_state_mid_stream(
    cfg: KafkaConfig, compiled: CompiledSet, data_dir: Path, partitions: int = 1, **options: Any
) -> list[Any]:
    """The first SPLIT lines decided by a service whose state is then lost (`data_dir` is
    never used again), the rest produced after it stopped. Returns the decision records it
    published."""
    create_topics(cfg, partitions=partitions)
    lines = shop_lines()
    produce(cfg, lines[:SPLIT])
    with running(cfg, compiled, data_dir, **options):
        before = read_topic(cfg, cfg.decisions_topic, SPLIT - 5, 30, DECIDED)
    produce(cfg, lines[SPLIT:])  # never decided before the state was lost
    return before


@pytest.mark.kafka
def test_rebuild_folds_recorded_decisions_and_decides_the_rest(
    kafka_config: KafkaConfig, compiled: CompiledSet, embedded: list[bytes], tmp_path: Path
) -> None:
    before = lose_state_mid_stream(kafka_config, compiled, tmp_path / "lost")

    result = rebuild_cli(kafka_config, tmp_path / "rebuilt")
    assert result.returncode == 0, result.stderr
    assert "recorded decisions folded" in result.stdout
    # the set it activates is kept, as every run keeps it, for verify and explain
    assert [d.name for d in (tmp_path / "rebuilt" / SETS_DIR).iterdir()] == [compiled.hash]

    # Nothing was published by the rebuild, and nothing recorded was decided again.
    after = read_topic(kafka_config, kafka_config.decisions_topic, len(before))
    assert [r.value for r in after] == [r.value for r in before]

    # The same state as one clean, uninterrupted run over the whole stream.
    want = clean_run_digest(kafka_config, compiled, tmp_path / "clean", len(embedded))
    assert digest(tmp_path / "rebuilt") == want
    assert f"state digest {want}" in result.stdout

    # With --retain-days (nothing in this history is old enough to forget): the same
    # outputs, and the store keeps the setting for the service that runs on it.
    retained = rebuild_cli(kafka_config, tmp_path / "retained", POLICIES, "--retain-days", "400")
    assert retained.returncode == 0, retained.stderr
    with (
        StateStore.open(tmp_path / "rebuilt" / "state.db") as plain,
        StateStore.open(tmp_path / "retained" / "state.db") as kept,
    ):
        assert kept.retain_days == 400 and plain.retain_days is None
        assert list(kept.outputs()) == list(plain.outputs())

    # The service then publishes what the history lacked, exactly once: the whole stream.
    with running(kafka_config, compiled, tmp_path / "rebuilt"):
        published = read_topic(kafka_config, kafka_config.decisions_topic, len(embedded))
    assert sorted({r.value for r in published}) == sorted(embedded)
    assert len(published) == len(embedded)


@pytest.mark.kafka
def test_with_the_budget_stage_a_rebuild_leaves_the_ledger_to_the_stage(
    kafka_config: KafkaConfig, compiled: CompiledSet, embedded: list[bytes], tmp_path: Path
) -> None:
    # Recorded charges are not folded by the rebuild: the budget stage replays its topic
    # into the rebuilt store, so each charge is counted once.
    lose_state_mid_stream(kafka_config, compiled, tmp_path / "lost", budget_stage="kafka")
    lines = shop_lines()

    result = rebuild_cli(kafka_config, tmp_path / "rebuilt", POLICIES, "--budget-stage", "kafka")
    assert result.returncode == 0, result.stderr
    forwarded = {r.value for r in read_topic(kafka_config, kafka_config.budget_topic, 1, 10)}
    assert forwarded, "the lost instance forwarded to the budget stage"
    with StateStore.open(tmp_path / "rebuilt" / "state.db") as store:
        assert [b for b in store.budgets() if b[4]] == []  # no charge folded yet
        # What the history forwarded is on the budget topic already: not queued again.
        pending = [row[3] for row in store.outbox_pending(100_000) if row[1] == BUDGET_TOPIC]
        assert pending and not forwarded & set(pending)

    with running(kafka_config, compiled, tmp_path / "rebuilt", budget_stage="kafka"):
        published = read_topic(kafka_config, kafka_config.decisions_topic, len(embedded))
    assert sorted({r.value for r in published}) == sorted(embedded)  # each once, same bytes
    with StateStore.open(tmp_path / "rebuilt" / "state.db") as store:
        rebuilt = store.budgets()
    clean = tmp_path / "clean"
    with StateStore.open(clean / "state.db") as store:  # the one-process ledger
        Processor(store, Decider(compiled)).process(
            [Record("x", 0, i, None, line) for i, line in enumerate(lines)]
        )
        assert rebuilt == store.budgets()


@pytest.mark.kafka
def test_service_rebuilds_on_start_without_deciding_history_again(
    kafka_config: KafkaConfig,
    compiled: CompiledSet,
    embedded: list[bytes],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = lose_state_mid_stream(kafka_config, compiled, tmp_path / "lost", partitions=2)
    lines = shop_lines()
    # A new instance with an empty data dir: the history is folded, the rest decided live.
    good = [line for line in lines if not _invalid(line)]
    caplog.clear()
    new = tmp_path / "new"
    with (
        caplog.at_level(logging.INFO, logger="goodwill"),
        running(kafka_config, compiled, new) as service,
    ):
        published = read_topic(kafka_config, kafka_config.decisions_topic, len(good), 30, DECIDED)
    assert service.processor is not None
    recalled = service.processor.tally.recalled
    assert recalled == sum(b'"decision.made"' in r.value for r in before)
    # The log tells history from new work: what was folded, what was decided, and the
    # history's dead letters as such (not sent again, so not warnings).
    said = {r.getMessage(): r for r in caplog.records}
    assert said["rebuilt state from the topics"].recalled == recalled  # type: ignore[attr-defined]
    assert "digest" not in said["rebuilt state from the topics"].__dict__  # none computed
    stopped = said["stopped"]
    assert (stopped.decided, stopped.recalled) == (len(good) - recalled, recalled)  # type: ignore[attr-defined]
    again = [r for r in caplog.records if r.getMessage().startswith("was dead-lettered")]
    assert again and {r.levelno for r in again} == {logging.INFO}
    values = [r.value for r in published]
    assert len(values) == len(set(values)), "a recorded output was published again"
    unique = decisions_by_id(published)
    caused = Counter(
        json.loads(v)["data"]["caused_by"] for v in unique.values() if b'"decision.made"' in v
    )
    assert set(caused) == {json.loads(line)["event_id"] for line in good} and set(
        caused.values()
    ) == {1}


@pytest.mark.kafka
def test_a_rebuild_with_no_room_left_is_refused_until_it_is_done_again(
    kafka_config: KafkaConfig, compiled: CompiledSet, embedded: list[bytes], tmp_path: Path
) -> None:
    lose_state_mid_stream(kafka_config, compiled, tmp_path / "lost")
    data = tmp_path / "rebuilt"
    full = rebuild_cli(kafka_config, data, file_limit=150_000)
    assert full.returncode == 1, full.stderr
    (said,) = full.stderr.splitlines()
    assert said.startswith(f"goodwill: rebuilding into {data} stopped part way: ")
    assert said.endswith(f"is refused: delete {data / 'state.db'}* and rebuild again")

    # The partial state decides nothing: the service, a run and a rebuild refuse it.
    refusal = (
        f"{data} holds the partial state of a `goodwill rebuild` that stopped part way; it"
        f" must not be run: delete {data}/state.db* and rebuild again"
    )
    service = KafkaService(kafka_config, compiled, ServiceOptions(data_dir=data))
    with pytest.raises(StateModeError, match="partial state"):
        service.run()
    again = rebuild_cli(kafka_config, data)
    assert (again.returncode, again.stderr) == (1, f"goodwill: {refusal}\n")
    ran = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "--data-dir", str(data), "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (ran.returncode, ran.stderr) == (1, f"goodwill: {refusal}\n")

    for name in [p.name for p in data.iterdir() if p.name.startswith("state.db")]:
        (data / name).unlink()
    done = rebuild_cli(kafka_config, data)
    assert done.returncode == 0, done.stderr
    want = clean_run_digest(kafka_config, compiled, tmp_path / "clean", len(embedded))
    assert digest(data) == want


@pytest.mark.kafka
def test_a_rebuild_tells_how_far_it_has_got_after_each_batch(
    kafka_config: KafkaConfig, compiled: CompiledSet, tmp_path: Path
) -> None:
    from engine.rebuild import rebuild
    from engine.service_options import ServiceOptions

    lose_state_mid_stream(kafka_config, compiled, tmp_path / "lost")
    read: list[int] = []
    options = ServiceOptions(data_dir=tmp_path / "rebuilt", batch=100, idle_polls=3)
    report = rebuild(kafka_config, compiled, options, progress=lambda t: read.append(t.read))
    # Batches of at most 100 records, through the recorded history and on past it.
    assert len(read) >= len(shop_lines()) // 100
    assert read == sorted(read) and read[-1] == report.inputs == len(shop_lines())


@pytest.mark.kafka
def test_rebuild_refuses_a_data_dir_that_holds_state(
    kafka_config: KafkaConfig, compiled: CompiledSet, tmp_path: Path
) -> None:
    create_topics(kafka_config, partitions=1)
    produce(kafka_config, shop_lines()[:20])
    with running(kafka_config, compiled, tmp_path / "live"):
        read_topic(kafka_config, kafka_config.decisions_topic, 20)
    result = rebuild_cli(kafka_config, tmp_path / "live")
    assert result.returncode == 2
    assert "already holds state" in result.stderr


@pytest.mark.kafka
def test_recorded_decisions_stay_facts_when_the_policy_set_changed(
    kafka_config: KafkaConfig, compiled: CompiledSet, tmp_path: Path
) -> None:
    create_topics(kafka_config, partitions=1)
    lines = shop_lines()[:200]
    good = sum(not _invalid(line) for line in lines)
    produce(kafka_config, lines)
    with running(kafka_config, compiled, tmp_path / "lost"):
        before = read_topic(kafka_config, kafka_config.decisions_topic, good, 30, DECIDED)
    recorded = {json.loads(r.value)["event_id"]: r.value for r in before}

    # A new policy set (different words, so a different hash) is live when the state is lost.
    changed = tmp_path / "policies"
    shutil.copytree(POLICIES, changed)
    target = changed / "replace-broken-part.yaml"
    target.write_text(target.read_text().replace("I'm sorry it broke.", "Sorry it broke."))
    new = load(changed)
    assert new.hash != compiled.hash

    result = rebuild_cli(kafka_config, tmp_path / "rebuilt", changed)
    assert result.returncode == 0, result.stderr
    with StateStore.open(tmp_path / "rebuilt" / "state.db") as store:
        outputs = list(store.outputs())
        assert store.meta("policy_set") == new.hash
    decisions = [v for v in outputs if DECIDED in v]
    assert len(decisions) == good
    for value in decisions:  # byte for byte what the old set decided, not re-decided
        assert recorded[json.loads(value)["event_id"]] == value
        assert json.loads(value)["data"]["policy_set"] == compiled.hash
    last = json.loads(outputs[-1])
    assert last["type"] == "policy_set.activated" and last["data"]["policy_set"] == new.hash


def test_a_report_of_empty_topics_says_so_and_shows_a_digest_only_once_made() -> None:
    from engine.rebuild import RebuildReport

    assert RebuildReport().empty
    assert "digest" not in RebuildReport(inputs=3).fields()
    assert not RebuildReport(inputs=3).empty and not RebuildReport(unreadable=1).empty
    assert RebuildReport(recorded=2, digest="ab").fields()["digest"] == "ab"
