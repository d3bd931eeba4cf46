"""How a decision reads to a person: its words (`say`) and the values it shows.

A rule's `say` has its `{path}` placeholders filled in from the fact, money written in the
policy set's currency (`money_text`); `why`, routes and alerts show a fact's values with
money as an amount, not cents (`value_shown`). Its own module because the wording changes for
other reasons than what is decided, and `engine.report` writes money the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from engine.facts import BUDGET_FIELDS, STATE_FIELDS, Scalar, event_fields, from_minor
from events.models import CATALOG

_SAY_LIMIT = 4000  # events.models.Text
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")


def money_text(cents: int, currency: str) -> str:
    amount = from_minor(cents)
    return f"${amount:,}" if currency == "USD" else f"{amount:,} {currency}"


def value_shown(path: str, fact: Mapping[str, Scalar]) -> str | int | bool | None:
    value = fact.get(path)
    if _is_money(path) and isinstance(value, int):
        return str(from_minor(value))
    return value


def fill(text: str, fact: Mapping[str, Scalar], currency: str) -> str:
    def one(m: re.Match[str]) -> str:
        path, value = m.group(1), fact.get(m.group(1))
        if _is_money(path) and isinstance(value, int):
            return money_text(value, currency)
        return str(value)

    filled = _PLACEHOLDER.sub(one, text)
    # The contract's limit for words (`Text`); decisions are not validated one by one.
    return filled if len(filled) <= _SAY_LIMIT else filled[: _SAY_LIMIT - 1] + "…"


_MONEY_PATHS = frozenset(
    path
    for fields in (STATE_FIELDS, BUDGET_FIELDS, *(event_fields(t) for t in CATALOG))
    for path, f in fields.items()
    if f.type == "money"
)


def _is_money(path: str) -> bool:
    return path in _MONEY_PATHS
