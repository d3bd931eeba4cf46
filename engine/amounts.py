"""Amounts (`up_to`, `charge`): fields, numbers, `+ - *`, `min` and `max`, and how one
comes to whole cents on an event. Its own module because the decision reads it on every
grant and charge (`amount_cents`), and its rounding and bounds are money's rules, apart
from the conditions that say whether a rule applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal, Union

from engine.facts import FieldType, Scalar
from events.models import MONEY_LIMIT


@dataclass(frozen=True)
class Num:
    value: Decimal


@dataclass(frozen=True)
class Ref:
    path: str
    type: FieldType


@dataclass(frozen=True)
class Arith:
    op: Literal["+", "-", "*"]
    left: Amount
    right: Amount


@dataclass(frozen=True)
class Call:
    fn: Literal["min", "max"]
    args: tuple[Amount, ...]


Amount = Union[Num, Ref, Arith, Call]  # noqa: UP007 (recursive alias)


def amount_value(expr: Amount, fact: dict[str, Scalar]) -> Decimal:
    """Evaluate an amount in currency units (money paths are cents in the fact)."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Ref):
        raw = fact[expr.path]
        assert isinstance(raw, int)
        return Decimal(raw).scaleb(-2) if expr.type == "money" else Decimal(raw)
    if isinstance(expr, Arith):
        a, b = amount_value(expr.left, fact), amount_value(expr.right, fact)
        return a + b if expr.op == "+" else a - b if expr.op == "-" else a * b
    values = [amount_value(a, fact) for a in expr.args]
    return min(values) if expr.fn == "min" else max(values)


MAX_CENTS = int(MONEY_LIMIT.scaleb(2)) - 1
"""The largest amount a decision carries, in cents (money is below `MONEY_LIMIT` units)."""


def amount_cents(expr: Amount, fact: dict[str, Scalar]) -> int:
    """Round half-even to the cent, never below zero (a grant cannot be negative) nor above
    `MAX_CENTS` (an "up to" past any real amount says the same, and stays in the contract).

    Most amounts in policies are a money field or a number (`up_to: order.amount`,
    `up_to: 30`): those skip the Decimal arithmetic, with the same result."""
    if isinstance(expr, Ref) and expr.type == "money":
        cents = fact[expr.path]
        assert isinstance(cents, int)
        return min(MAX_CENTS, max(0, cents))  # already whole cents
    if isinstance(expr, Num):
        known = _LITERAL_CENTS.get(expr.value)
        if known is None:  # one entry per literal of the policy set
            known = _LITERAL_CENTS[expr.value] = rounded_cents(expr.value)
        return known
    return rounded_cents(amount_value(expr, fact))


def rounded_cents(value: Decimal) -> int:
    """`value` in currency units to whole cents as `amount_cents` bounds them."""
    # Bounded first: quantizing an amount of more digits than the context's precision (28),
    # such as order.amount * order.amount, raises InvalidOperation.
    if value <= 0:
        return 0
    if value >= MAX_UNITS:
        return MAX_CENTS
    value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return min(MAX_CENTS, max(0, int(value.scaleb(2))))


MAX_UNITS = MONEY_LIMIT  # in currency units: above MAX_CENTS
_LITERAL_CENTS: dict[Decimal, int] = {}


def amount_paths(expr: Amount) -> set[str]:
    if isinstance(expr, Ref):
        return {expr.path}
    if isinstance(expr, Arith):
        return amount_paths(expr.left) | amount_paths(expr.right)
    if isinstance(expr, Call):
        return {p for a in expr.args for p in amount_paths(a)}
    return set()
