"""budgets.yaml → the set's currency and its `Budget`s: a scope, a period, an amount that is
money, and an overflow to a person or team by name with words every charging policy can fill
in. Its own module because budgets are defined once for the whole set, apart from the policies
that charge them, and read before those policies are.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from engine.facts import to_minor
from engine.policy import Budget, RouteSpec
from engine.policy_file import ANY_FIELD, NAME_LIMIT, TEXT_LIMIT, placeholders
from engine.policy_schema import BUDGET_KEYS, BUDGETS_FILE_KEYS
from engine.yaml_file import File, read_yaml
from events.models import MONEY_LIMIT

BUDGETS_FILE = "budgets.yaml"
_CURRENCY = re.compile(r"[A-Z]{3}")
_MONEY_CENTS = MONEY_LIMIT.scaleb(2)  # money is below MONEY_LIMIT units


def read_budgets(path: Path) -> tuple[File, dict[str, Budget], str]:
    f, doc = read_yaml(path)
    budgets: dict[str, Budget] = {}
    if doc is None or not f.keys(doc, BUDGETS_FILE_KEYS, "the budgets file", ("budgets",), True):
        return f, budgets, "USD"
    currency = doc.get("currency", "USD")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        # events in any other currency are dead-lettered, and decisions carry this code
        f.error(
            f.value_span(doc, "currency"),
            f"'{currency}' is not a currency code",
            "three capital letters (ISO 4217), e.g. USD",
        )
        currency = "USD"
    listed = doc.get("budgets") or []
    if not isinstance(listed, CommentedSeq):
        f.error(f.value_span(doc, "budgets"), "budgets must be a list of budgets")
        listed = []
    for node in listed:
        if not f.keys(node, BUDGET_KEYS, "a budget", tuple(BUDGET_KEYS)):
            continue
        name = str(node["name"])
        scope, period = node["scope"], node["period"]
        for key, limit in (("name", NAME_LIMIT), ("say", TEXT_LIMIT), ("to", NAME_LIMIT)):
            holder = node if key == "name" else node.get("overflow")
            if isinstance(holder, CommentedMap) and key in holder:
                f.text_value(holder, key, limit=limit)
        if scope not in ("rep", "team"):
            f.error(f.value_span(node, "scope"), f"unknown scope '{scope}'", "rep or team")
        if period not in ("day", "week", "month"):
            f.error(
                f.value_span(node, "period"), f"unknown period '{period}'", "day, week or month"
            )
        amount = node["amount"]
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount >= 0:
            f.error(f.value_span(node, "amount"), "amount must be a non-negative number")
            continue
        cents = Decimal(str(amount)).scaleb(2)
        if not cents.is_finite() or cents >= _MONEY_CENTS or cents != cents.to_integral_value():
            # decisions carry the allocation as money: below 1E15, whole cents
            f.error(
                f.value_span(node, "amount"),
                "amount must be money: below 1,000,000,000,000,000, at most two decimals",
            )
            continue
        overflow = node["overflow"]
        if not f.keys(overflow, {"to": "", "say": ""}, "overflow", ("to", "say")):
            continue
        if isinstance(overflow["say"], str):
            # the words a charging policy's decision says: checked here for their form and
            # against each such policy's fields where it charges (`PolicyReader.charges`)
            placeholders(f, overflow, "say", ANY_FIELD)
        if "." in str(overflow["to"]):  # a policy's route resolves a field; this does not
            f.error(
                f.value_span(overflow, "to"),
                "an overflow goes to a person or team by name,"
                f" not to a field ('{overflow['to']}')",
                "team-lead is the rep's lead",
            )
        if name in budgets:
            f.error(f.value_span(node, "name"), f"duplicate budget '{name}'")
        budgets[name] = Budget(
            name,
            scope,
            period,
            to_minor(Decimal(str(amount))),
            RouteSpec(str(overflow["to"]), None, f"over the {name} budget", ()),
            str(overflow["say"]),
        )
    return f, budgets, currency
