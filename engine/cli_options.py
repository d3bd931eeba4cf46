"""What every `goodwill` command may share: the --data-dir, --policies and --embedded
options, the Kafka flags (`kafka_options`) and the settings they make, how a command refuses
(`fail`), and how it loads a policy set or shows why it is refused (`compile_policies`).

The commands live in one module per audience (`engine.cli_policy`, `engine.cli_events`,
`engine.cli_service`, `engine.cli_explain`) and `engine.cli` puts them on the one `app`;
what they all take is here, so a flag reads and fails the same in every command.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.errors import PolicyError

if TYPE_CHECKING:
    from engine.compile import CompiledSet
    from engine.tally import Tally
    from events.kafka import KafkaConfig


def directory(path: Path) -> Path:
    """A directory option: refused at once if it names something that is not a directory
    (one that does not exist yet is created where it is needed)."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} exists and is not a directory")
    return path


DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        help="where state and the embedded log live",
        envvar="GOODWILL_DATA_DIR",
        callback=directory,
    ),
]


Policies = Annotated[
    Path, typer.Option("--policies", help="policy directory", envvar="GOODWILL_POLICIES")
]


Embedded = Annotated[
    bool, typer.Option("--embedded", help="ignore Kafka settings in the environment")
]


NO_ROOM = (
    "; free space (or raise the quota or the file-size limit), then run the same command"
    " again: what was stored is kept"
)
"""The end of the line a command fails with when a disk or a limit has no room left."""


def room_hint(err: BaseException | None) -> str:
    """`NO_ROOM` if `err` says a disk, a quota or a file-size limit had no room left."""
    full = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return NO_ROOM if isinstance(err, OSError) and err.errno in full else ""


MAYBE_NO_ROOM = "; if the disk is full or a file is at its size limit," + NO_ROOM[1:]
"""The same, for an I/O error that a full disk also gives (SQLite's "disk I/O error")."""


SCRATCH_HINT = (
    "; if that disk is full, free space or set TMPDIR to a directory with room, then run it again"
)
"""The end of the line when a command's scratch directory (replays, under TMPDIR) fails."""


def sqlite_hint(err: Exception) -> str:
    """`NO_ROOM` for SQLite's "database or disk is full", `MAYBE_NO_ROOM` for its "disk I/O
    error" (a write past a file-size limit, or a full disk while making the -shm file)."""
    said = str(err)
    return NO_ROOM if "full" in said else MAYBE_NO_ROOM if "disk I/O error" in said else ""


def state_unreadable(data_dir: Path, err: Exception) -> typer.Exit:
    """The one line a reading command ends with when `data_dir`'s state cannot be read."""
    return fail(f"cannot read the state in {data_dir}: {err}{sqlite_hint(err)}", 1)


class Progress:
    """A line on stderr each `EVERY` records a long run reads (a quiet `run`, `simulate`,
    `rebuild`), so that it is not silent until its summary. Called with the run's counts
    after each batch."""

    EVERY = 100_000

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.shown = 0

    def __call__(self, tally: Tally) -> None:
        if tally.read // self.EVERY > self.shown:
            self.shown = tally.read // self.EVERY
            typer.echo(
                f"  {self.label}{tally.read:,} records read: {sum(tally.outcomes.values()):,}"
                f" decided, {sum(tally.deadlettered.values()):,} dead-lettered,"
                f" {tally.duplicates:,} already decided",
                err=True,
            )


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"goodwill: {message}", err=True)
    return typer.Exit(code)


# Kafka settings every Kafka command takes; each also reads GOODWILL_KAFKA_<FIELD> (see
# events.kafka.KafkaConfig.from_env), and a flag wins over its variable.
KAFKA_FLAGS: dict[str, tuple[str, type, str]] = {
    "bootstrap_servers": (
        "--kafka",
        str,
        "Kafka brokers HOST:PORT[,...] (env GOODWILL_KAFKA_BOOTSTRAP_SERVERS or "
        "KAFKA_BOOTSTRAP_SERVERS)",
    ),
    "events_topic": ("--events-topic", str, "input topic [goodwill.events]"),
    "decisions_topic": ("--decisions-topic", str, "output topic [goodwill.decisions]"),
    "deadletter_topic": ("--deadletter-topic", str, "rejected records [goodwill.deadletter]"),
    "budget_topic": (
        "--budget-topic",
        str,
        "with --budget-stage kafka: decisions the budget stage finishes [goodwill.budget]",
    ),
    "group_id": ("--group-id", str, "consumer group [goodwill]"),
    "client_id": ("--client-id", str, "client id [goodwill]"),
    "security_protocol": (
        "--security-protocol",
        str,
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [PLAINTEXT]",
    ),
    "sasl_mechanism": ("--sasl-mechanism", str, "e.g. PLAIN, SCRAM-SHA-512"),
    "sasl_plain_username": ("--sasl-username", str, "SASL user"),
    "sasl_plain_password": (
        "--sasl-password",
        str,
        "SASL password (prefer env GOODWILL_KAFKA_SASL_PLAIN_PASSWORD)",
    ),
    "ssl_cafile": ("--ssl-cafile", str, "CA certificate (PEM)"),
    "ssl_certfile": ("--ssl-certfile", str, "client certificate (PEM)"),
    "ssl_keyfile": ("--ssl-keyfile", str, "client key (PEM)"),
    "session_timeout_ms": ("--session-timeout-ms", int, "group session timeout [10000]"),
    "heartbeat_interval_ms": ("--heartbeat-interval-ms", int, "group heartbeat [3000]"),
    "max_message_bytes": ("--max-message-bytes", int, "largest record produced [1048576]"),
}


# What every Kafka client needs: where the brokers are, who it is, how it authenticates.
_CONNECTION: tuple[str, ...] = (
    "bootstrap_servers",
    "client_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)


def kafka_options(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add the Kafka flags to a command, which receives the ones given as `kafka: dict`.
    Its --help shows the connection's and `names` (no names: every flag); it accepts the
    others too, unlisted, so one set of flags can be passed to every command."""
    unknown = set(names) - KAFKA_FLAGS.keys()
    if unknown:
        raise ValueError(f"no such Kafka flag: {sorted(unknown)}")

    def add(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        added = []
        for name, (flag, kind, text) in KAFKA_FLAGS.items():
            shown = not names or name in names or name in _CONNECTION
            option = typer.Option(flag, help=text, show_default=False, hidden=not shown)
            added.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[kind | None, option],
                )
            )
        kept = [p for p in signature.parameters.values() if p.name != "kafka"]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            flags = {name: kwargs.pop(name, None) for name in KAFKA_FLAGS}
            command(kafka={k: v for k, v in flags.items() if v is not None}, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must see the new signature, not the original one
        return wrapper

    return add


def wants_kafka(flags: dict[str, Any]) -> bool:
    return bool(
        flags.get("bootstrap_servers")
        or os.environ.get("GOODWILL_KAFKA_BOOTSTRAP_SERVERS", "").strip()
        or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    )


def kafka_config(flags: dict[str, Any]) -> KafkaConfig:
    from events.kafka import KafkaConfig

    try:
        return KafkaConfig.from_env(os.environ, **flags)
    except ValueError as err:
        raise fail(str(err)) from None


def compile_policies(policies: Path) -> CompiledSet:
    from engine.compile import load

    try:
        return load(policies)
    except PolicyError as err:
        typer.echo(err.render(), err=True)
        typer.echo(f"goodwill: policy set refused ({len(err.diagnostics)} problem(s))", err=True)
        raise typer.Exit(1) from None
