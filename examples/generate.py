"""Write examples/shop-day.jsonl: five days of a small shop's events, reproducibly.

    python examples/generate.py --out examples/shop-day.jsonl

A seeded random generator and a fixed start time make the output byte-for-byte stable
(tests/test_examples.py regenerates and compares). The moments worth watching — the rep
whose expedite budget runs out, the outlier customer, the kettle defect spike, the lost
parcel — are scripted on top of random background traffic; examples/README.md tells them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

from events.models import EVENT_ADAPTER, SCHEMA_VERSION  # noqa: E402

SEED = 20261102
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
END = START + timedelta(days=5)
PERIOD = "2026-11"
CURRENCY = "USD"
OPEN, CLOSE = 8, 20  # shop, warehouse and helpdesk work 08:00–20:00 UTC; nights are idle

TEAMS = {"east": "lena", "west": "wu"}
REPS = {"ana": "east", "ben": "east", "carl": "west", "dee": "west"}
EXPEDITE_BUDGET = {"ana": 15000, "ben": 10000, "carl": 12000, "dee": 6000}  # cents
GOODWILL_BUDGET = 40000  # cents, per team

PRODUCTS = {  # sku -> unit price in cents
    "SKU-KETTLE-2": 8900,
    "SKU-KETTLE-1": 6400,
    "SKU-GRINDER-3": 14900,
    "SKU-TEAPOT-1": 4200,
    "SKU-MUG-4": 3600,
    "SKU-LAMP-7": 7900,
    "SKU-TOASTER-2": 5900,
    "SKU-BLENDER-5": 11900,
    "SKU-SCALE-1": 2900,
    "SKU-PAN-28": 5400,
    "SKU-KNIFE-8": 9500,
    "SKU-FILTER-100": 750,
    "SKU-ESPRESSO-9": 64900,
    "SKU-MIXER-6": 38900,
}
KETTLE = "SKU-KETTLE-2"
BIG = ("SKU-ESPRESSO-9", "SKU-MIXER-6")
EVERYDAY = tuple(s for s in PRODUCTS if s != KETTLE and s not in BIG)

CUSTOMERS = tuple(f"c-{n:03d}" for n in range(1, 65))
GOLD = ("c-003", "c-007", "c-018", "c-021", "c-034")
OUTLIER = "c-013"
LOST = "c-027"
KETTLE_BUYERS = ("c-004", "c-009", "c-015", "c-022", "c-031", "c-038", "c-044", "c-046")
DEE_CUSTOMERS = ("c-019", "c-040", "c-033")
SCRIPTED = (OUTLIER, LOST, *KETTLE_BUYERS, *DEE_CUSTOMERS)

TOPICS = {
    "broken_item": 20,
    "late_delivery": 18,
    "wrong_item": 12,
    "billing_error": 12,
    "question": 22,
    "damaged_in_transit": 16,
}
DEFECTS = (
    "stopped working after a week",
    "switch is loose and sparks",
    "arrived with a cracked housing",
    "makes a grinding noise, then stops",
    "power cord frayed at the plug",
    "button stuck — can't turn it off",
)
KETTLE_DEFECTS = (
    "lid hinge snapped on the third use",
    "base stopped heating",
    "switches off at 60 °C, never boils",
    "lid hinge broken, lid won't stay shut",
    "handle cracked next to the lid",
    "hinge pin fell out — lid came off while pouring",
    "lid hinge snapped, same as a friend's",
)
TRANSFER_NOTES = (
    "customer asks for someone in their time zone",
    "needs the other team's warehouse access",
    "handing over with full history, customer prefers a callback",
)


RESOLUTION = {  # how a case that began with this remedy is closed
    "replacement": "replaced",
    "refund": "refunded",
    "credit": "credited",
    "expedite": "expedited",
}


def day(n: int, hour: int, minute: int) -> datetime:
    """Day n of the stream (1 = Monday 2026-11-02) at hour:minute UTC."""
    return START + timedelta(days=n - 1, hours=hour - START.hour, minutes=minute)


def rfc3339(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def one_each(*skus: str) -> list[tuple[str, int]]:
    return [(sku, 1) for sku in skus]


class Ref:
    """An order or case id, numbered by first appearance once the stream is in time order."""

    __slots__ = ("prefix", "value")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.value = ""


@dataclass
class Order:
    ref: Ref
    customer: str
    placed_at: datetime
    items: list[tuple[str, int]]  # (sku, qty)
    amount: int
    shipped_at: datetime | None = None
    promised_by: datetime | None = None
    delayed_at: datetime | None = None


@dataclass
class Case:
    ref: Ref
    customer: str
    rep: str
    order: Order | None
    asked: dict[str, int] = field(default_factory=dict)  # remedy -> cents requested


@dataclass
class Event:
    at: datetime
    seq: int
    type: str
    source: str
    customer: str | None
    data: dict[str, Any]


class Shop:
    """Collects the week's events; stories may emit them out of time order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.orders: dict[str, list[Order]] = {c: [] for c in CUSTOMERS}
        self.remedies: dict[str, int] = dict.fromkeys(CUSTOMERS, 0)
        self.cases: dict[str, int] = dict.fromkeys(CUSTOMERS, 0)
        self.defects: dict[str, int] = dict.fromkeys(PRODUCTS, 0)

    def emit(
        self, at: datetime, type_: str, source: str, customer: str | None, **data: Any
    ) -> datetime:
        """Record an event; `data` keeps its keyword order, and None values are left out."""
        payload = {k: v for k, v in data.items() if v is not None}
        self.events.append(Event(at, len(self.events), type_, source, customer, payload))
        return at

    def later(self, at: datetime, lo_minutes: int, hi_minutes: int) -> datetime:
        """A moment lo..hi minutes after `at`, pushed into opening hours."""
        t = at + timedelta(seconds=self.rng.randint(lo_minutes * 60, hi_minutes * 60))
        minute, second = self.rng.randrange(50), self.rng.randrange(60)
        if t.hour >= CLOSE:
            t = (t + timedelta(days=1)).replace(hour=OPEN, minute=minute, second=second)
        elif t.hour < OPEN:
            t = t.replace(hour=OPEN, minute=minute, second=second)
        return t

    def basket(self, big: bool = False) -> list[tuple[str, int]]:
        while True:
            skus = self.rng.sample(EVERYDAY, self.rng.choice((1, 1, 2, 2, 3)))
            items = [(s, self.rng.choice((1, 1, 1, 2, 4 if "FILTER" in s else 1))) for s in skus]
            if big:
                items.insert(0, (self.rng.choice(BIG), 1))
            if 2000 <= sum(PRODUCTS[s] * q for s, q in items) <= 90000:
                return items

    # ------------------------------------------------------------------ orders
    def place(
        self,
        customer: str,
        at: datetime,
        items: list[tuple[str, int]],
        channel: str | None = None,
        ship: tuple[datetime, str] | None = None,
    ) -> Order:
        """Place an order and ship it (at `ship`'s time and service level, or at random)."""
        channel = channel or self.rng.choices(("web", "phone", "store"), (70, 15, 15))[0]
        order = Order(Ref("O-"), customer, at, items, sum(PRODUCTS[s] * q for s, q in items))
        self.orders[customer].append(order)
        lines = [{"sku": s, "qty": q, "unit_price": money(PRODUCTS[s])} for s, q in items]
        self.emit(
            at,
            "order.placed",
            "orders",
            customer,
            order_id=order.ref,
            amount=money(order.amount),
            currency=CURRENCY,
            items=lines,
            channel=channel,
        )
        if channel == "store":  # carried out of the shop, not shipped
            return order
        if ship is None:
            levels = ("standard", "expedited", "overnight")
            ship = self.later(at, 120, 1300), self.rng.choices(levels, (70, 22, 8))[0]
        order.shipped_at, level = ship
        days = {"standard": 4, "expedited": 2, "overnight": 1}[level]
        due = order.shipped_at + timedelta(days=days)
        order.promised_by = due.replace(hour=CLOSE, minute=0, second=0)
        self.emit(
            order.shipped_at,
            "order.shipped",
            "shipping",
            customer,
            order_id=order.ref,
            carrier=self.rng.choice(("UPS", "FedEx", "USPS", "DHL")),
            service_level=level,
            promised_by=rfc3339(order.promised_by),
        )
        return order

    def delay(self, order: Order, at: datetime, extra_days: int) -> None:
        assert order.promised_by is not None
        order.delayed_at = at
        eta = rfc3339(order.promised_by + timedelta(days=extra_days))
        self.emit(
            at, "shipment.delayed", "shipping", order.customer, order_id=order.ref, new_eta=eta
        )

    # ------------------------------------------------------------------ support
    def open_case(
        self, customer: str, at: datetime, rep: str, topic: str, order: Order | None
    ) -> Case:
        case = Case(Ref("K-"), customer, rep, order)
        self.cases[customer] += 1
        channel = self.rng.choices(("chat", "phone", "email"), (45, 30, 25))[0]
        self.emit(
            at,
            "contact.opened",
            "helpdesk",
            customer,
            case_id=case.ref,
            rep_id=rep,
            channel=channel,
            topic=topic,
            order_id=order and order.ref,
        )
        return case

    def defect(self, case: Case, at: datetime, sku: str, description: str) -> datetime:
        assert case.order is not None
        return self.emit(
            at,
            "item.defect_reported",
            "helpdesk",
            case.customer,
            order_id=case.order.ref,
            sku=sku,
            description=description,
            case_id=case.ref,
            rep_id=case.rep,
        )

    def request(self, case: Case, at: datetime, remedy: str, cents: int) -> datetime:
        self.remedies[case.customer] += 1
        case.asked[remedy] = cents
        return self.emit(
            at,
            "remedy.requested",
            "helpdesk",
            case.customer,
            case_id=case.ref,
            rep_id=case.rep,
            order_id=case.order and case.order.ref,
            remedy=remedy,
            amount=money(cents),
            currency=CURRENCY,
        )

    def fulfil(self, case: Case, at: datetime, remedy: str, cost: int | None = None) -> datetime:
        asked = case.asked[remedy]
        if cost is None and remedy == "replacement":
            cost = asked * 55 // 100  # cost of goods, not the retail price
        elif cost is None and remedy == "expedite":
            cost = max(0, asked - self.rng.randrange(0, 300))  # the carrier's actual fee
        source = "shipping" if remedy in ("replacement", "expedite") else "finance"
        return self.emit(
            at,
            "remedy.fulfilled",
            source,
            case.customer,
            case_id=case.ref,
            remedy=remedy,
            actual_cost=money(asked if cost is None else cost),
            currency=CURRENCY,
        )

    def transfer(self, case: Case, at: datetime, to_team: str, note: str) -> datetime:
        self.emit(
            at,
            "contact.transferred",
            "helpdesk",
            case.customer,
            case_id=case.ref,
            from_rep=case.rep,
            to_team=to_team,
            note=note,
        )
        case.rep = self.rng.choice([r for r, t in REPS.items() if t == to_team and r != "dee"])
        return at

    def resolve(self, case: Case, at: datetime, resolution: str, csat: int | None) -> datetime:
        return self.emit(
            at,
            "case.resolved",
            "helpdesk",
            case.customer,
            case_id=case.ref,
            resolution=resolution,
            csat=csat,
        )

    def csat(self) -> int | None:
        if self.rng.random() < 0.4:
            return None
        return self.rng.choices((5, 4, 3, 2, 1), (45, 30, 12, 8, 5))[0]


# ---------------------------------------------------------------------- the week
def setup(shop: Shop) -> None:
    for rep, team in REPS.items():
        shop.emit(START, "rep.assigned", "hr", None, rep_id=rep, team=team, lead=TEAMS[team])
    allocations = [(rep, "expedite", cents) for rep, cents in EXPEDITE_BUDGET.items()]
    allocations += [(team, "goodwill", GOODWILL_BUDGET) for team in TEAMS]
    for owner, budget, cents in allocations:
        shop.emit(
            START,
            "budget.allocated",
            "finance",
            None,
            owner=owner,
            budget=budget,
            amount=money(cents),
            currency=CURRENCY,
            period=PERIOD,
        )


def history(shop: Shop) -> None:
    """Monday morning's orders give most customers a past before support traffic starts."""
    rng = shop.rng
    regulars = [c for c in CUSTOMERS if c not in SCRIPTED]
    plan = [(c, shop.basket()) for c in regulars]
    for c in GOLD:  # lifetime value above $2,000 from big-ticket orders
        spent = 0
        while spent < 210000:
            items = shop.basket(big=True)
            spent += sum(PRODUCTS[s] * q for s, q in items)
            plan.append((c, items))
    plan += [(rng.choice(regulars), shop.basket()) for _ in range(18)]
    rng.shuffle(plan)
    window = int((day(1, 14, 0) - day(1, 8, 5)).total_seconds())
    offsets = sorted(rng.randrange(window) for _ in plan)
    for (customer, items), offset in zip(plan, offsets, strict=True):
        shop.place(customer, day(1, 8, 5) + timedelta(seconds=offset), items)
    shop.place("c-033", day(1, 11, 48), [("SKU-MUG-4", 2)], "store")


def daily_orders(shop: Shop) -> None:
    rng = shop.rng
    regulars = [c for c in CUSTOMERS if c not in SCRIPTED]
    for n in range(1, 6):
        first = day(n, 14, 0) if n == 1 else day(n, OPEN, 10)
        span = int((day(n, 19, 45) - first).total_seconds())
        for offset in sorted(rng.randrange(span) for _ in range(rng.randint(8, 12))):
            shop.place(rng.choice(regulars), first + timedelta(seconds=offset), shop.basket())


def kettle_spike(shop: Shop) -> None:
    """Seven of eight buyers of SKU-KETTLE-2 report the same broken hinge within four days."""
    rng = shop.rng
    for i, customer in enumerate(KETTLE_BUYERS):
        items = [(KETTLE, 1)]
        if i % 2:
            items.append((rng.choice(("SKU-MUG-4", "SKU-TEAPOT-1", "SKU-FILTER-100")), 1))
        level = "overnight" if i < 2 else "expedited"
        shop.place(customer, day(1, 8, 20 + 9 * i), items, "web", (day(1, 13, 2 * i), level))
    reports = [
        day(2, 9, 40),
        day(2, 15, 5),
        day(3, 10, 20),
        day(3, 16, 45),
        day(4, 9, 15),
        day(4, 14, 30),
        day(5, 11, 0),
    ]
    for i, at in enumerate(reports):
        customer = KETTLE_BUYERS[i]
        order = shop.orders[customer][0]
        case = shop.open_case(customer, at, rng.choice(tuple(REPS)), "broken_item", order)
        t = shop.defect(case, shop.later(at, 1, 4), KETTLE, KETTLE_DEFECTS[i])
        t = shop.request(case, shop.later(t, 2, 6), "replacement", PRODUCTS[KETTLE])
        done = shop.fulfil(case, shop.later(t, 960, 1500), "replacement")
        if customer != "c-009":  # never closed: its 48h follow-up goes overdue on Thursday
            shop.resolve(case, shop.later(done, 20, 120), "replaced", shop.csat())


def outlier(shop: Shop) -> None:
    """c-013 asks for five remedies in four days; the fourth goes to a lead with the history."""
    c = OUTLIER
    lamp = shop.place(
        c, day(1, 9, 12), one_each("SKU-LAMP-7"), "web", (day(1, 12, 30), "overnight")
    )
    tea = shop.place(
        c,
        day(1, 10, 3),
        one_each("SKU-MUG-4", "SKU-TEAPOT-1"),
        "phone",
        (day(1, 15, 10), "expedited"),
    )
    toaster = shop.place(
        c, day(1, 11, 40), one_each("SKU-TOASTER-2"), "web", (day(1, 16, 0), "expedited")
    )
    blender = shop.place(
        c, day(2, 9, 5), one_each("SKU-BLENDER-5"), "web", (day(2, 14, 20), "overnight")
    )
    knife = shop.place(
        c,
        day(3, 12, 0),
        one_each("SKU-KNIFE-8", "SKU-SCALE-1"),
        "web",
        (day(3, 17, 0), "expedited"),
    )
    shop.delay(knife, day(4, 16, 0), 2)

    case = shop.open_case(c, day(2, 9, 20), "ana", "broken_item", lamp)
    shop.defect(case, day(2, 9, 23), "SKU-LAMP-7", "flickers, then switches itself off")
    shop.request(case, day(2, 9, 27), "replacement", PRODUCTS["SKU-LAMP-7"])
    shop.fulfil(case, day(3, 9, 5), "replacement")
    shop.resolve(case, day(3, 10, 0), "replaced", 5)

    case = shop.open_case(c, day(2, 16, 45), "ben", "wrong_item", tea)
    shop.request(case, day(2, 16, 52), "replacement", PRODUCTS["SKU-TEAPOT-1"])
    shop.fulfil(case, day(3, 11, 20), "replacement")
    shop.resolve(case, day(3, 11, 45), "replaced", 4)

    case = shop.open_case(c, day(3, 9, 50), "carl", "damaged_in_transit", toaster)
    shop.request(case, day(3, 9, 58), "refund", PRODUCTS["SKU-TOASTER-2"])
    shop.fulfil(case, day(3, 13, 30), "refund")
    shop.resolve(case, day(3, 13, 40), "refunded", 3)

    case = shop.open_case(c, day(4, 10, 5), "ana", "broken_item", blender)
    shop.defect(case, day(4, 10, 8), "SKU-BLENDER-5", "jar cracked along the base on first use")
    shop.request(case, day(4, 10, 12), "replacement", PRODUCTS["SKU-BLENDER-5"])
    note = "fourth remedy this week — asking lena to review with the history"
    shop.transfer(case, day(4, 10, 20), "east", note)

    case = shop.open_case(c, day(5, 13, 20), "ben", "late_delivery", knife)
    shop.request(case, day(5, 13, 26), "credit", 1500)
    shop.fulfil(case, day(5, 15, 0), "credit")
    shop.resolve(case, day(5, 15, 5), "credited", None)


def dee_runs_out(shop: Shop) -> None:
    """dee's $60 expedite budget: $22 + $28 leave $10, then $35 and $18 do not fit."""
    pan = shop.place(
        "c-019",
        day(1, 10, 15),
        one_each("SKU-PAN-28", "SKU-KNIFE-8"),
        "web",
        (day(1, 14, 5), "overnight"),
    )
    case = shop.open_case("c-019", day(2, 10, 50), "dee", "wrong_item", pan)
    shop.request(case, day(2, 10, 54), "replacement", PRODUCTS["SKU-PAN-28"])
    shop.request(case, day(2, 10, 56), "expedite", 2200)
    shop.fulfil(case, day(3, 9, 15), "replacement")
    shop.fulfil(case, day(3, 9, 16), "expedite", 2140)
    shop.resolve(case, day(3, 12, 0), "replaced", 5)

    blender = shop.place(
        "c-040", day(1, 11, 2), one_each("SKU-BLENDER-5"), "phone", (day(1, 15, 30), "expedited")
    )
    shop.delay(blender, day(2, 14, 0), 2)
    case = shop.open_case("c-040", day(2, 16, 30), "dee", "late_delivery", blender)
    shop.request(case, day(2, 16, 36), "expedite", 2800)
    shop.fulfil(case, day(3, 10, 5), "expedite", 2690)
    shop.resolve(case, day(3, 11, 0), "expedited", 4)

    parcel = shop.place(
        LOST,
        day(1, 9, 24),
        one_each("SKU-GRINDER-3", "SKU-SCALE-1"),
        "web",
        (day(1, 13, 40), "expedited"),
    )
    shop.delay(parcel, day(2, 18, 10), 1)
    shop.emit(
        day(3, 10, 40),
        "shipment.lost",
        "shipping",
        LOST,
        order_id=parcel.ref,
        last_scan=rfc3339(day(2, 6, 12)),
    )
    case = shop.open_case(LOST, day(3, 11, 5), "dee", "late_delivery", parcel)
    shop.request(case, day(3, 11, 9), "replacement", parcel.amount)
    shop.request(case, day(3, 11, 12), "expedite", 3500)
    shop.fulfil(case, day(4, 8, 40), "replacement")
    shop.resolve(case, day(4, 16, 0), "replaced", 4)

    grinder = shop.place(
        "c-033", day(3, 10, 30), one_each("SKU-GRINDER-3"), "web", (day(3, 15, 0), "overnight")
    )
    case = shop.open_case("c-033", day(4, 15, 40), "dee", "damaged_in_transit", grinder)
    shop.request(case, day(4, 15, 44), "replacement", PRODUCTS["SKU-GRINDER-3"])
    shop.request(case, day(4, 15, 46), "expedite", 1800)
    shop.fulfil(case, day(5, 9, 30), "replacement")
    shop.resolve(case, day(5, 10, 15), "replaced", 4)


def background_delays(shop: Shop) -> None:
    regulars = [c for c in CUSTOMERS if c not in SCRIPTED]
    shipped = [(o.shipped_at, o) for c in regulars for o in shop.orders[c] if o.shipped_at]
    for at, order in shop.rng.sample([(t, o) for t, o in shipped if t < day(4, 12, 0)], 6):
        shop.delay(order, shop.later(at, 600, 1800), shop.rng.randint(1, 3))


def _fits(shop: Shop, order: Order, at: datetime, topic: str) -> bool:
    if order.placed_at >= at:
        return False
    if topic in ("billing_error", "question"):
        return True
    if order.shipped_at is None or order.promised_by is None:
        return False
    if topic == "late_delivery":
        late = order.delayed_at is not None and order.delayed_at < at
        return late or (order.shipped_at < at and order.promised_by <= at + timedelta(hours=12))
    return order.shipped_at + timedelta(hours=18) <= at  # it has arrived


def _pick(shop: Shop, at: datetime, topic: str) -> tuple[str, Order] | None:
    # Background customers stay under three remedies, so c-013 is the only outlier.
    options = [
        (c, o)
        for c in CUSTOMERS
        if c not in SCRIPTED and shop.cases[c] < 2 and shop.remedies[c] <= 1
        for o in shop.orders[c]
        if _fits(shop, o, at, topic)
    ]
    return shop.rng.choice(options) if options else None


def _remedies(shop: Shop, topic: str, order: Order, sku: str, rep: str) -> list[tuple[str, int]]:
    rng = shop.rng
    # dee's expedite spend is scripted (dee_runs_out) so the README's numbers stay exact.
    can_expedite = rep != "dee"
    if topic == "broken_item":
        return [("replacement" if rng.random() < 0.8 else "refund", PRODUCTS[sku])]
    if topic == "damaged_in_transit":
        return [("replacement" if rng.random() < 0.6 else "refund", PRODUCTS[sku])]
    if topic == "wrong_item":
        if can_expedite and shop.remedies[order.customer] == 0 and rng.random() < 0.35:
            return [("replacement", PRODUCTS[sku]), ("expedite", rng.randrange(16, 71) * 50)]
        return [("replacement", PRODUCTS[sku])]
    if topic == "late_delivery":
        if can_expedite and rng.random() < 0.55:
            return [("expedite", rng.randrange(16, 71) * 50)]
        return [("credit", rng.randrange(5, 31) * 100)]
    if topic == "billing_error":
        cents = min(order.amount, rng.randrange(5, 121) * 100)
        return [("credit" if rng.random() < 0.5 else "refund", cents)]
    return []


def background_case(shop: Shop, at: datetime) -> None:
    rng = shop.rng
    topic = rng.choices(tuple(TOPICS), tuple(TOPICS.values()))[0]
    picked = _pick(shop, at, topic)
    if picked is None:
        topic = "question"
        picked = _pick(shop, at, topic)
    assert picked is not None
    customer, order = picked
    sku = rng.choice(order.items)[0]
    if topic == "broken_item":  # at most two reports per other sku: the kettle spike stands out
        fresh = [s for s, _ in order.items if shop.defects[s] < 2]
        topic, sku = ("broken_item", rng.choice(fresh)) if fresh else ("damaged_in_transit", sku)
    about = None if topic == "question" and rng.random() < 0.5 else order
    case = shop.open_case(customer, at, rng.choices(tuple(REPS), (30, 30, 28, 12))[0], topic, about)
    t = at
    if rng.random() < (0.4 if topic == "billing_error" else 0.08):
        other = "west" if REPS[case.rep] == "east" else "east"
        t = shop.transfer(case, shop.later(t, 5, 40), other, rng.choice(TRANSFER_NOTES))
    if topic == "broken_item":
        shop.defects[sku] += 1
        t = shop.defect(case, shop.later(t, 1, 4), sku, rng.choice(DEFECTS))
    remedies = _remedies(shop, topic, order, sku, case.rep)
    for remedy, cents in remedies:
        t = shop.request(case, shop.later(t, 2, 9), remedy, cents)
    last = t
    for remedy, _ in remedies:
        if rng.random() < 0.9:
            slow = remedy in ("replacement", "expedite")
            done = shop.later(t, 960, 1680) if slow else shop.later(t, 30, 240)
            last = max(last, shop.fulfil(case, done, remedy))
    if rng.random() < 0.85:
        resolution = RESOLUTION[remedies[0][0]] if remedies else "answered"
        shop.resolve(case, shop.later(last, 10, 180), resolution, shop.csat())


def support(shop: Shop) -> None:
    rng = shop.rng
    for n in range(1, 6):
        first = day(n, 11, 0) if n == 1 else day(n, OPEN, 5)
        span = int((day(n, 19, 30) - first).total_seconds())
        for offset in sorted(rng.randrange(span) for _ in range(rng.randint(10, 13))):
            background_case(shop, first + timedelta(seconds=offset))


def week(seed: int = SEED) -> list[Event]:
    shop = Shop(seed)
    setup(shop)
    history(shop)
    daily_orders(shop)
    kettle_spike(shop)
    outlier(shop)
    dee_runs_out(shop)
    background_delays(shop)
    support(shop)
    return shop.events


# ---------------------------------------------------------------------- rendering
def with_ticks(timeline: list[Event]) -> list[Event]:
    """Insert a clock.tick on every hour mark that follows an hour without events."""
    hour = timedelta(hours=1)
    out: list[Event] = []
    last, mark = START, START + hour

    def tick_until(t: datetime) -> None:
        nonlocal last, mark
        while mark <= t:
            if mark - last >= hour:
                out.append(Event(mark, -1, "clock.tick", "clock", None, {}))
                last = mark
            mark += hour

    for event in timeline:
        tick_until(event.at)
        out.append(event)
        last = event.at
    tick_until(END)
    return out


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def envelope(event_id: str, e: Event) -> dict[str, Any]:
    env: dict[str, Any] = {"event_id": event_id, "type": e.type, "occurred_at": rfc3339(e.at)}
    if e.customer is not None:
        env["customer_id"] = e.customer
    env["schema_version"] = SCHEMA_VERSION
    env["source"] = e.source
    env["data"] = {k: v.value if isinstance(v, Ref) else v for k, v in e.data.items()}
    return env


Context = dict[str, str]  # what the latest order and case were, for plausible bad lines


def _bad(eid: str, type_: str, at: str, customer: str, source: str, **data: Any) -> str:
    head = {"event_id": eid, "type": type_, "occurred_at": at, "customer_id": customer}
    return _dumps(head | {"schema_version": SCHEMA_VERSION, "source": source, "data": data})


def bad_truncated(eid: str, at: str, ctx: Context) -> bytes:
    text = _bad(
        eid,
        "order.shipped",
        at,
        ctx["customer"],
        "shipping",
        order_id=ctx["order_id"],
        carrier="UPS",
        service_level="standard",
    )
    return text[: text.index(',"service_level"')].encode()  # the producer died mid-write


def bad_unknown_type(eid: str, at: str, ctx: Context) -> bytes:
    text = _bad(
        eid,
        "loyalty.points_earned",
        at,
        ctx["customer"],
        "loyalty",
        order_id=ctx["order_id"],
        points=120,
    )
    return text.encode()


def bad_missing_field(eid: str, at: str, ctx: Context) -> bytes:
    text = _bad(
        eid,
        "item.defect_reported",
        at,
        ctx["customer"],
        "helpdesk",
        order_id=ctx["order_id"],
        description="the lid won't close",
    )  # no sku
    return text.encode()


def bad_float_amount(eid: str, at: str, ctx: Context) -> bytes:
    text = _bad(
        eid,
        "remedy.requested",
        at,
        ctx["case_customer"],
        "helpdesk",
        case_id=ctx["case_id"],
        rep_id=ctx["rep_id"],
        remedy="credit",
        amount="@",
        currency=CURRENCY,
    )
    return text.replace('"@"', "12.5").encode()


def bad_schema_version(eid: str, at: str, ctx: Context) -> bytes:
    text = _bad(
        eid,
        "case.resolved",
        at,
        ctx["case_customer"],
        "helpdesk",
        case_id=ctx["case_id"],
        resolution="replaced",
    )
    return text.replace(f'"schema_version":{SCHEMA_VERSION}', '"schema_version":99').encode()


def bad_latin1(eid: str, at: str, ctx: Context) -> bytes:
    text = _bad(
        eid,
        "item.defect_reported",
        at,
        ctx["customer"],
        "helpdesk",
        order_id=ctx["order_id"],
        sku=ctx["sku"],
        description="Deckel klemmt, Gehäuse gerissen, bitte Ersatz schicken",
    )
    return text.encode("latin-1")  # a producer that isn't UTF-8


def bad_naive_time(eid: str, at: str, ctx: Context) -> bytes:
    eta = rfc3339(datetime.fromisoformat(at) + timedelta(days=2))
    text = _bad(
        eid,
        "shipment.delayed",
        at.removesuffix("Z"),
        ctx["customer"],
        "shipping",
        order_id=ctx["order_id"],
        new_eta=eta,
    )
    return text.encode()


BAD_LINES: dict[int, tuple[str, Callable[[str, str, Context], bytes]]] = {
    # line number (1-based) -> why the line is bad, and how to write it
    25: ("invalid JSON: an order.shipped cut off mid-object", bad_truncated),
    113: ("unknown type loyalty.points_earned", bad_unknown_type),
    207: ("missing required field: item.defect_reported without data.sku", bad_missing_field),
    301: ("float money: remedy.requested with amount 12.5 as a JSON number", bad_float_amount),
    388: ("unsupported schema_version 99 on case.resolved", bad_schema_version),
    466: ("not UTF-8: an item.defect_reported encoded as Latin-1", bad_latin1),
    549: ("occurred_at without a UTC offset on shipment.delayed", bad_naive_time),
}


def decode(line: bytes) -> Any:
    """The checks a consumer makes: UTF-8, JSON, a supported schema_version, the model."""
    raw = json.loads(line.decode("utf-8"))
    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {raw['schema_version']!r}")
    return EVENT_ADAPTER.validate_python(raw)


def render(events: list[Event]) -> list[bytes]:
    timeline = with_ticks(sorted((e for e in events if e.at <= END), key=lambda e: (e.at, e.seq)))
    counters = {"O-": 10001, "K-": 1001}
    for e in timeline:
        for v in e.data.values():
            if isinstance(v, Ref) and not v.value:
                v.value = f"{v.prefix}{counters[v.prefix]}"
                counters[v.prefix] += 1
    lines: list[bytes] = []
    ctx: Context = {}
    previous_at = rfc3339(START)
    for e in timeline:
        while len(lines) + 1 in BAD_LINES:
            reason, make = BAD_LINES[len(lines) + 1]
            line = make(f"ev-{len(lines) + 1:06d}", previous_at, ctx)
            try:
                decode(line)
            except ValueError:  # UnicodeDecodeError, JSONDecodeError, ValidationError
                lines.append(line)
                continue
            raise AssertionError(f"bad line {len(lines) + 1} ({reason}) decodes cleanly")
        env = envelope(f"ev-{len(lines) + 1:06d}", e)
        line = _dumps(env).encode()
        EVENT_ADAPTER.validate_python(json.loads(line))  # a bad "good" event must fail here
        lines.append(line)
        previous_at = env["occurred_at"]
        data = env["data"]
        if e.type == "order.placed":
            ctx |= {"customer": env["customer_id"], "order_id": data["order_id"]}
            ctx["sku"] = data["items"][0]["sku"]
        elif e.type == "contact.opened":
            ctx |= {"case_customer": env["customer_id"], "case_id": data["case_id"]}
            ctx["rep_id"] = data["rep_id"]
    if max(BAD_LINES) > len(lines):
        raise AssertionError("the stream is too short for its bad lines")
    return [line + b"\n" for line in lines]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("shop-day.jsonl"),
        help="where to write the JSON lines (default: examples/shop-day.jsonl)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lines = render(week(args.seed))
    args.out.write_bytes(b"".join(lines))
    print(
        f"wrote {len(lines)} lines ({len(lines) - len(BAD_LINES)} events, "
        f"{len(BAD_LINES)} bad) to {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
