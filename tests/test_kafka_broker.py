"""Kafka plumbing (events/kafka.py) and the test broker (tests/kafka_broker.py) on a real broker."""

from __future__ import annotations

import dataclasses
import logging
import socket
from contextlib import closing
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.errors import MessageSizeTooLargeError
from kafka.structs import OffsetAndMetadata

from events.kafka import (
    KafkaConfig,
    KafkaUnavailable,
    create_topics,
    make_consumer,
    make_producer,
)
from tests import kafka_broker
from tests.kafka_broker import consume


@pytest.mark.kafka
def test_round_trip_keeps_key_value_and_headers(kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, partitions=1)
    headers = [("type", b"item.defect_reported"), ("empty", b""), ("type", b"repeated")]
    with closing(make_producer(kafka_config)) as producer:
        producer.send(
            kafka_config.events_topic, key=b"customer-1", value=b'{"a": 1}', headers=headers
        ).get(timeout=10)
    with closing(make_consumer(kafka_config, group=False)) as consumer:
        consumer.assign([TopicPartition(kafka_config.events_topic, 0)])
        records = consume(consumer, 1)
    assert [(r.key, r.value, r.headers) for r in records] == [(b"customer-1", b'{"a": 1}', headers)]


@pytest.mark.kafka
def test_one_key_lands_on_one_partition_in_order(kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, partitions=4)
    topic = kafka_config.events_topic
    with closing(make_producer(kafka_config)) as producer:
        futures = []
        for i in range(40):
            futures.append(producer.send(topic, key=b"customer-7", value=b"%d" % i))
            producer.send(topic, key=b"other-%d" % i, value=b"x")
        producer.flush(timeout=10)
        partitions = {f.get(timeout=10).partition for f in futures}
    assert len(partitions) == 1
    with closing(make_consumer(kafka_config)) as consumer:
        consumer.subscribe([topic])
        records = consume(consumer, 80)
    assert len(records) == 80
    mine = [r for r in records if r.key == b"customer-7"]
    assert {r.partition for r in mine} == partitions
    assert [r.value for r in mine] == [b"%d" % i for i in range(40)]


@pytest.mark.kafka
def test_group_resumes_after_committed_offset(kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, partitions=1)
    topic = kafka_config.events_topic
    with closing(make_producer(kafka_config)) as producer:
        for i in range(10):
            producer.send(topic, key=b"c", value=b"%d" % i)
        producer.flush(timeout=10)

    with closing(make_consumer(kafka_config)) as first:
        first.subscribe([topic])
        seen = consume(first, 6)
        assert [r.offset for r in seen] == list(range(6))
        # Commit after the 4th record only: the 5th and 6th were read but not committed.
        first.commit({TopicPartition(topic, 0): OffsetAndMetadata(seen[3].offset + 1, "", -1)})
        assert first.committed(TopicPartition(topic, 0)) == 4

    with closing(make_consumer(kafka_config)) as second:
        second.subscribe([topic])
        resumed = consume(second, 6)
    assert [(r.offset, r.value) for r in resumed] == [(i, b"%d" % i) for i in range(4, 10)]


@pytest.mark.kafka
def test_create_topics_is_idempotent(
    kafka_config: KafkaConfig, caplog: pytest.LogCaptureFixture
) -> None:
    wanted = [
        kafka_config.events_topic,
        kafka_config.decisions_topic,
        kafka_config.deadletter_topic,
        kafka_config.budget_topic,
    ]
    assert sorted(create_topics(kafka_config, partitions=2)) == sorted(wanted)
    with caplog.at_level(logging.INFO, logger="events.kafka"):
        assert create_topics(kafka_config, partitions=2) == []
        assert create_topics(kafka_config, partitions=3) == []
    # Only ours: the client's own selector warns of a slow task when the machine is busy.
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "events.kafka" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 3
    assert all("exists with 2 partition(s), asked for 3" in w for w in warnings)
    with closing(make_consumer(kafka_config, group=False)) as consumer:
        assert consumer.partitions_for_topic(kafka_config.events_topic) == {0, 1}


@pytest.mark.kafka
def test_max_message_bytes_limits_what_the_producer_sends(kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, partitions=1)
    topic = kafka_config.events_topic
    five_mb = b"x" * (5 * 1024 * 1024)
    with closing(make_producer(kafka_config)) as producer, pytest.raises(MessageSizeTooLargeError):
        producer.send(topic, value=five_mb)
    roomy = dataclasses.replace(kafka_config, max_message_bytes=6 * 1024 * 1024)
    with closing(make_producer(roomy)) as producer:
        producer.send(topic, value=five_mb).get(timeout=10)
    with closing(make_consumer(roomy, group=False)) as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        records = consume(consumer, 1)
    assert [len(r.value) for r in records] == [len(five_mb)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_unreachable_broker_raises_kafka_unavailable() -> None:
    # Nothing listens: known at once, without waiting out the bootstrap timeout (the
    # message then names no timeout).
    address = f"127.0.0.1:{_closed_port()}"
    cfg = KafkaConfig(bootstrap_servers=address, bootstrap_timeout_ms=60_000)
    for factory in (make_producer, make_consumer, lambda c: create_topics(c, 1)):
        with pytest.raises(KafkaUnavailable) as raised:
            factory(cfg)
        refused = f"{address}: connection refused (nothing listens there)"
        assert str(raised.value) == f"cannot reach Kafka at {address}: {refused}"


def test_a_listener_that_does_not_speak_kafka_is_tried_for_the_bootstrap_timeout() -> None:
    with socket.socket() as mute:  # accepts connections, never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        address = f"127.0.0.1:{mute.getsockname()[1]}"
        cfg = KafkaConfig(bootstrap_servers=address, bootstrap_timeout_ms=500)
        with pytest.raises(KafkaUnavailable) as raised:
            make_producer(cfg)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach Kafka at {address} within 500 ms")
    assert "TCP connects, but no Kafka handshake completed" in message
    assert message.count("KafkaTimeoutError") == 1


def test_config_from_env_reads_goodwill_variables_and_overrides_win() -> None:
    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": "generic:9092",
        "GOODWILL_KAFKA_BOOTSTRAP_SERVERS": "specific:9092",
        "GOODWILL_KAFKA_EVENTS_TOPIC": "in",
        "GOODWILL_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "GOODWILL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "GOODWILL_KAFKA_SASL_PLAIN_USERNAME": "svc",
        "GOODWILL_KAFKA_SASL_PLAIN_PASSWORD": "secret",
        "GOODWILL_KAFKA_SESSION_TIMEOUT_MS": "12000",
        "GOODWILL_KAFKA_GROUP_ID": "",
    }
    cfg = KafkaConfig.from_env(environ, group_id="override")
    assert (cfg.bootstrap_servers, cfg.events_topic, cfg.security_protocol) == (
        "specific:9092",
        "in",
        "SASL_SSL",
    )
    assert (cfg.session_timeout_ms, cfg.group_id) == (12000, "override")
    assert KafkaConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "h:1"}).bootstrap_servers == "h:1"
    with pytest.raises(ValueError, match="GOODWILL_KAFKA_BOOTSTRAP_SERVERS"):
        KafkaConfig.from_env({})
    with pytest.raises(ValueError, match="GOODWILL_KAFKA_MAX_MESSAGE_BYTES='1MB'"):
        KafkaConfig.from_env(
            {"KAFKA_BOOTSTRAP_SERVERS": "h:1", "GOODWILL_KAFKA_MAX_MESSAGE_BYTES": "1MB"}
        )
    ipv6 = KafkaConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "[::1]:9092, h:65535"})
    assert ipv6.bootstrap_servers == "[::1]:9092, h:65535"
    for bad in ("notaport", "h:", ":9092", "h:0", "h:65536", "h:1,h"):
        with pytest.raises(ValueError, match="is not a host:port address"):
            KafkaConfig.from_env({}, bootstrap_servers=bad)


def test_security_settings_that_cannot_work_are_refused_before_connecting(
    tmp_path: Path,
) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    ok = KafkaConfig("h:1", security_protocol="SSL", ssl_cafile=str(pem))
    assert ok.ssl_cafile == str(pem)
    for settings, message in (
        ({"security_protocol": "SSL", "ssl_cafile": str(tmp_path / "no.pem")}, "no such file"),
        ({"security_protocol": "SASL_SSL"}, "needs a SASL mechanism"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "a user and a"),
    ):
        with pytest.raises(ValueError, match=message):
            KafkaConfig("h:1", **settings)
    sasl = KafkaConfig("h:1", security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER")
    assert sasl.sasl_mechanism == "OAUTHBEARER"  # a token mechanism: no user, no password


@pytest.mark.kafka
def test_start_broker_retries_on_a_taken_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, _closed_port()])
        monkeypatch.setattr(kafka_broker, "_free_port", lambda: next(ports))
        broker = kafka_broker.start_broker(tmp_path_factory.mktemp("tansu-retry"))
    try:
        assert broker.bootstrap != f"127.0.0.1:{taken}"
        assert "AddrInUse" in (broker.log_path.parent / f"tansu-{taken}.log").read_text()
        assert broker.process.poll() is None
    finally:
        kafka_broker.stop_broker(broker)
    assert broker.process.returncode is not None
