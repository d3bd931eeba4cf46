"""Reading a condition or an amount from a policy's text: `ast` against an allow-list,
type-checked against the event's fields, lowered to `engine.expr`'s normal form (or an
`engine.amounts` expression), with errors that point at the span. Its own module because
what the language accepts and how it says no change for other reasons than what a parsed
condition means when an event is decided.
"""

from __future__ import annotations

import ast
import re
from decimal import Decimal, InvalidOperation
from typing import Literal

from engine.amounts import MAX_UNITS, Amount, Arith, Call, Num, Ref
from engine.errors import Span, did_you_mean
from engine.expr import All, Any, Cond, Leaf, Op
from engine.facts import Field, FieldType, Scalar

_OPS: dict[type[ast.cmpop], Op] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_NEGATE: dict[Op, Op] = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_FLIP: dict[Op, Op] = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ORDERED: frozenset[FieldType] = frozenset({"money", "number"})


class ExprError(Exception):
    def __init__(self, message: str, span: Span, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint


# ------------------------------------------------------------------ parsing


_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


class _Source:
    """The expression text and where it sits in its file, to place errors."""

    def __init__(self, text: str, at: Span) -> None:
        self.text = text
        self.at = at
        self._lines: list[bytes] | None = None

    def span(self, node: ast.AST) -> Span:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        end = getattr(node, "end_col_offset", None) or col + 1
        if getattr(node, "end_lineno", line) != line:
            end = len(self.text.splitlines()[line - 1])
        # `at` is where the expression's first character sits in the file; a block
        # scalar's later lines start at the same indentation.
        return Span(self.at.line + line - 1, self.at.col + col, self.at.col + max(end, col + 1))

    def segment(self, node: ast.AST) -> str:
        """`ast.get_source_segment`, with the text split into lines once: that function
        splits it on every call, which made a condition of n clauses take n² steps (a
        thousand clauses took seconds, twenty thousand hung `goodwill check`)."""
        if self._lines is None:
            # as ast splits them (on \r\n, \r and \n only); offsets count UTF-8 bytes
            self._lines = [line.encode() for line in _LINES.findall(self.text)]
        first, last = node.lineno - 1, getattr(node, "end_lineno", None)  # type: ignore[attr-defined]
        col, end = node.col_offset, getattr(node, "end_col_offset", None)  # type: ignore[attr-defined]
        if last is None or end is None or last > len(self._lines):
            return self.text
        if first == last - 1:
            return self._lines[first][col:end].decode() or self.text
        parts = [self._lines[first][col:], *self._lines[first + 1 : last - 1]]
        return (b"".join(parts) + self._lines[last - 1][:end]).decode() or self.text


_LOOKS = {
    "condition": "conditions look like:"
    " order.amount <= 500 and customer.tier in ['gold', 'silver']",
    "amount": "amounts look like: order.amount, 25, or min(order.amount * 0.1, 25)",
}


def _parse(text: str, src: _Source, what: str = "condition") -> ast.expr:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        col = (err.offset or 1) - 1
        line = err.lineno or 1
        node = ast.Constant(value=None, lineno=line, col_offset=col, end_col_offset=col + 1)
        raise ExprError(f"cannot parse {what}: {err.msg}", src.span(node), _LOOKS[what]) from None
    return tree.body


class _Checker:
    def __init__(self, vocab: dict[str, Field], src: _Source, event_type: str) -> None:
        self.vocab = vocab
        self.src = src
        self.event_type = event_type

    # -- shared
    def path(self, node: ast.expr) -> Field | None:
        parts: list[str] = []
        cur = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name):
            return None
        parts.append(cur.id)
        dotted = ".".join(reversed(parts))
        if dotted in ("true", "false", "True", "False"):
            return None
        field = self.vocab.get(dotted)
        if field is None:
            raise ExprError(
                f"unknown field '{dotted}' on {self.event_type}",
                self.src.span(node),
                did_you_mean(dotted, self.vocab) or "run `goodwill fields` to list the fields",
            )
        return field

    def literal(self, node: ast.expr) -> Scalar | Decimal | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if not node.value.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in node.value):
                # a lone surrogate from an escape: no event can hold it, and the matcher
                # refuses the ruleset
                raise ExprError("text that is not Unicode characters", self.src.span(node))
            return node.value
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            if isinstance(node.value, float):
                text = self.src.segment(node)
                try:
                    return Decimal(text)
                except InvalidOperation:
                    raise ExprError("not a plain decimal number", self.src.span(node)) from None
            return node.value
        if isinstance(node, ast.Name) and node.id in ("true", "false"):
            return node.id == "true"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.literal(node.operand)
            if isinstance(inner, int | Decimal) and not isinstance(inner, bool):
                return -inner
        return None

    def coerce(self, value: Scalar | Decimal, want: FieldType, node: ast.expr) -> Scalar:
        span = self.src.span(node)
        if want == "money" and isinstance(value, int | Decimal) and not isinstance(value, bool):
            cents = Decimal(value).scaleb(2)
            if cents != cents.to_integral_value():
                raise ExprError("money has at most two decimal places", span)
            return int(cents)
        if want == "number" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if want == "text" and isinstance(value, str):
            return value
        if want == "bool" and isinstance(value, bool):
            return value
        shown = (
            "text"
            if isinstance(value, str)
            else "a flag"
            if isinstance(value, bool)
            else ("a decimal" if isinstance(value, Decimal) else "a number")
        )
        raise ExprError(
            f"type mismatch: compares {want} with {shown} {self.src.segment(node)}",
            span,
            _type_hint(want),
        )

    def unsupported(self, node: ast.AST, what: str) -> ExprError:
        return ExprError(
            f"{what} is not allowed in a condition",
            self.src.span(node),
            "allowed: comparisons, and/or/not, `in` a literal list, dotted fields, literals",
        )

    # -- conditions
    def cond(self, node: ast.expr, negate: bool = False) -> Cond:
        if isinstance(node, ast.BoolOp):
            items = tuple(self.cond(v, negate) for v in node.values)
            conj = isinstance(node.op, ast.And) != negate
            return All(items) if conj else Any(items)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.cond(node.operand, not negate)
        if isinstance(node, ast.Compare):
            return self.compare(node, negate)
        if isinstance(node, ast.Attribute | ast.Name):
            field = self.path(node)
            if field is None:
                raise self.unsupported(node, "a constant")
            if field.type != "bool":
                raise ExprError(
                    f"'{field.path}' is {field.type}, not a condition",
                    self.src.span(node),
                    f"compare it, e.g. {field.path} {_example(field.type)}",
                )
            text = self.src.segment(node)
            if negate:  # a `why` must not show `order.known` failing while it is true
                return Leaf("!=", field.path, True, None, f"not {text}")
            return Leaf("==", field.path, True, None, text)
        raise self.unsupported(node, type(node).__name__.lower())

    def compare(self, node: ast.Compare, negate: bool) -> Cond:
        text = self.src.segment(node)
        operands = [node.left, *node.comparators]
        parts: list[Cond] = []
        for i, op_node in enumerate(node.ops):
            left, right = operands[i], operands[i + 1]
            if isinstance(op_node, ast.In | ast.NotIn):
                parts.append(self.membership(left, right, isinstance(op_node, ast.NotIn), text))
                continue
            op = _OPS.get(type(op_node))
            if op is None:
                raise self.unsupported(node, f"the operator `{type(op_node).__name__}`")
            parts.append(self.binary(op, left, right, text))
        cond: Cond = parts[0] if len(parts) == 1 else All(tuple(parts))
        return _negate(cond) if negate else cond

    def binary(self, op: Op, left: ast.expr, right: ast.expr, text: str) -> Leaf:
        lf = self.path(left) if isinstance(left, ast.Attribute | ast.Name) else None
        rf = self.path(right) if isinstance(right, ast.Attribute | ast.Name) else None
        if lf is None and rf is None:
            raise ExprError(
                "a comparison needs a field on one side",
                self.src.span(left),
                "e.g. order.amount <= 500",
            )
        if lf is None:
            lf, rf, left, right, op = rf, None, right, left, _FLIP[op]
        assert lf is not None
        if op not in ("==", "!=") and lf.type not in _ORDERED:
            raise ExprError(
                f"'{lf.path}' is {lf.type}: only == and != apply",
                self.src.span(left),
                "order comparisons (<, <=, >, >=) apply to money and numbers",
            )
        if rf is not None:
            if rf.type != lf.type:
                raise ExprError(
                    f"type mismatch: '{lf.path}' is {lf.type} but '{rf.path}' is {rf.type}",
                    self.src.span(right),
                )
            return Leaf(op, lf.path, None, rf.path, text)
        value = self.literal(right)
        if value is None:
            raise self.unsupported(right, "this expression")
        return Leaf(op, lf.path, self.coerce(value, lf.type, right), None, text)

    def membership(self, left: ast.expr, right: ast.expr, negated: bool, text: str) -> Cond:
        field = self.path(left) if isinstance(left, ast.Attribute | ast.Name) else None
        if field is None:
            raise ExprError("`in` needs a field on its left", self.src.span(left))
        if not isinstance(right, ast.List | ast.Tuple | ast.Set) or not right.elts:
            raise ExprError(
                "`in` takes a non-empty literal list",
                self.src.span(right),
                "e.g. customer.tier in ['gold', 'silver']",
            )
        values: list[Scalar] = []
        for elt in right.elts:
            lit = self.literal(elt)
            if lit is None:
                raise ExprError("list items must be literals", self.src.span(elt))
            values.append(self.coerce(lit, field.type, elt))
        op: Op = "!=" if negated else "=="
        items = tuple(Leaf(op, field.path, v, None, text) for v in dict.fromkeys(values))
        if len(items) == 1:
            return items[0]
        return All(items) if negated else Any(items)

    # -- amounts
    def amount(self, node: ast.expr) -> Amount:
        if isinstance(node, ast.Attribute | ast.Name):
            field = self.path(node)
            if field is not None:
                if field.type not in _ORDERED:
                    raise ExprError(
                        f"'{field.path}' is {field.type}, not an amount", self.src.span(node)
                    )
                return Ref(field.path, field.type)
        lit = self.literal(node)
        if lit is not None:
            if isinstance(lit, bool | str):
                raise ExprError("an amount must be a number or money", self.src.span(node))
            value = Decimal(lit)
            if abs(value) >= MAX_UNITS:
                # past any amount a decision carries; an exponent this large could also
                # overflow the arithmetic (9e999999 * 9e999999) when the event is decided
                raise ExprError(
                    "a number in an amount must be below 1,000,000,000,000,000",
                    self.src.span(node),
                    "an `up_to` larger than any real amount says the same: use the field,"
                    " e.g. up_to: order.amount",
                )
            return Num(value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
            sym: Literal["+", "-", "*"] = (
                "+"
                if isinstance(node.op, ast.Add)
                else "-"
                if isinstance(node.op, ast.Sub)
                else "*"
            )
            return Arith(sym, self.amount(node.left), self.amount(node.right))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("min", "max")
            and node.args
            and not node.keywords
        ):
            fn: Literal["min", "max"] = "min" if node.func.id == "min" else "max"
            return Call(fn, tuple(self.amount(a) for a in node.args))
        raise ExprError(
            "amounts may use fields, numbers, + - *, min() and max()",
            self.src.span(node),
            "e.g. min(order.amount, 50) or customer.lifetime_value * 0.05",
        )


def _negate(cond: Cond) -> Cond:
    if isinstance(cond, Leaf):
        text = cond.text[4:] if cond.text.startswith("not ") else f"not {cond.text}"
        return Leaf(_NEGATE[cond.op], cond.path, cond.value, cond.other, text)
    if isinstance(cond, All):
        return Any(tuple(_negate(c) for c in cond.items))
    return All(tuple(_negate(c) for c in cond.items))


def _example(t: FieldType) -> str:
    return {"money": "<= 100", "number": ">= 3", "text": "== 'gold'", "bool": "== true"}[t]


def _type_hint(t: FieldType) -> str:
    return {
        "money": "money is written as a number of currency units, e.g. 49.99",
        "number": "write a whole number, e.g. 3",
        "text": "write text in quotes, e.g. 'gold'",
        "bool": "write true or false",
    }[t]


# ------------------------------------------------------------------ entry points


MAX_GROUPS = 15
"""The most `and`/`or` groups (an `in` list and a chained comparison are one each) in one
`when`: durable_rules spends two of a rule's 31 expression slots on each (error 113)."""
MAX_DEPTH = 64
"""How deeply an amount may nest: deciding it recurses once per level."""


def _too_deep(at: Span, what: str) -> ExprError:
    return ExprError(f"{what} is nested too deeply", at, "split it, or write it flatter")


def groups(cond: Cond) -> int:
    """The `$and`/`$or` groups of `cond` as compiled for durable_rules."""
    if isinstance(cond, Leaf):
        return 0
    return 1 + sum(groups(c) for c in cond.items)


def _depth(expr: Amount) -> int:
    if isinstance(expr, Arith):
        return 1 + max(_depth(expr.left), _depth(expr.right))
    if isinstance(expr, Call):
        return 1 + max(_depth(a) for a in expr.args)
    return 1


def parse_condition(text: str, vocab: dict[str, Field], event_type: str, at: Span) -> Cond:
    src = _Source(text, at)
    try:
        cond = _Checker(vocab, src, event_type).cond(_parse(text, src))
        count = groups(cond)
    except RecursionError:  # in ast.parse, or in walking what it gave
        raise _too_deep(at, "the condition") from None
    if count > MAX_GROUPS:
        raise ExprError(
            f"the condition has {count} and/or groups (each `in` list and chained"
            f" comparison is one); the matcher allows {MAX_GROUPS} in one rule",
            at,
            "split it into several rules, or several policies on the same event",
        )
    return cond


def parse_amount(text: str, vocab: dict[str, Field], event_type: str, at: Span) -> Amount:
    src = _Source(text, at)
    try:
        amount = _Checker(vocab, src, event_type).amount(_parse(text, src, "amount"))
        depth = _depth(amount)
    except RecursionError:
        raise _too_deep(at, "the amount") from None
    if depth > MAX_DEPTH:
        raise _too_deep(at, "the amount")
    return amount
