"""The condition language's normal form, and the reference evaluator that reads it.

Conditions are comparisons (chains allowed), `and`/`or`/`not`, `in`/`not in` a literal
list, and bare flags, over dotted paths from `engine.facts`. `engine.expr_parse` reads
their text (`ast` against an allow-list, type-checked, never eval'd) and lowers each to a
small normal form (`Leaf`, `All`, `Any`; negation pushed into the leaves) that both the
durable_rules compiler and the reference evaluator (`evaluate`) read, so they cannot
disagree on what a condition means — only on how it is matched, which the differential
tests check. Its own module because that meaning changes apart from how a condition is
written and refused; amounts (`up_to`, `charge`) are `engine.amounts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from engine.facts import Scalar

Op = Literal["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Leaf:
    """`path op value` or `path op other`; `text` is the source clause it came from."""

    op: Op
    path: str
    value: Scalar | None
    other: str | None
    text: str

    def test(self, fact: dict[str, Scalar]) -> bool:
        left = fact[self.path]
        right = fact[self.other] if self.other is not None else self.value
        assert right is not None
        return _compare(self.op, left, right)


@dataclass(frozen=True)
class All:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Any:
    items: tuple[Cond, ...]


Cond = Union[Leaf, All, Any]  # noqa: UP007 (recursive alias)


def _compare(op: Op, left: Scalar, right: Scalar) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    assert isinstance(left, int) and isinstance(right, int)
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def evaluate(cond: Cond, fact: dict[str, Scalar]) -> bool:
    """The reference evaluator: what durable_rules must agree with."""
    if isinstance(cond, Leaf):
        return cond.test(fact)
    if isinstance(cond, All):
        return all(evaluate(c, fact) for c in cond.items)
    return any(evaluate(c, fact) for c in cond.items)


def leaves(cond: Cond) -> list[Leaf]:
    if isinstance(cond, Leaf):
        return [cond]
    return [leaf for item in cond.items for leaf in leaves(item)]


def paths(cond: Cond) -> set[str]:
    out: set[str] = set()
    for leaf in leaves(cond):
        out.add(leaf.path)
        if leaf.other is not None:
            out.add(leaf.other)
    return out
