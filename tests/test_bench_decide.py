"""bench/decide.py as a user runs it: its checks hold and its floor does the work it names.

Nothing here reads a rate or a duration against a limit (the machine is shared): only what
a run must say whatever its speed, and that the floor's storage really stores.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "decide.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_decide", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_short_run_replays_the_pipeline_exactly_and_adds_up_its_floor() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--events", "1500", "--customers", "300"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["events"] == 1500
    assert out["pure"]["same_as_pipeline"] is True
    assert out["bare"]["same_rules_fired"] is True
    assert out["bare"]["posts"] > 0

    floor = out["floor"]
    parts = [floor[k] for k in ("decode_us", "encode_us", "store_us", "durable_rules_us")]
    assert all(part > 0 for part in parts)
    assert abs(sum(parts) - floor["sum_us"]) <= 0.25  # each part rounded to 0.1
    assert (
        abs(floor["ceiling_decisions_per_cpu_s"] - 1e6 / floor["sum_us"])
        <= 0.01 * 1e6 / (floor["sum_us"])
    )
    assert floor["ceiling_ratio_vs_bare_durable_rules"] < floor["ceiling_ratio_pure"] < 1
    assert "floor: the contract's parts alone" in done.stdout
    assert "ceiling: ratio_vs_bare_durable_rules" in done.stdout


def test_the_floor_stores_every_row_and_publishes_it_once(tmp_path: Path) -> None:
    floor = _bench()._Floor(tmp_path)
    first = [(f"e{i}", f"c{i % 3}", f"decision {i}".encode()) for i in range(5)]
    second = [(f"e{i}", f"c{i % 3}", f"decision {i}".encode()) for i in range(5, 12)]
    floor.store(first, 5)
    floor.store(second, 12)
    floor.close()

    db = sqlite3.connect(tmp_path / "floor.db")
    assert db.execute("SELECT count(*) FROM seen").fetchone() == (12,)
    assert db.execute("SELECT id, value FROM state ORDER BY id").fetchall() == [
        ("c0", b"e9"),
        ("c1", b"e10"),
        ("c2", b"e11"),
    ]
    outbox = db.execute("SELECT value, sent FROM outbox ORDER BY id").fetchall()
    assert outbox == [(f"decision {i}".encode(), 1) for i in range(12)]
    assert db.execute("SELECT next FROM positions").fetchall() == [(12,)]
    db.close()
