"""A decision's explanation: each clause of the fired rule's condition, in words, with its
result and the values it read; for a later rule, what kept each earlier one from matching.

`clause_text` words a condition so that, read back as a condition, it tests the same thing
(tests/test_why.py holds it to that); `clauses` evaluates them on the fact. Its own module
because how a decision explains itself changes apart from how it is reached.
"""

from __future__ import annotations

from engine.draft import Doc
from engine.expr import All, Cond, Leaf, evaluate, paths
from engine.facts import Scalar
from engine.policy import Policy, Rule
from engine.say import value_shown


def clause_text(cond: Cond, inside_and: bool = False) -> str:
    """The words of a condition as its `why` shows them: read as a condition, they test
    what `cond` tests (an `or` inside an `and` keeps its parentheses)."""
    if isinstance(cond, Leaf):
        return cond.text
    conj = isinstance(cond, All)
    texts = list(dict.fromkeys(clause_text(c, conj) for c in cond.items))
    if len(texts) == 1:
        return texts[0]
    text = (" and " if conj else " or ").join(texts)
    return f"({text})" if inside_and and not conj else text


def clauses(
    cache: dict[tuple[str, str], tuple[tuple[str, Cond, tuple[str, ...]], ...]],
    policy: Policy,
    rule: Rule,
    fact: dict[str, Scalar],
    shown: bool | None = None,
) -> list[Doc]:
    """Each clause of `rule`'s condition with its result and the values it read; only
    those whose result is `shown`, when given (False: what kept a rule from matching)."""
    parts = cache.get((policy.id, rule.name))
    if parts is None:
        when = rule.when
        conds: tuple[Cond, ...] = when.items if isinstance(when, All) else (when,)
        parts = tuple((clause_text(c), c, tuple(sorted(paths(c)))) for c in conds)
        cache[(policy.id, rule.name)] = parts
    out = []
    for text, cond, cond_paths in parts:
        result = evaluate(cond, fact)
        if shown is None or result is shown:
            values = {p: value_shown(p, fact) for p in cond_paths}
            out.append({"text": text, "result": result, "values": values})
    return out
