"""A large synthetic event stream for benchmarks, shaped like examples/shop-day.jsonl.

    python bench/workload.py --events 1000000 --customers 50000 > /tmp/workload.jsonl

`generate` builds each event as a plain dict and encodes it with the standard json
encoder — no pydantic in the loop — so producing load never limits a benchmark. The
stream is deterministic for a seed and in time order: rep and budget setup first (budgets
again whenever a month begins), a `clock.tick` on every hour mark, and customer traffic
mixed as in MIX. Every event is valid against events.models (tests/test_examples.py
checks a prefix).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

START = 1793606400  # 2026-11-02T08:00:00Z
HOUR, DAY = 3600, 86400
TEAMS = [(f"team-{k:02d}", f"lead-{k:02d}") for k in range(1, 11)]
REPS = [(f"rep-{k:02d}{r}", team) for k, (team, _) in enumerate(TEAMS, 1) for r in "abcde"]
OPEN_LIMIT = 100_000  # unshipped orders, open cases, unfulfilled remedies kept in memory
SHIPPED_LIMIT = 1 << 16  # recently shipped orders that delays, losses and contacts refer to

MIX = {  # percent of customer events per type
    "order.placed": 30,
    "order.shipped": 15,
    "contact.opened": 15,
    "remedy.requested": 15,
    "item.defect_reported": 8,
    "shipment.delayed": 5,
    "case.resolved": 5,
    "remedy.fulfilled": 3,
    "contact.transferred": 3,
    "shipment.lost": 1,
}
SOURCE = {
    "order.placed": "orders",
    "order.shipped": "shipping",
    "shipment.delayed": "shipping",
    "shipment.lost": "shipping",
    "item.defect_reported": "helpdesk",
    "contact.opened": "helpdesk",
    "contact.transferred": "helpdesk",
    "remedy.requested": "helpdesk",
    "remedy.fulfilled": "finance",
    "case.resolved": "helpdesk",
    "rep.assigned": "hr",
    "budget.allocated": "finance",
    "clock.tick": "clock",
}
PRODUCTS = [
    (f"SKU-{name}-{n}", price)
    for n in range(1, 5)
    for name, price in [
        ("KETTLE", 6400),
        ("GRINDER", 14900),
        ("TEAPOT", 4200),
        ("MUG", 3600),
        ("LAMP", 7900),
        ("TOASTER", 5900),
        ("BLENDER", 11900),
        ("SCALE", 2900),
        ("PAN", 5400),
        ("KNIFE", 9500),
    ]
]
LEVELS = [("standard", 4), ("standard", 4), ("standard", 4), ("expedited", 2), ("overnight", 1)]
REMEDIES = ["replacement", "replacement", "expedite", "expedite", "credit", "credit", "refund"]
TOPICS = [
    "broken_item",
    "late_delivery",
    "wrong_item",
    "billing_error",
    "question",
    "damaged_in_transit",
]
CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]
CHANNELS = ["chat", "chat", "phone", "email"]
ORDER_CHANNELS = ["web", "web", "web", "phone", "store"]
RESOLUTIONS = ["replaced", "refunded", "credited", "answered"]


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def stamp(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _take(items: list[Any], index: int) -> Any:
    """Remove and return items[index] in O(1); order does not matter in these pools."""
    item = items[index]
    items[index] = items[-1]
    items.pop()
    return item


def _keep(items: list[Any], item: Any, limit: int, rand: Any) -> None:
    """Append, abandoning a random older entry once the pool is full."""
    if len(items) >= limit:
        items[int(rand() * limit)] = item
    else:
        items.append(item)


def _setup(month: str, first: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    if first:
        leads = dict(TEAMS)
        for rep, team in REPS:
            yield "rep.assigned", {"rep_id": rep, "team": team, "lead": leads[team]}
    budgets = [(rep, "expedite", 150000 + 50000 * (i % 10)) for i, (rep, _) in enumerate(REPS)]
    budgets += [(team, "goodwill", 4000000) for team, _ in TEAMS]
    for owner, budget, cents in budgets:
        yield (
            "budget.allocated",
            {
                "owner": owner,
                "budget": budget,
                "amount": money(cents),
                "currency": "USD",
                "period": month,
            },
        )


def generate(n_events: int, n_customers: int, seed: int = 7, pace: float = 1.0) -> Iterator[bytes]:
    """Yield `n_events` encoded events (JSON, no trailing newline) for `n_customers`, about
    `pace` seconds of event time apart (1: a day is ~86,000 events)."""
    # One flat loop with local names: this is the benchmark's feed, so speed wins here.
    rng = random.Random(seed)
    rand = rng.random
    # Events built here never contain cycles, so the cycle check is pure cost (~20%).
    encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
    customers = [f"c-{i:06d}" for i in range(n_customers)]
    first_orders = customers[:]  # everyone orders once before anyone orders twice
    rng.shuffle(first_orders)
    kinds = [kind for kind, share in MIX.items() for _ in range(share)]
    items = [
        [{"sku": sku, "qty": q, "unit_price": money(p)} for q in (1, 2, 3)] for sku, p in PRODUCTS
    ]
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(DAY)]
    promises: dict[int, str] = {}

    unshipped: list[tuple[str, str, int]] = []  # (order_id, customer, product)
    shipped: list[tuple[str, str, int, int, int]] = []  # ... + shipped at, promised day
    cases: list[tuple[str, str, str, str | None, int]] = []  # case, customer, rep, order, product
    requested: list[tuple[str, str, str, int]] = []  # case, customer, remedy, cents
    n_orders = n_cases = emitted = 0
    t, next_hour = START, START + HOUR
    today, prefix, period = -1, "", ""

    while emitted < n_events:
        on_mark = t >= next_hour
        if on_mark:  # the hour's tick comes first, then whatever happens after the mark
            t, next_hour = next_hour, next_hour + HOUR
        day, second = divmod(t, DAY)
        if day != today:
            today, prefix = day, stamp(day * DAY)[:11]
        ts = prefix + clock[second]
        if on_mark or not period:
            setup: list[tuple[str, dict[str, Any]]] = [("clock.tick", {})] if period else []
            if ts[:7] != period:
                setup += _setup(ts[:7], first=not period)
                period = ts[:7]
            for kind, data in setup[: n_events - emitted]:
                emitted += 1
                event: dict[str, Any] = {
                    "event_id": f"ev-{emitted:09d}",
                    "type": kind,
                    "occurred_at": ts,
                    "schema_version": 1,
                    "source": SOURCE[kind],
                    "data": data,
                }
                yield encode(event).encode()
            continue

        kind = kinds[int(rand() * 100)]
        if kind == "order.shipped" and unshipped:
            order_id, customer, p = _take(unshipped, int(rand() * len(unshipped)))
            level, days = LEVELS[int(rand() * 5)]
            due = day + days
            if due not in promises:
                promises[due] = stamp(due * DAY + 20 * HOUR)
            data = {
                "order_id": order_id,
                "carrier": CARRIERS[int(rand() * 4)],
                "service_level": level,
                "promised_by": promises[due],
            }
            _keep(shipped, (order_id, customer, p, t, due), SHIPPED_LIMIT, rand)
        elif kind in ("shipment.delayed", "shipment.lost", "item.defect_reported") and shipped:
            order_id, customer, p, shipped_at, due = shipped[int(rand() * len(shipped))]
            if kind == "shipment.delayed":
                eta = (due + 1 + int(rand() * 3)) * DAY + 20 * HOUR  # later than promised
                data = {"order_id": order_id, "new_eta": stamp(eta)}
            elif kind == "shipment.lost":
                scan = shipped_at + int(rand() * (t - shipped_at))
                data = {"order_id": order_id, "last_scan": stamp(scan)}
            else:
                data = {
                    "order_id": order_id,
                    "sku": PRODUCTS[p][0],
                    "description": "stopped working after a week",
                }
        elif kind == "contact.opened" and shipped:
            order_id, customer, p, *_ = shipped[int(rand() * len(shipped))]
            n_cases += 1
            rep = REPS[int(rand() * len(REPS))][0]
            about = order_id if rand() < 0.9 else None
            _keep(cases, (f"K-{n_cases}", customer, rep, about, p), OPEN_LIMIT, rand)
            data = {
                "case_id": f"K-{n_cases}",
                "rep_id": rep,
                "channel": CHANNELS[int(rand() * 4)],
                "topic": TOPICS[int(rand() * 6)],
            }
            if about is not None:
                data["order_id"] = about
        elif kind in ("remedy.requested", "contact.transferred") and cases:
            case_id, customer, rep, about, p = cases[int(rand() * len(cases))]
            if kind == "contact.transferred":
                data = {
                    "case_id": case_id,
                    "from_rep": rep,
                    "to_team": TEAMS[int(rand() * 10)][0],
                    "note": "handing over",
                }
            else:
                remedy = REMEDIES[int(rand() * 7)]
                if remedy == "expedite":
                    cents = 800 + 50 * int(rand() * 55)
                elif remedy == "credit":
                    cents = 500 + 100 * int(rand() * 116)
                else:
                    cents = PRODUCTS[p][1]
                data = {"case_id": case_id, "rep_id": rep}
                if about is not None:
                    data["order_id"] = about
                data |= {"remedy": remedy, "amount": money(cents), "currency": "USD"}
                _keep(requested, (case_id, customer, remedy, cents), OPEN_LIMIT, rand)
        elif kind == "remedy.fulfilled" and requested:
            case_id, customer, remedy, cents = _take(requested, int(rand() * len(requested)))
            data = {
                "case_id": case_id,
                "remedy": remedy,
                "actual_cost": money(cents),
                "currency": "USD",
            }
        elif kind == "case.resolved" and cases:
            case_id, customer, *_ = _take(cases, int(rand() * len(cases)))
            data = {"case_id": case_id, "resolution": RESOLUTIONS[int(rand() * 4)]}
            if rand() < 0.6:
                data["csat"] = 1 + int(rand() * 5)
        else:  # order.placed, and early events whose subject does not exist yet
            kind = "order.placed"
            if n_orders < n_customers:
                customer = first_orders[n_orders]
            else:
                customer = customers[int(rand() * n_customers)]
            n_orders += 1
            p, qty = int(rand() * len(PRODUCTS)), 1 + int(rand() * 3)
            channel = ORDER_CHANNELS[int(rand() * 5)]
            data = {
                "order_id": f"O-{n_orders}",
                "amount": money(PRODUCTS[p][1] * qty),
                "currency": "USD",
                "items": [items[p][qty - 1]],
                "channel": channel,
            }
            if channel != "store":  # store sales leave with the customer
                _keep(unshipped, (f"O-{n_orders}", customer, p), OPEN_LIMIT, rand)
        emitted += 1
        yield encode(
            {
                "event_id": f"ev-{emitted:09d}",
                "type": kind,
                "occurred_at": ts,
                "customer_id": customer,
                "schema_version": 1,
                "source": SOURCE[kind],
                "data": data,
            }
        ).encode()
        t += int(rand() * 3 * pace)  # about `pace` seconds apart


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic Goodwill event stream.")
    parser.add_argument("--events", type=int, default=1_000_000, help="events to write")
    parser.add_argument("--customers", type=int, default=50_000, help="distinct customers")
    parser.add_argument("--seed", type=int, default=7, help="same seed, same stream")
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between events, about")
    args = parser.parse_args(argv)
    out = sys.stdout.buffer
    began = time.perf_counter()
    try:
        for line in generate(args.events, args.customers, args.seed, args.pace):
            out.write(line + b"\n")
        out.flush()
    except BrokenPipeError:  # piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    seconds = time.perf_counter() - began
    rate = args.events / seconds
    print(f"{args.events} events in {seconds:.2f}s ({rate:,.0f}/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
