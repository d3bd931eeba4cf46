"""The condition language: what parses, what it means, and how it refuses."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.amounts import MAX_CENTS, amount_cents, amount_value, rounded_cents
from engine.errors import Span
from engine.expr import All, Any, Leaf, evaluate
from engine.expr_parse import ExprError, parse_amount, parse_condition
from engine.facts import STATE_FIELDS, ZERO, from_minor, to_minor, vocabulary

AT = Span(9, 11, 12)
VOCAB = vocabulary("remedy.requested", True)


def cond(text: str):  # type: ignore[no-untyped-def]
    return parse_condition(text, VOCAB, "remedy.requested", AT)


def fact(**values: object) -> dict[str, object]:
    base: dict[str, object] = {p: ZERO[f.type] for p, f in VOCAB.items()}
    base.update({k.replace("__", "."): v for k, v in values.items()})
    return base


def test_money_literals_become_cents_and_numbers_stay_whole() -> None:
    assert cond("order.amount <= 19.99") == Leaf(
        "<=", "order.amount", 1999, None, "order.amount <= 19.99"
    )
    assert cond("customer.remedies_90d >= 3").value == 3  # type: ignore[union-attr]


def test_chained_comparison_is_a_conjunction() -> None:
    c = cond("0 < order.age_days <= 30")
    assert isinstance(c, All)
    assert [leaf.op for leaf in c.items] == [">", "<="]  # type: ignore[union-attr]
    assert evaluate(c, fact(order__age_days=30))
    assert not evaluate(c, fact(order__age_days=0))
    assert not evaluate(c, fact(order__age_days=31))


def test_not_is_pushed_into_the_leaves() -> None:
    c = cond("not (order.amount > 100 or customer.tier == 'gold')")
    assert isinstance(c, All)
    assert {leaf.op for leaf in c.items} == {"<=", "!="}  # type: ignore[union-attr]
    assert evaluate(c, fact(order__amount=10000, customer__tier="silver"))
    assert not evaluate(c, fact(order__amount=10001, customer__tier="silver"))


def test_in_and_not_in_a_literal_list() -> None:
    c = cond("customer.tier in ['gold', 'silver']")
    assert isinstance(c, Any)
    assert evaluate(c, fact(customer__tier="silver"))
    assert not evaluate(c, fact(customer__tier="standard"))
    n = cond("event.remedy not in ['credit', 'refund']")
    assert evaluate(n, fact(event__remedy="expedite"))
    assert not evaluate(n, fact(event__remedy="refund"))


def test_flags_read_alone_and_negated() -> None:
    assert evaluate(cond("order.known"), fact(order__known=True))
    assert evaluate(cond("not order.lost"), fact(order__lost=False))
    assert not evaluate(cond("not order.lost"), fact(order__lost=True))


def test_field_against_field_of_the_same_type() -> None:
    c = cond("event.amount <= budget.remaining")
    assert c == Leaf(
        "<=", "event.amount", None, "budget.remaining", "event.amount <= budget.remaining"
    )
    assert evaluate(c, fact(event__amount=500, budget__remaining=500))
    assert not evaluate(c, fact(event__amount=501, budget__remaining=500))


@pytest.mark.parametrize(
    ("text", "message", "col", "hint"),
    [
        (
            "order.amout <= 500",
            "unknown field 'order.amout' on remedy.requested",
            11,
            "did you mean 'order.amount'?",
        ),
        (
            "order.amount <= 'five'",
            "type mismatch: compares money with text 'five'",
            27,
            "money is written as a number",
        ),
        ("customer.tier > 'gold'", "'customer.tier' is text: only == and != apply", 11, None),
        ("order.amount == 1.234", "money has at most two decimal places", 27, None),
        ("customer.remedies_90d > 2.5", "type mismatch: compares number with a decimal", 35, None),
        ("__import__('os').system('x')", "call is not allowed in a condition", 11, None),
        ("order.amount", "'order.amount' is money, not a condition", 11, None),
        ("order.amount <= customer.tier", "type mismatch: 'order.amount' is money", 27, None),
        ("customer.tier in []", "`in` takes a non-empty literal list", 28, None),
        ("1 < 2", "a comparison needs a field on one side", 11, None),
        ("order.amount <=", "cannot parse condition", None, None),
    ],
)
def test_refusals_point_at_the_span(
    text: str, message: str, col: int | None, hint: str | None
) -> None:
    with pytest.raises(ExprError) as err:
        cond(text)
    assert message in err.value.message
    assert err.value.span.line == 9
    if col is not None:
        assert err.value.span.col == col
    if hint is not None:
        assert err.value.hint is not None and hint in err.value.hint


def test_amounts_round_half_even_and_never_go_negative() -> None:
    amount = parse_amount("order.amount * 0.105", VOCAB, "remedy.requested", AT)
    assert amount_cents(amount, fact(order__amount=1000)) == 105  # 1.05 exactly
    assert amount_cents(amount, fact(order__amount=500)) == 52  # 0.525 → 0.52 (half-even)
    lower = parse_amount("min(order.amount, 25) - 30", VOCAB, "remedy.requested", AT)
    assert amount_cents(lower, fact(order__amount=10000)) == 0
    assert (
        amount_cents(parse_amount("max(event.amount, 5)", VOCAB, "x", AT), fact(event__amount=1250))
        == 1250
    )


def test_amounts_refuse_text_and_unknown_functions() -> None:
    with pytest.raises(ExprError, match="not an amount"):
        parse_amount("customer.tier", VOCAB, "remedy.requested", AT)
    with pytest.raises(ExprError, match="amounts may use"):
        parse_amount("abs(order.amount)", VOCAB, "remedy.requested", AT)


def test_every_state_field_has_a_zero_value_of_its_type() -> None:
    for path, f in STATE_FIELDS.items():
        assert (
            type(ZERO[f.type]) is {"money": int, "number": int, "text": str, "bool": bool}[f.type]
        ), path
    assert Decimal("0.10").scaleb(2) == 10


def test_amounts_stay_within_what_a_decision_can_carry() -> None:
    huge = parse_amount("order.amount * 1000", VOCAB, "remedy.requested", AT)
    largest_order = 10**17 - 1  # 999,999,999,999,999.99 in cents, the contract's largest
    assert amount_cents(huge, fact(order__amount=largest_order)) == MAX_CENTS
    assert amount_cents(huge, fact(order__amount=100)) == 100_000


def test_an_amount_past_the_context_precision_is_bounded_not_an_error() -> None:
    # quantizing 30 digits to the cent raised InvalidOperation, so every event the rule
    # fired on was dead-lettered as processing_failed
    square = parse_amount("order.amount * order.amount", VOCAB, "remedy.requested", AT)
    assert amount_cents(square, fact(order__amount=10**17 - 1)) == MAX_CENTS
    below = parse_amount("order.amount - order.amount * order.amount", VOCAB, "x", AT)
    assert amount_cents(below, fact(order__amount=10**17 - 1)) == 0


@pytest.mark.parametrize("text", ["1e30", "min(order.amount, 9e999999 * 9e999999)", "-1e15"])
def test_a_number_past_any_amount_is_refused_where_it_is_written(text: str) -> None:
    with pytest.raises(ExprError, match="must be below 1,000,000,000,000,000") as err:
        parse_amount(text, VOCAB, "remedy.requested", AT)
    assert err.value.span.line == 9


@pytest.mark.parametrize("text", ["order.amount", "event.amount", "30", "0.005", "12.345", "0"])
@pytest.mark.parametrize("cents", [0, 1, 99, 52_525, MAX_CENTS, MAX_CENTS + 7, -3])
def test_a_plain_field_or_number_gives_what_the_decimal_arithmetic_gives(
    text: str, cents: int
) -> None:
    # amount_cents skips the arithmetic for these; amount_value + rounded_cents is the
    # general path every other amount takes.
    amount = parse_amount(text, VOCAB, "remedy.requested", AT)
    values = fact(order__amount=cents, event__amount=cents)
    general = rounded_cents(amount_value(amount, values))
    assert amount_cents(amount, values) == general
    assert amount_cents(amount, values) == general  # a literal's cents, cached by the first


@pytest.mark.parametrize("cents", [0, 5, 99, 1200, 123_456, -150, 2**63 - 1, -(2**63)])
def test_cents_become_amounts_with_exactly_two_decimals(cents: int) -> None:
    amount = from_minor(cents)
    assert amount.as_tuple().exponent == -2
    assert amount == Decimal(cents) / 100 and to_minor(amount) == cents
    assert str(amount) == f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"


@pytest.mark.parametrize(
    "text",
    [
        "order.amount <= 19.99 and customer.tier in ['gold', 'silver']",
        "event.topic == 'café ☕' or not (order.known and\n  order.age_days < 30)",
        "(case.topic == 'a'\r\n  and case.channel != 'b'\r  or order.lost)",
    ],
)
def test_a_clause_shows_the_text_ast_gives_it(text: str) -> None:
    import ast

    from engine.expr_parse import _Source

    src = _Source(text, AT)
    for node in ast.walk(ast.parse(text, mode="eval")):
        if isinstance(node, ast.expr):
            assert src.segment(node) == ast.get_source_segment(text, node), ast.dump(node)


def test_a_long_condition_is_split_into_lines_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # ast.get_source_segment splits the whole text on every call: a condition of 20,000
    # clauses took hours to check
    import engine.expr_parse

    calls = 0
    findall = engine.expr_parse._LINES.findall

    class Counting:
        def findall(self, text: str) -> list[str]:
            nonlocal calls
            calls += 1
            return findall(text)

    monkeypatch.setattr(engine.expr_parse, "_LINES", Counting())
    when = cond(" and ".join(f"event.amount > {i}" for i in range(20_000)))
    assert isinstance(when, All) and len(when.items) == 20_000 and calls == 1
