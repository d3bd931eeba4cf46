"""The demo stream and the benchmark workload: reproducible, valid where they mean to be,
and carrying the moments examples/README.md points readers to."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice, pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import ValidationError

from events.models import EVENT_ADAPTER, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "examples" / "generate.py"
STREAM = ROOT / "examples" / "shop-day.jsonl"
WORKLOAD = ROOT / "bench" / "workload.py"

# line number -> the stage at which a consumer must reject it
INTENDED_BAD = {
    25: "json",  # cut off mid-object
    113: "model",  # unknown type
    207: "model",  # missing required field
    301: "model",  # float money
    388: "schema_version",  # 99
    466: "encoding",  # Latin-1
    549: "model",  # occurred_at without offset
}


def _load(path: Path) -> ModuleType:
    name = f"_under_test_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _rejection(line: bytes) -> str | None:
    """Where a consumer rejects `line`, or None for a good event.

    EVENT_ADAPTER accepts any integer schema_version, so the version check is the codec's
    job and is made here explicitly.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "encoding"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        return "json"
    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        return "schema_version"
    try:
        EVENT_ADAPTER.validate_python(raw)
    except ValidationError:
        return "model"
    return None


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    data = STREAM.read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


@pytest.fixture(scope="module")
def good(lines: list[bytes]) -> list[dict[str, Any]]:
    """The good events as JSON objects (each one has passed EVENT_ADAPTER)."""
    return [json.loads(line) for line in lines if _rejection(line) is None]


def _at(event: dict[str, Any], key: str = "occurred_at") -> datetime:
    return datetime.fromisoformat(event[key])


def test_regenerating_reproduces_the_committed_bytes(tmp_path: Path) -> None:
    out = tmp_path / "shop-day.jsonl"
    env = {**os.environ, "PYTHONHASHSEED": "4242"}  # no dependence on set or dict hashing
    subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == STREAM.read_bytes()


def test_exactly_the_intended_lines_are_bad(lines: list[bytes]) -> None:
    rejected = {n: stage for n, line in enumerate(lines, 1) if (stage := _rejection(line))}
    assert rejected == INTENDED_BAD
    assert set(_load(GENERATOR).BAD_LINES) == set(INTENDED_BAD)


def test_stream_is_big_enough_with_many_customers(good: list[dict[str, Any]]) -> None:
    assert len(good) >= 500
    assert len({e["customer_id"] for e in good if "customer_id" in e}) >= 40
    assert len({e["event_id"] for e in good}) == len(good)


def test_event_time_only_moves_forward_and_idle_hours_tick(good: list[dict[str, Any]]) -> None:
    assert all(e["occurred_at"].endswith("Z") for e in good)
    times = [_at(e) for e in good]
    assert times == sorted(times)
    assert times[-1] - times[0] >= timedelta(days=4, hours=12)
    # a clock.tick on every hour mark that follows an idle hour: no gap reaches two hours
    assert max(b - a for a, b in pairwise(times)) < timedelta(hours=2)


def test_one_sku_spikes_within_seven_days(good: list[dict[str, Any]]) -> None:
    reports: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for e in good:
        if e["type"] == "item.defect_reported":
            reports[e["data"]["sku"]].append((_at(e), e["customer_id"]))

    def peak(found: list[tuple[datetime, str]]) -> int:
        """Most distinct customers reporting within any 7 days."""
        week = timedelta(days=7)
        return max(len({c for t, c in found if start <= t < start + week}) for start, _ in found)

    peaks = sorted((peak(found), sku) for sku, found in reports.items())
    assert peaks[-1] >= (6, "SKU-KETTLE-2")
    assert peaks[-2][0] < 3  # the spike stands out from every other sku


def test_one_outlier_customer(good: list[dict[str, Any]]) -> None:
    asks = Counter(
        e["customer_id"] for e in good if e["type"] in ("remedy.requested", "item.defect_reported")
    )
    (top, count), (_, runner_up) = asks.most_common(2)
    assert top == "c-013"
    assert count >= 4 > runner_up


def test_one_lost_parcel_and_late_shipments(good: list[dict[str, Any]]) -> None:
    assert sum(e["type"] == "shipment.lost" for e in good) == 1
    promised = {
        e["data"]["order_id"]: _at(e["data"], "promised_by")
        for e in good
        if e["type"] == "order.shipped"
    }
    delays = [e["data"] for e in good if e["type"] == "shipment.delayed"]
    assert delays
    assert all(_at(d, "new_eta") > promised[d["order_id"]] for d in delays)


def test_dee_asks_for_more_expedite_than_is_left(good: list[dict[str, Any]]) -> None:
    left: dict[str, Decimal] = {}
    too_big: list[tuple[str, str]] = []
    for e in good:
        d = e["data"]
        if e["type"] == "budget.allocated" and d["budget"] == "expedite":
            left[d["owner"]] = Decimal(d["amount"])
        elif e["type"] == "remedy.requested" and d["remedy"] == "expedite":
            if Decimal(d["amount"]) <= left[d["rep_id"]]:
                left[d["rep_id"]] -= Decimal(d["amount"])
            else:
                too_big.append((d["rep_id"], e["occurred_at"]))
    assert too_big == [("dee", "2026-11-04T11:12:00Z"), ("dee", "2026-11-05T15:46:00Z")]


# ---------------------------------------------------------------------- bench workload
@pytest.fixture(scope="module")
def workload() -> ModuleType:
    return _load(WORKLOAD)


def test_workload_prefix_is_valid_chronological_and_covers_customers(
    workload: ModuleType,
) -> None:
    prefix = list(islice(workload.generate(1_000_000, 5_000), 20_000))
    events = [EVENT_ADAPTER.validate_json(line) for line in prefix]
    assert len(events) == 20_000
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    assert len({e.customer_id for e in events if e.customer_id}) >= 5_000
    assert len({e.event_id for e in events}) == len(events)
    assert {e.schema_version for e in events} == {SCHEMA_VERSION}
    shares = Counter(e.type for e in events)
    assert 0.25 < shares["order.placed"] / len(events) < 0.35


def test_workload_is_deterministic_and_exact(workload: ModuleType) -> None:
    first = list(workload.generate(3_000, 200))
    assert len(first) == 3_000
    assert first == list(workload.generate(3_000, 200))
    assert first != list(workload.generate(3_000, 200, seed=8))


def test_workload_command_prints_lines() -> None:
    done = subprocess.run(
        [sys.executable, str(WORKLOAD), "--events", "1000", "--customers", "100"],
        check=True,
        capture_output=True,
    )
    out = done.stdout.split(b"\n")
    assert out[-1] == b"" and len(out) == 1001
    assert EVENT_ADAPTER.validate_json(out[500]).event_id == "ev-000000501"
