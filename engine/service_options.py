"""How the Kafka service runs: its data directory, batch, polling, retries, metrics port,
policy directory, budget stage and retention, as `goodwill run --kafka` and `goodwill
rebuild` set them. Its own module because the service, its parts and the rebuild all read
these settings, and keeping them apart from the loop keeps those imports one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceOptions:
    data_dir: Path
    batch: int = 500  # most records per poll, so per SQLite transaction
    poll_ms: int = 100
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 30.0
    rebuild_on_start: bool = True  # fold the decisions topic when the store is empty
    idle_polls: int = 5  # reading a topic to its end: stop after this many empty polls
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    policies: Path | None = None  # reloaded on SIGHUP (request_reload); None: never
    # "local": budgets are checked in this process (one instance); "kafka": the budget
    # stage, on the budget topic, checks them for every instance (engine/budget_stage.py)
    budget_stage: str = "local"
    retain_days: int | None = None  # StateStore.retain; None: as stored (everything)
