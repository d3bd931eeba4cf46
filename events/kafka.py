"""Kafka plumbing: connection settings and client factories (no engine logic).

Clients speak bytes in and bytes out; the codec lives elsewhere, and so does what is built on
these clients: the `EventLog` on Kafka (`events.kafka_log`) and the helper backend teams send
events with (`events.producer`). Behaviour measured on Tansu (the test broker, see
tests/kafka_broker.py) with kafka-python 3.0:

- ``acks="all"`` with ``enable_idempotence=True`` works: the producer obtains a producer id.
- Tansu enforces no message size limit (a 100 MB record was accepted), so ``max_message_bytes``
  is enforced here, client side: ``send()`` raises ``MessageSizeTooLargeError`` synchronously
  for a record whose serialized size exceeds it. The record overhead counts, so a value of
  exactly ``max_message_bytes`` is too large. A real broker's ``message.max.bytes`` (default
  ~1 MB) must be at least this value.
- A consumer returns a record larger than ``max_partition_fetch_bytes`` on its own (KIP-74).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypedDict

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.errors import for_code as error_for_code
from kafka.partitioner import DefaultPartitioner, murmur2

from events.log import Record

log = logging.getLogger(__name__)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class GroupTimeouts(TypedDict):
    session_timeout_ms: int
    heartbeat_interval_ms: int


# Tansu makes a group member wait session_timeout/2 before its join completes, so tests pass
# these as overrides, KafkaConfig(..., **FAST_GROUP_TIMEOUTS), to join in about a second.
# Real Kafka refuses a session timeout below its group.min.session.timeout.ms (6000 by
# default): never use these in production.
FAST_GROUP_TIMEOUTS: Final = GroupTimeouts(session_timeout_ms=2000, heartbeat_interval_ms=500)


class KafkaUnavailable(Exception):
    """The brokers could not be reached; the message says where and what failed, in one line."""


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str
    events_topic: str = "goodwill.events"
    decisions_topic: str = "goodwill.decisions"
    deadletter_topic: str = "goodwill.deadletter"
    budget_topic: str = "goodwill.budget"  # --budget-stage kafka: one partition
    group_id: str = "goodwill"
    client_id: str = "goodwill"
    security_protocol: str = "PLAINTEXT"  # one of SECURITY_PROTOCOLS (kafka-python names)
    sasl_mechanism: str | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    max_message_bytes: int = 1_048_576
    bootstrap_timeout_ms: int = 10000  # how long a factory tries to reach a broker
    # How long a fetch may wait for data. Kafka answers as soon as there is any; Tansu may
    # hold a fetch that found nothing for the whole wait (with kafka-python's 500 ms
    # default, one hop at 200 records/s took p50 136 ms). Measured on Tansu: one hop at
    # 200/s p50/p99 12/22 ms with 20 ms, 8/18 ms with 5 ms; at 2,000/s no difference (a
    # fetch that finds records answers at once); an idle consumer costs 8 % of a CPU (and
    # Tansu 5 %) with 20 ms, 17 % (8 %) with 5 ms.
    fetch_max_wait_ms: int = 20
    # Producer batching, per partition. Decisions are ~0.8 KB (mean 784 B in
    # bench/kafka_e2e.py): kafka-python's 16 KB default fills (and wakes the sender thread)
    # every ~20 records; 256 KB more than doubled a producer's rate on Tansu (14k -> 30k
    # records/s of 1.5 KB, 19k -> 44k of 300 B).
    producer_batch_bytes: int = 262_144
    # How long the producer waits for more records before sending a batch: the upper bound
    # it adds to a lone record's latency. A flush sends at once whatever the linger.
    linger_ms: int = 5

    def __post_init__(self) -> None:
        """Refuse settings that could only fail at the broker, after a long wait."""
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"security_protocol {self.security_protocol!r} is not one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.security_protocol.startswith("SASL_") and not self.sasl_mechanism:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs a SASL mechanism"
                " (--sasl-mechanism or GOODWILL_KAFKA_SASL_MECHANISM, e.g. PLAIN, SCRAM-SHA-512)"
            )
        if (self.sasl_mechanism or "").upper().startswith(("PLAIN", "SCRAM")) and not (
            self.sasl_plain_username and self.sasl_plain_password
        ):
            raise ValueError(
                f"SASL mechanism {self.sasl_mechanism} needs a user and a password"
                " (--sasl-username, and GOODWILL_KAFKA_SASL_PLAIN_PASSWORD)"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} {path}: no such file")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> KafkaConfig:
        """Read the settings from environment variables; ``overrides`` win over them.

        Empty variables count as unset. Every field ``name`` is read from
        ``GOODWILL_KAFKA_<NAME>``:

        - ``GOODWILL_KAFKA_BOOTSTRAP_SERVERS`` (else ``KAFKA_BOOTSTRAP_SERVERS``): comma-separated
          ``host:port`` list; required unless given as an override.
        - ``GOODWILL_KAFKA_EVENTS_TOPIC``, ``..._DECISIONS_TOPIC``, ``..._DEADLETTER_TOPIC``: topic
          names (default ``goodwill.events``, ``goodwill.decisions``, ``goodwill.deadletter``).
        - ``GOODWILL_KAFKA_GROUP_ID``, ``GOODWILL_KAFKA_CLIENT_ID``: consumer group and client id
          (default ``goodwill``).
        - ``GOODWILL_KAFKA_SECURITY_PROTOCOL``: PLAINTEXT (default), SSL, SASL_PLAINTEXT or
          SASL_SSL, case-insensitive.
        - ``GOODWILL_KAFKA_SASL_MECHANISM`` (e.g. PLAIN, SCRAM-SHA-512),
          ``GOODWILL_KAFKA_SASL_PLAIN_USERNAME``, ``GOODWILL_KAFKA_SASL_PLAIN_PASSWORD``.
        - ``GOODWILL_KAFKA_SSL_CAFILE``, ``..._SSL_CERTFILE``, ``..._SSL_KEYFILE``: PEM file paths.
        - ``GOODWILL_KAFKA_SESSION_TIMEOUT_MS`` (default 10000),
          ``GOODWILL_KAFKA_HEARTBEAT_INTERVAL_MS`` (default 3000): consumer group liveness.
        - ``GOODWILL_KAFKA_MAX_MESSAGE_BYTES`` (default 1048576): largest record produced.
        - ``GOODWILL_KAFKA_BOOTSTRAP_TIMEOUT_MS`` (default 10000): how long to try to connect.
        - ``GOODWILL_KAFKA_FETCH_MAX_WAIT_MS`` (default 20): longest wait of one fetch.
        - ``GOODWILL_KAFKA_PRODUCER_BATCH_BYTES`` (default 262144): producer batch size per
          partition; ``GOODWILL_KAFKA_LINGER_MS`` (default 5): longest wait to fill one.
        """
        values: dict[str, Any] = {}
        generic = environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if generic:
            values["bootstrap_servers"] = generic
        for field in dataclasses.fields(cls):
            variable = f"GOODWILL_KAFKA_{field.name.upper()}"
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            if field.type in ("int", int):
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{variable}={raw!r} is not a whole number") from None
            else:
                values[field.name] = raw
        if "security_protocol" in values:
            values["security_protocol"] = values["security_protocol"].upper()
        values.update(overrides)
        if not values.get("bootstrap_servers"):
            raise ValueError(
                "no Kafka brokers configured: set GOODWILL_KAFKA_BOOTSTRAP_SERVERS "
                "(or KAFKA_BOOTSTRAP_SERVERS) to host:port[,host:port...]"
            )
        for address in str(values["bootstrap_servers"]).split(","):
            if _host_port(address) is None:
                raise ValueError(
                    f"Kafka broker {address.strip()!r} is not a host:port address"
                    " (e.g. 127.0.0.1:9092; several separated by commas)"
                )
        return cls(**values)

    def client_settings(self) -> dict[str, Any]:
        """Connection keyword arguments shared by every kafka-python client."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_plain_username,
            "sasl_plain_password": self.sasl_plain_password,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }


def make_producer(cfg: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """A bytes producer that loses nothing it acknowledged and never writes a record twice.

    kafka-python retries without limit inside ``delivery_timeout_ms``; idempotence keeps those
    retries from duplicating or reordering records of one partition. ``overrides`` are
    kafka-python producer settings (e.g. ``max_block_ms``).
    """
    settings: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": cfg.linger_ms,
        "batch_size": cfg.producer_batch_bytes,
        "compression_type": None,
        "max_request_size": cfg.max_message_bytes,
        "partitioner": KeyHashCachingPartitioner(),
    }
    return _connect(cfg, KafkaProducer, **(settings | overrides))


class KeyHashCachingPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """kafka-python's DefaultPartitioner (murmur2 of the key, like the Java client) that
    remembers each key's hash: keys (customers) repeat, and choosing a partition (the
    pure-Python murmur2, sorting and set building) was ~16 % of a producing process's
    samples in py-spy. Same partitions as DefaultPartitioner for every key (checked on
    20,000 keys and 1-12 partitions); records without a key are left to it."""

    CACHE_SIZE: Final = 1 << 16  # keys; the cache is emptied when full

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}
        self._partitions: dict[str, tuple[int, ...]] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if serialized_key is None:
            return int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        found = cluster.partitions_for_topic(topic)
        if found is None:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        partitions = self._partitions.get(topic)
        if partitions is None or len(partitions) != len(found):
            partitions = self._partitions[topic] = tuple(sorted(found))
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= self.CACHE_SIZE:
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]


def make_consumer(cfg: KafkaConfig, *, group: bool = True) -> KafkaConsumer:
    """A bytes consumer that commits only when told to.

    With ``group`` it joins ``cfg.group_id`` (call ``subscribe``); without, it has no group and
    no committed offsets (call ``assign``).
    """
    return _connect(
        cfg,
        KafkaConsumer,
        group_id=cfg.group_id if group else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=cfg.session_timeout_ms,
        heartbeat_interval_ms=cfg.heartbeat_interval_ms,
        max_partition_fetch_bytes=cfg.max_message_bytes,
        fetch_max_wait_ms=cfg.fetch_max_wait_ms,
    )


def create_topics(cfg: KafkaConfig, partitions: int, replication: int = 1) -> list[str]:
    """Create the events, decisions, dead-letter and budget topics; return the ones this
    call created. The budget topic has one partition whatever ``partitions`` says: its
    reader is the single writer of every budget's ledger (engine/budget_stage.py).

    Topics that already exist are left alone and logged, with a warning when their partition
    count differs from the one asked for (a changed count moves customers between partitions).
    """
    counts = {t: partitions for t in (cfg.events_topic, cfg.decisions_topic, cfg.deadletter_topic)}
    counts[cfg.budget_topic] = 1
    admin = _connect(cfg, KafkaAdminClient)
    try:
        specs = {
            t: {"num_partitions": n, "replication_factor": replication} for t, n in counts.items()
        }
        response = admin.create_topics(specs, raise_errors=False)
        created, existing = [], []
        for result in response["topics"]:
            error = error_for_code(result["error_code"])
            if result["error_code"] == 0:
                created.append(result["name"])
            elif error is TopicAlreadyExistsError:
                existing.append(result["name"])
            else:
                detail = result.get("error_message") or error.__name__
                raise ValueError(
                    f"cannot create topic {result['name']!r} with"
                    f" {counts.get(result['name'], partitions)} partition(s), "
                    f"replication {replication} on {cfg.bootstrap_servers}: {detail}"
                )
        if created:
            admin.wait_for_topics(created, timeout_ms=cfg.bootstrap_timeout_ms)
        for topic in admin.describe_topics(existing) if existing else []:
            found, asked = len(topic["partitions"]), counts.get(topic["name"], partitions)
            level = logging.INFO if found == asked else logging.WARNING
            message = "topic %s exists with %d partition(s), asked for %d; left alone"
            log.log(level, message, topic["name"], found, asked)
        return created
    finally:
        admin.close()


def _connect(cfg: KafkaConfig, client: Any, **settings: Any) -> Any:
    # kafka-python reaches a broker while constructing a client; a failure there is a
    # configuration or network problem that the operator must see in one line. When every
    # address refuses or does not resolve, that is known at once: no need to wait out
    # bootstrap_timeout_ms (a service retrying a stopped broker would wait it every time).
    addresses = cfg.bootstrap_servers.split(",")
    reasons = [probe(address, timeout_s=0.5) for address in addresses]
    if all(reason.startswith(_HOPELESS) for reason in reasons):
        found = "; ".join(f"{a.strip()}: {r}" for a, r in zip(addresses, reasons, strict=True))
        raise KafkaUnavailable(f"cannot reach Kafka at {cfg.bootstrap_servers}: {found}")
    try:
        return client(**cfg.client_settings(), **settings)
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        raise KafkaUnavailable(_explain_unreachable(cfg, exc)) from None


def _explain_unreachable(cfg: KafkaConfig, exc: Exception) -> str:
    reasons = "; ".join(
        f"{address}: {probe(address)}" for address in cfg.bootstrap_servers.split(",")
    )
    text = str(exc)
    error = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
    return (
        f"cannot reach Kafka at {cfg.bootstrap_servers} within {cfg.bootstrap_timeout_ms} ms "
        f"(security_protocol={cfg.security_protocol}): {reasons} [{error}]"
    )


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` split, or None if `address` is not one."""
    host, _, port = address.strip().rpartition(":")
    host = host.strip("[]")  # IPv6 literals are written [::1]:9092
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


# What `probe` says when no Kafka client could do better, however long it tried.
_HOPELESS: Final = ("not a host:port address", "cannot resolve host", "connection refused")


def probe(address: str, timeout_s: float = 1.0) -> str:
    """Why a plain TCP connection to ``host:port`` fails, or that it works."""
    parts = _host_port(address)
    if parts is None:
        return "not a host:port address"
    host, port = parts
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except socket.gaierror:
        return f"cannot resolve host {host!r}"
    except ConnectionRefusedError:
        return "connection refused (nothing listens there)"
    except TimeoutError:
        return f"no answer to a TCP connection within {timeout_s:g} s"
    except OSError as error:
        return error.strerror or str(error)
    return "TCP connects, but no Kafka handshake completed (check security and SASL/TLS settings)"


class PublishError(Exception):
    """Records were not acknowledged by Kafka; nothing may be marked as published."""


def to_record(r: Any) -> Record:
    """A kafka-python ConsumerRecord as an engine `Record` (a tombstone's value as b"")."""
    value = b"" if r.value is None else r.value
    return Record(r.topic, r.partition, r.offset, r.key, value, tuple(r.headers or ()))
