"""The state file's tables: what the projections store, and in what shape.

`SCHEMA` creates the projections' tables in a new file (beside the ledger's own, see
`engine.state_file`); `ADDED_COLUMNS` and `ADDED` are what was added to them after version 2,
which every open applies to an older file. The columns of the tables the store caches, the
position of each in a cached row and a new row's defaults follow the same tables, so a
column added to one changes this module and the folds that write it. Its own module
because it changes with the on-disk format, and `engine.state` with what a fold or a fact
means.
"""

from __future__ import annotations

from typing import Any, Final

# Follow-up states. A follow-up on a resolved case is parked rather than deleted, so a
# reopened case brings it back; parking keeps the partial "due" index to live promises,
# so `due_followups` never rescans the history of resolved cases.
PENDING: Final = 0
OVERDUE: Final = 1
PARKED: Final = 2

# Times are integer microseconds since the epoch; money is integer cents.
SCHEMA: Final = """
CREATE TABLE customers (
    id TEXT PRIMARY KEY, ordered INTEGER NOT NULL DEFAULT 0,
    refunded INTEGER NOT NULL DEFAULT 0, order_count INTEGER NOT NULL DEFAULT 0,
    open_cases INTEGER NOT NULL DEFAULT 0, first_order_at INTEGER, last_remedy_at INTEGER
) WITHOUT ROWID;
CREATE TABLE orders (
    id TEXT PRIMARY KEY, customer TEXT NOT NULL, placed INTEGER NOT NULL DEFAULT 0,
    amount INTEGER NOT NULL DEFAULT 0, placed_at INTEGER, channel TEXT NOT NULL DEFAULT '',
    item_count INTEGER NOT NULL DEFAULT 0, service_level TEXT NOT NULL DEFAULT '',
    shipped INTEGER NOT NULL DEFAULT 0, promised_by INTEGER,
    delayed INTEGER NOT NULL DEFAULT 0, new_eta INTEGER, lost INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE cases (
    id TEXT PRIMARY KEY, customer TEXT NOT NULL, rep TEXT NOT NULL, topic TEXT NOT NULL,
    channel TEXT NOT NULL, opened_at INTEGER NOT NULL, status TEXT NOT NULL,
    resolved_at INTEGER, resolution TEXT, order_id TEXT,
    transfers INTEGER NOT NULL DEFAULT 0, remedies INTEGER NOT NULL DEFAULT 0,
    reopens INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE case_remedies (
    case_id TEXT NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, remedy TEXT NOT NULL,
    amount INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (case_id, event_id)
) WITHOUT ROWID;
CREATE TABLE defects (
    sku TEXT NOT NULL, at INTEGER NOT NULL, event_id TEXT NOT NULL, order_id TEXT NOT NULL,
    customer TEXT NOT NULL, PRIMARY KEY (sku, at, event_id)
) WITHOUT ROWID;
CREATE TABLE remedies (
    customer TEXT NOT NULL, at INTEGER NOT NULL, event_id TEXT NOT NULL, remedy TEXT NOT NULL,
    cost INTEGER NOT NULL, case_id TEXT NOT NULL, PRIMARY KEY (customer, at, event_id)
) WITHOUT ROWID;
CREATE TABLE applied (decision_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE budgets (
    budget TEXT NOT NULL, owner TEXT NOT NULL, period TEXT NOT NULL, allocated INTEGER,
    charged INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (budget, owner, period)
) WITHOUT ROWID;
CREATE TABLE reps (id TEXT PRIMARY KEY, team TEXT NOT NULL, lead TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE followups (
    obligation_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, customer TEXT, rep TEXT,
    due_at INTEGER NOT NULL, state INTEGER NOT NULL, lane INTEGER
) WITHOUT ROWID;
CREATE INDEX followups_by_case ON followups (case_id);
CREATE TABLE alerts (sku TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
"""

# Tables, columns and indexes added after version 2; checked on every open
# (engine.state_file.connect). A follow-up's `lane` is the input partition its case is read
# from, whose watermark it falls due by; NULL for those made before lanes, which fall
# due by the store's watermark as they did.
# Queries on followups write `state` as a literal: compared with a bound parameter, the
# column followups_due_by_lane filters on makes SQLite prepare the statement again at
# every execution.
ADDED_COLUMNS: Final = (("followups", "lane", "INTEGER"),)
ADDED: Final = f"""
CREATE TABLE IF NOT EXISTS stage_reps (
    id TEXT PRIMARY KEY, team TEXT NOT NULL, lead TEXT NOT NULL
) WITHOUT ROWID;
DROP INDEX IF EXISTS followups_due;
CREATE INDEX IF NOT EXISTS followups_due_by_lane ON followups (lane, due_at, obligation_id)
    WHERE state = {PENDING};
"""

# The columns of the cached tables, in table order (see `engine.row_cache`); the key comes
# first.
CUSTOMER_COLUMNS: Final = (
    "id",
    "ordered",
    "refunded",
    "order_count",
    "open_cases",
    "first_order_at",
    "last_remedy_at",
)
ORDER_COLUMNS: Final = (
    "id",
    "customer",
    "placed",
    "amount",
    "placed_at",
    "channel",
    "item_count",
    "service_level",
    "shipped",
    "promised_by",
    "delayed",
    "new_eta",
    "lost",
)
CASE_COLUMNS: Final = (
    "id",
    "customer",
    "rep",
    "topic",
    "channel",
    "opened_at",
    "status",
    "resolved_at",
    "resolution",
    "order_id",
    "transfers",
    "remedies",
    "reopens",
)
REP_COLUMNS: Final = ("id", "team", "lead")


def _positions(columns: tuple[str, ...], *names: str) -> tuple[int, ...]:
    """Where each named column sits in a cached row (a name not in `columns` fails here)."""
    return tuple(columns.index(name) for name in names)


# Row positions, named for the folds and enrich().
C_ORDERED, C_REFUNDED, C_ORDER_COUNT, C_OPEN_CASES, C_FIRST_ORDER, C_LAST_REMEDY = _positions(
    CUSTOMER_COLUMNS,
    "ordered",
    "refunded",
    "order_count",
    "open_cases",
    "first_order_at",
    "last_remedy_at",
)
(
    O_CUSTOMER,
    O_PLACED,
    O_AMOUNT,
    O_PLACED_AT,
    O_CHANNEL,
    O_ITEMS,
    O_LEVEL,
    O_SHIPPED,
    O_PROMISED,
    O_DELAYED,
    O_NEW_ETA,
    O_LOST,
) = _positions(
    ORDER_COLUMNS,
    "customer",
    "placed",
    "amount",
    "placed_at",
    "channel",
    "item_count",
    "service_level",
    "shipped",
    "promised_by",
    "delayed",
    "new_eta",
    "lost",
)
(
    K_CUSTOMER,
    K_REP,
    K_TOPIC,
    K_CHANNEL,
    K_OPENED_AT,
    K_STATUS,
    K_RESOLVED_AT,
    K_RESOLUTION,
    K_ORDER,
    K_TRANSFERS,
    K_REMEDIES,
    K_REOPENS,
) = _positions(
    CASE_COLUMNS,
    "customer",
    "rep",
    "topic",
    "channel",
    "opened_at",
    "status",
    "resolved_at",
    "resolution",
    "order_id",
    "transfers",
    "remedies",
    "reopens",
)


def new_customer(customer_id: str) -> list[Any]:
    return [customer_id, 0, 0, 0, 0, None, None]


def new_order(order_id: str, customer: str) -> list[Any]:
    return [order_id, customer, 0, 0, None, "", 0, "", 0, None, 0, None, 0]
