"""The Kafka commands of the CLI: topics create, emit, and the service's metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engine.compile import CompiledSet, load
from events.kafka import KafkaConfig, create_topics
from tests.test_kafka_service import (
    DECIDED,
    ROOT,
    SHOP,
    produce,
    read_topic,
    running,
    shop_lines,
)


@pytest.fixture(scope="module")
def compiled() -> CompiledSet:
    return load(ROOT / "policies")


def goodwill(
    cfg: KafkaConfig, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    flags = [
        "--kafka", cfg.bootstrap_servers,
        "--events-topic", cfg.events_topic,
        "--decisions-topic", cfg.decisions_topic,
        "--deadletter-topic", cfg.deadletter_topic,
        "--budget-topic", cfg.budget_topic,
    ]  # fmt: skip
    command = [sys.executable, "-m", "engine.cli", *args, *flags]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=60)


@pytest.mark.kafka
def test_topics_create_is_idempotent(kafka_config: KafkaConfig) -> None:
    first = goodwill(kafka_config, "topics", "create", "--partitions", "3")
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().count(": created") == 4
    again = goodwill(kafka_config, "topics", "create", "--partitions", "3")
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode().count("exists, left alone") == 4


EVENT = {
    "event_id": "emit-1",
    "type": "order.placed",
    "occurred_at": "2026-11-02T08:00:00Z",
    "customer_id": "c-1",
    "source": "orders",
    "data": {
        "order_id": "O-1",
        "amount": "12.50",
        "currency": "USD",
        "items": [{"sku": "SKU-1", "qty": 1, "unit_price": "12.50"}],
        "channel": "web",
    },
}


@pytest.mark.kafka
def test_emit_sends_valid_events_keyed_and_refuses_invalid_ones(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    create_topics(kafka_config, partitions=2)
    bad = {**EVENT, "event_id": "emit-2", "data": {**EVENT["data"], "amount": 12.5}}
    rep = {
        "event_id": "emit-3",
        "type": "rep.assigned",
        "occurred_at": "2026-11-02T08:00:00Z",
        "data": {"rep_id": "ana", "team": "east", "lead": "lena"},
    }
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in (EVENT, bad, rep)) + "\n")
    result = goodwill(kafka_config, "emit", str(source))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert f"{source}:2: schema_invalid: data.amount" in err, err
    assert "sent 2 event(s)" in result.stdout.decode()
    records = read_topic(kafka_config, kafka_config.events_topic, 3)
    # the rep's assignment goes to every partition (each instance applies policies that
    # read rep.* facts), still keyed by the rep
    assert sorted((r.key, json.loads(r.value)["event_id"]) for r in records) == [
        (b"ana", "emit-3"),
        (b"ana", "emit-3"),
        (b"c-1", "emit-1"),
    ]
    assert sorted(r.partition for r in records if r.key == b"ana") == [0, 1]

    # One event (or an array) on stdin; nothing at all is sent when every event is bad.
    result = goodwill(kafka_config, "emit", "-", stdin=json.dumps([bad]).encode())
    assert result.returncode == 1 and b"<stdin>[0]: schema_invalid" in result.stderr
    one = {**EVENT, "event_id": "emit-4"}
    result = goodwill(kafka_config, "emit", "-", stdin=json.dumps(one, indent=2).encode())
    assert result.returncode == 0, result.stderr
    records = read_topic(kafka_config, kafka_config.events_topic, 4)
    assert sorted(json.loads(r.value)["event_id"] for r in records) == [
        "emit-1",
        "emit-3",
        "emit-3",
        "emit-4",
    ]


@pytest.mark.kafka
def test_the_python_helper_takes_decimals_and_datetimes_and_refuses_the_rest(
    kafka_config: KafkaConfig,
) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from events.codec import DecodeError
    from events.producer import EventProducer

    create_topics(kafka_config, partitions=1)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    python = {**EVENT, "event_id": "py-1", "occurred_at": at}
    python["data"] = {**EVENT["data"], "amount": Decimal("12.50")}
    with EventProducer(kafka_config) as producer:
        sent = producer.send(python)
        for bad in ({**EVENT, "event_id": "s\ud800"}, {**EVENT, "data": {1, 2}}):
            with pytest.raises(DecodeError):
                producer.send(bad)
    assert sent.occurred_at == at and sent.data.amount == Decimal("12.50")  # type: ignore[attr-defined]
    [record] = read_topic(kafka_config, kafka_config.events_topic, 1)
    assert json.loads(record.value)["data"]["amount"] == "12.50"


@pytest.mark.kafka
def test_the_python_helper_warns_of_an_event_dated_well_ahead_and_sends_it(
    kafka_config: KafkaConfig, caplog: pytest.LogCaptureFixture
) -> None:
    from datetime import UTC, datetime, timedelta

    from events.producer import EventProducer

    create_topics(kafka_config, partitions=1)
    soon = datetime.now(UTC) + timedelta(hours=2)  # within clock skew: not warned of
    typo = datetime.now(UTC) + timedelta(days=26_645, hours=1)  # 2099 for 2026
    with (
        caplog.at_level("WARNING", logger="goodwill.producer"),
        EventProducer(kafka_config) as producer,
    ):
        producer.send({**EVENT, "event_id": "soon", "occurred_at": soon})
        producer.send({**EVENT, "event_id": "typo", "occurred_at": typo})
    (said,) = [r.getMessage() for r in caplog.records if r.name == "goodwill.producer"]
    assert said.startswith(f"typo is dated {typo.isoformat()}, 26645 days ahead")
    assert len(read_topic(kafka_config, kafka_config.events_topic, 2)) == 2  # both sent


def test_emit_without_kafka_feeds_the_embedded_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "GOODWILL_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    source = tmp_path / "one.json"
    source.write_text(json.dumps(EVENT))
    data = tmp_path / "data"
    command = [sys.executable, "-m", "engine.cli"]
    sent = subprocess.run(
        [*command, "emit", str(source), "--data-dir", str(data)], capture_output=True
    )
    assert sent.returncode == 0, sent.stderr
    run = subprocess.run(
        [*command, "run", "--data-dir", str(data), "--json", "--policies", "policies"],
        capture_output=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr
    decided = [json.loads(line) for line in run.stdout.splitlines()]
    assert [d["data"]["caused_by"] for d in decided if d["type"] == "decision.made"] == ["emit-1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.kafka
def test_metrics_endpoint_serves_the_named_metrics(
    kafka_config: KafkaConfig, compiled: CompiledSet, tmp_path: Path
) -> None:
    create_topics(kafka_config, partitions=2)
    lines = shop_lines()
    produce(kafka_config, lines)
    port = _free_port()
    with running(kafka_config, compiled, tmp_path / "data", metrics_port=port):
        read_topic(kafka_config, kafka_config.decisions_topic, len(lines) - 7, 30, DECIDED)
        lags = [
            f'goodwill_consumer_lag{{partition="{p}",topic="{kafka_config.events_topic}"}} 0.0'
            for p in (0, 1)
        ]
        wanted = ["goodwill_budget_remaining{", *lags]
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline and not all(w in text for w in wanted):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                text = page.read().decode()
        for probe in ("healthz", "readyz"):  # deciding: alive and ready
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{probe}", timeout=5) as page:
                assert (page.status, page.read()) == (200, b"ok\n")
    assert f"goodwill_events_consumed_total {float(len(lines))}" in text
    assert 'goodwill_decisions_total{outcome="authorized"}' in text
    assert 'goodwill_policy_decisions_total{policy="replace-broken-part"}' in text
    assert 'goodwill_deadlettered_total{reason="invalid_json"} 1.0' in text
    assert "goodwill_decision_latency_seconds_bucket" in text
    assert all(lag in text for lag in lags), text  # caught up: nothing left to decide
    assert 'goodwill_budget_remaining{budget="expedite",owner="ana",period="2026-11"}' in text
    assert "goodwill_kafka_connected 1.0" in text


def test_a_damaged_state_file_stops_the_service_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "state.db").write_bytes(b"not a database" * 1000)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GOODWILL_", "KAFKA_BOOTSTRAP"))
    }
    where = ["--data-dir", str(data), "--policies", str(ROOT / "policies")]
    for command in ("run", "rebuild"):
        broker = f"127.0.0.1:{_free_port()}"  # never reached: the state is read first
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli", command, "--kafka", broker, *where],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (
            1,
            f"goodwill: the state in {data}: file is not a database\n",
        ), command


def test_unreachable_broker_is_retried_with_backoff_and_sigterm_still_exits_0(
    tmp_path: Path,
) -> None:
    port = _free_port()  # nothing listens there
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GOODWILL_", "KAFKA_BOOTSTRAP"))
    }
    env["GOODWILL_KAFKA_BOOTSTRAP_TIMEOUT_MS"] = "300"
    http = _free_port()
    command = [
        sys.executable, "-m", "engine.cli", "run", "--kafka", f"127.0.0.1:{port}",
        "--data-dir", str(tmp_path / "data"), "--policies", str(ROOT / "policies"),
        "--metrics-port", str(http), "--retain-days", "400",
    ]  # fmt: skip
    service = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    retries: list[dict[str, str]] = []
    try:
        assert service.stderr is not None
        deadline = time.monotonic() + 30
        while len(retries) < 3 and time.monotonic() < deadline:
            line = service.stderr.readline()
            if "retrying" in line:
                retries.append(json.loads(line))
        # Retrying is alive (no restart would help) but not ready, and says why.
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5) as page:
            assert page.status == 200
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=5)
        assert answer.value.code == 503
        assert answer.value.read().decode().startswith("Kafka unavailable: ")
    finally:
        service.send_signal(signal.SIGTERM)
        service.communicate(timeout=30)
    assert len(retries) == 3
    assert "connection refused" in retries[0]["msg"]
    waits = [float(r["msg"].split("retrying in ")[1].split(" s")[0]) for r in retries]
    assert waits == sorted(waits) and waits[1] == 2 * waits[0]  # exponential
    assert service.returncode == 0
    status = subprocess.run(
        [sys.executable, "-m", "engine.cli", "status", "--data-dir", str(tmp_path / "data"),
         "--json"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert json.loads(status.stdout)["retain_days"] == 400  # the store took the setting


@pytest.mark.kafka
def test_redrive_sends_dead_letters_again_with_their_original_key_value_and_headers(
    kafka_config: KafkaConfig,
) -> None:
    from events.kafka_log import KafkaLog

    create_topics(kafka_config, partitions=2)
    value = json.dumps(EVENT).encode()

    def goodwill_headers(reason: str, offset: int) -> list[tuple[str, bytes]]:
        return [
            ("goodwill.reason", reason.encode()),
            ("goodwill.detail", b"ZeroDivisionError: division by zero"),
            ("goodwill.source.topic", kafka_config.events_topic.encode()),
            ("goodwill.source.partition", b"1"),
            ("goodwill.source.offset", str(offset).encode()),
        ]

    dlq = KafkaLog(kafka_config)
    try:
        mine = [("trace", b"t-1")]
        dlq.append(
            kafka_config.deadletter_topic,
            b"c-1",
            value,
            mine + goodwill_headers("processing_failed", 7),
        )
        dlq.append(kafka_config.deadletter_topic, b"c-2", b"{", goodwill_headers("invalid_json", 8))
        cut = [*goodwill_headers("processing_failed", 9), ("goodwill.truncated.bytes", b"2000000")]
        dlq.append(kafka_config.deadletter_topic, b"c-3", value[:10], cut)
        dlq.flush()
    finally:
        dlq.close()

    listed = goodwill(kafka_config, "redrive", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout.decode()
    assert f"{kafka_config.events_topic}[1]@7  processing_failed  ZeroDivisionError" in out
    assert f"{kafka_config.events_topic}[1]@9  processing_failed  not sent: only a cut copy" in out
    assert "would send 1 dead letter(s) (processing_failed)" in out
    assert "left alone: invalid_json 1" in out

    sent = goodwill(kafka_config, "redrive")
    assert sent.returncode == 0, sent.stderr
    assert f"sent 1 dead letter(s) (processing_failed) to {kafka_config.events_topic}" in (
        sent.stdout.decode()
    )
    (record,) = read_topic(kafka_config, kafka_config.events_topic, 1)
    assert (record.key, record.value, list(record.headers)) == (b"c-1", value, mine)


@pytest.mark.kafka
def test_explain_finds_a_decision_on_the_decisions_topic(
    kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    from engine.compile import load as load_policies
    from engine.embedded import run_embedded
    from engine.placement import partition_for
    from events.kafka import make_producer
    from events.log import scan_topic

    create_topics(kafka_config, partitions=4)
    run_embedded(load_policies(ROOT / "policies"), tmp_path / "made", SHOP, batch=500)
    made = [r.value for r in scan_topic(tmp_path / "made" / "log", "goodwill.decisions")]
    decisions = [json.loads(v) for v in made if b'"type":"decision.made"' in v]
    producer = make_producer(kafka_config)
    for value in made:
        doc = json.loads(value)
        key = doc["customer_id"].encode() if doc.get("customer_id") else None
        producer.send(kafka_config.decisions_topic, key=key, value=value)
    producer.flush()
    producer.close()
    target = decisions[len(decisions) // 2]
    customer = target["customer_id"]
    empty = tmp_path / "no-state"

    found = goodwill(kafka_config, "explain", target["event_id"], "--data-dir", str(empty))
    assert found.returncode == 0, found.stderr
    assert found.stdout.decode().startswith(f"decision {target['event_id']}: ")
    by_cause = goodwill(
        kafka_config,
        "explain",
        target["data"]["caused_by"],
        "--data-dir",
        str(empty),
        "--customer",
        customer,
    )
    assert by_cause.returncode == 0, by_cause.stderr
    assert f"customer {customer}'s partition" in by_cause.stderr.decode()
    assert f"caused by   {target['data']['cause_type']} {target['data']['caused_by']}" in (
        by_cause.stdout.decode()
    )

    # Another customer's partition does not hold it: the lookup reads only that one.
    mine = partition_for(customer.encode(), [0, 1, 2, 3])
    other = next(
        c
        for c in (f"c-{i:03d}" for i in range(100))
        if partition_for(c.encode(), [0, 1, 2, 3]) != mine
    )
    missed = goodwill(
        kafka_config, "explain", target["event_id"], "--data-dir", str(empty), "--customer", other
    )
    assert missed.returncode == 1
    assert b"no decision with id or cause" in missed.stderr
