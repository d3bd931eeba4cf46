"""One policy file's YAML tree → a validated `Policy`: its keys, conditions, amounts, routes,
follow-ups and words checked against the event it listens to and the budgets defined, every
problem a positioned `Diagnostic`. Its own module because it changes with the policy language,
not with how files are found or the set is built (`engine.load`). `PolicyReader` is one class
reading a policy from its top keys down to each rule's `then`; it stays whole.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from engine.amounts import Amount
from engine.errors import Span, did_you_mean, relpath
from engine.expr import Cond, Leaf, leaves
from engine.expr_parse import ExprError, parse_amount, parse_condition
from engine.facts import Field, event_fields, vocabulary
from engine.policy import Budget, ChargeSpec, GrantSpec, Policy, RouteSpec, Rule, digest
from engine.policy_schema import MAX_CONDITIONS, POLICY_KEYS, REMEDIES, RULE_KEYS, THEN_KEYS
from engine.yaml_file import File, plain
from events.models import CATALOG

_ID = re.compile(r"[a-z][a-z0-9-]{1,63}")  # fullmatch: `$` also matches before a final newline
# The decision contract's limits (events.models: Id 128, Text 4000 characters) for what a
# policy puts into decisions: rule names, route targets and budget names, words.
NAME_LIMIT = 128
TEXT_LIMIT = 4000
_DURATION = re.compile(r"^(\d+)([mhd])$")
_MAX_FOLLOW_UP_MINUTES = 3650 * 24 * 60
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")
_BRACED = re.compile(r"\{([^{}]*)\}|[{}]")  # a braced part, or a brace on its own
# Any field of some policy: an overflow's words, read before the policies that charge it.
ANY_FIELD: dict[str, Field] = {
    path: known for on in CATALOG for path, known in vocabulary(on, True).items()
}


def parse_duration(text: str) -> timedelta | None:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        return None
    n, unit = int(m.group(1)), m.group(2)
    minutes = n * {"m": 1, "h": 60, "d": 24 * 60}[unit]
    # at most ten years: past that timedelta overflows (a traceback in goodwill check), or
    # the due time passes year 9999 and every event the rule fires on fails to be decided
    return timedelta(minutes=minutes) if minutes <= _MAX_FOLLOW_UP_MINUTES else None


class PolicyReader:
    def __init__(self, f: File, budgets: dict[str, Budget], budgets_file: Path) -> None:
        self.f = f
        self.budgets = budgets
        where = relpath(budgets_file)
        self.define_budget = (
            f"define it in {where}"
            if budgets_file.exists()
            else f"{where} does not exist: budgets are defined there"
        )

    def read(self, doc: Any) -> Policy | None:
        f = self.f
        if not f.keys(doc, POLICY_KEYS, "a policy", ("policy", "version", "on", "rules"), True):
            return None
        pid = f.text_value(doc, "policy")
        if pid is not None and not _ID.fullmatch(pid):
            f.error(
                f.value_span(doc, "policy"),
                f"policy id '{pid}' is not a valid id",
                "use lower-case letters, digits and dashes, e.g. replace-broken-part",
            )
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            f.error(f.value_span(doc, "version"), "version must be a whole number >= 1")
        on = f.text_value(doc, "on")
        if on is not None and on not in CATALOG:
            f.error(
                f.value_span(doc, "on"),
                f"unknown event type '{on}'",
                did_you_mean(on, CATALOG) or "see `goodwill schema` for the event types",
            )
            on = None
        for key in ("owner", "principle", "summary"):
            if f.missing(doc, key):
                line, col = doc.lc.line, doc.lc.col
                f.error(
                    Span(line + 1, col + 1, col + 2), f"a policy needs '{key}'", POLICY_KEYS[key]
                )
            f.text_value(doc, key)
        budget = f.text_value(doc, "budget")
        if budget is not None and budget not in self.budgets:
            f.error(
                f.value_span(doc, "budget"),
                f"undefined budget '{budget}'",
                did_you_mean(budget, self.budgets) or self.define_budget,
            )
            budget = None
        rules_node = doc.get("rules")
        if not isinstance(rules_node, CommentedSeq) or not rules_node:
            f.error(f.key_span(doc, "rules"), "rules must be a non-empty list of rules")
            return None
        if on is None or pid is None:
            return None
        vocab = vocabulary(on, budget is not None)
        rules: list[Rule] = []
        names: set[str] = set()
        for i, node in enumerate(rules_node):
            rule = self.rule(node, i, on, vocab, budget, names)
            if rule is not None:
                rules.append(rule)
        distinct = {
            (leaf.op, leaf.path, leaf.value, leaf.other) for r in rules for leaf in leaves(r.when)
        }
        if len(distinct) > MAX_CONDITIONS:
            f.error(
                f.key_span(doc, "rules"),
                f"policy has {len(distinct)} distinct conditions; the matcher allows "
                f"{MAX_CONDITIONS}",
                "split it into several policies on the same event",
            )
        if len(rules) != len(rules_node) or not isinstance(version, int) or f.problems:
            return None
        content = plain(doc)
        policy = Policy(
            id=pid,
            version=version,
            owner=str(doc["owner"]),
            principle=str(doc["principle"]),
            summary=str(doc["summary"]),
            on=on,
            budget=budget,
            rules=tuple(rules),
            path=f.path,
            hash=digest(content),
        )
        if budget is None and policy.staged:
            # Like a budget's (see `rule`): with --budget-stage kafka the budget stage
            # applies it after the customer's state, which keeps follow-ups, moved on.
            for node in rules_node:
                if "obligations" in node["then"]:
                    f.error(
                        f.key_span(node["then"], "obligations"),
                        "a policy that counts defect reports or raises alerts cannot add"
                        " follow-ups",
                        f"put the obligations in another policy on {on}; every policy on"
                        " the event applies",
                    )
            if f.problems:
                return None
        return policy

    def rule(
        self,
        node: Any,
        index: int,
        on: str,
        vocab: dict[str, Field],
        budget: str | None,
        names: set[str],
    ) -> Rule | None:
        f = self.f
        if not f.keys(node, RULE_KEYS, "a rule", ("name", "then")):
            return None
        name = f.text_value(node, "name", limit=NAME_LIMIT) or f"rule-{index + 1}"
        if name in names:
            f.error(
                f.value_span(node, "name"),
                f"duplicate rule name '{name}' in this policy",
                "each rule of a policy has its own name: decisions and specs cite it",
            )
        names.add(name)
        when_text = node.get("when")
        cond: Cond | None = Leaf("==", "event.type", on, None, "always")
        if "when" in node and when_text is None:
            # `when:` with nothing after it would read as a rule that always applies
            f.error(
                f.key_span(node, "when"),
                "'when' is empty",
                "write the condition, or leave `when` out for a rule that always applies",
            )
            cond = None
        elif when_text is not None:
            cond = self.condition(node, "when", on, vocab)
            when_text = str(when_text).strip()
        then = node.get("then")
        if not f.keys(then, THEN_KEYS, f"rule '{name}' then", ()):
            return None
        grants = tuple(self.grants(then, on, vocab))
        charges = tuple(self.charges(then, on, vocab, budget))
        follow = tuple(self.follow_ups(then, on))
        route = self.route(then, "route", on, vocab)
        alert = self.route(then, "alert", on, vocab)
        if alert is not None and "sku" not in CATALOG[on][0].model_fields:
            # an alert is a root-cause alert about the reported SKU (`sku.id`), which only
            # an event naming one has: elsewhere it would never be raised
            f.error(
                f.key_span(then, "alert"),
                f"an alert is about a SKU, and {on} names none",
                "raise alerts from a policy on item.defect_reported; to tell someone now,"
                " use `route`",
            )
        say = f.text_value(then, "say", limit=TEXT_LIMIT)
        if say is not None:
            placeholders(f, then, "say", vocab)
        if budget is not None:
            # With --budget-stage kafka another instance finishes such a decision, after
            # this customer's state has moved on: follow-ups and alerts, which that state
            # keeps, come from policies without a budget.
            for key, what in (("obligations", "add follow-ups"), ("alert", "raise alerts")):
                if key in then:
                    f.error(
                        f.key_span(then, key),
                        f"a policy with a budget cannot {what}",
                        f"put the {key} in a policy without a budget on {on}; every"
                        " policy on the event applies",
                    )
        line = node.lc.line + 1
        # judged on the keys written, so a typo inside one is not also called a dead end
        acts = {"authorize", "route", "alert", "obligations"} & set(then)
        for key in sorted(acts):
            if then[key] is None or then[key] == []:
                # nothing would be given, routed or followed up, yet the words are said
                f.error(
                    f.key_span(then, key),
                    f"'{key}' is empty",
                    f"fill it in or remove it: {THEN_KEYS[key]}",
                )
        if not acts:
            f.error(
                Span(line, node.lc.col + 1, node.lc.col + 2),
                f"rule '{name}' is a dead end: it neither authorizes anything nor routes "
                "to someone",
                "add `authorize`, `route` (with `say`) or an obligation",
            )
        if acts & {"authorize", "route"} and say is None:
            f.error(
                Span(line, node.lc.col + 1, node.lc.col + 2),
                f"rule '{name}' gives the rep no words to say",
                "add `say: ...`",
            )
        if cond is None:
            return None
        return Rule(
            name,
            index,
            cond,
            when_text or "always",
            line,
            grants,
            charges,
            follow,
            route,
            alert,
            say,
        )

    def condition(
        self, node: CommentedMap, key: str, on: str, vocab: dict[str, Field]
    ) -> Cond | None:
        try:
            return parse_condition(str(node[key]), vocab, on, self.f.value_span(node, key))
        except ExprError as err:
            self.f.error(err.span, err.message, err.hint)
            return None

    def amount(self, node: Any, key: Any, on: str, vocab: dict[str, Field]) -> Amount | None:
        value = node[key]
        if isinstance(value, float) and not math.isfinite(value):  # YAML reads 1e999 as .inf
            self.f.error(self.f.value_span(node, key), "an amount must be a finite number")
            return None
        try:
            return parse_amount(str(value), vocab, on, self.f.value_span(node, key))
        except ExprError as err:
            self.f.error(err.span, err.message, err.hint)
            return None

    def grants(self, then: CommentedMap, on: str, vocab: dict[str, Field]) -> list[GrantSpec]:
        if "authorize" not in then:
            return []
        items = then["authorize"]
        out: list[GrantSpec] = []
        if not isinstance(items, CommentedSeq):
            self.f.error(
                self.f.key_span(then, "authorize"),
                "authorize must be a list",
                "e.g. authorize: [{remedy: replacement, up_to: order.amount}]",
            )
            return out
        for item in items:
            if not self.f.keys(item, {"remedy": "", "up_to": ""}, "a grant", ("remedy", "up_to")):
                continue
            remedy = self.f.text_value(item, "remedy")
            if remedy is not None and remedy not in REMEDIES:
                self.f.error(
                    self.f.value_span(item, "remedy"),
                    f"unknown remedy '{remedy}'",
                    did_you_mean(remedy, REMEDIES) or "one of " + ", ".join(REMEDIES),
                )
                continue
            up_to = self.amount(item, "up_to", on, vocab)
            if remedy is not None and up_to is not None:
                out.append(GrantSpec(remedy, up_to, str(item["up_to"])))
        return out

    def charges(
        self, then: CommentedMap, on: str, vocab: dict[str, Field], budget: str | None
    ) -> list[ChargeSpec]:
        node = then.get("charge")
        if node is None:
            return []
        if not self.f.keys(node, {"budget": "", "amount": ""}, "a charge", ("budget", "amount")):
            return []
        name = self.f.text_value(node, "budget")
        if name is not None and name not in self.budgets:
            self.f.error(
                self.f.value_span(node, "budget"),
                f"undefined budget '{name}'",
                did_you_mean(name, self.budgets) or self.define_budget,
            )
            return []
        if name is not None and name != budget:
            # The engine reads a budget's ledger (what is allocated and already spent) only
            # for the budget a policy declares; a charge to another could not be held to it.
            self.f.error(
                self.f.value_span(node, "budget"),
                f"this policy charges the {name} budget but "
                + ("declares none" if budget is None else f"declares the {budget} budget"),
                f"declare `budget: {name}` on the policy (one budget per policy)"
                if budget is None
                else f"charge {budget}, or move this rule to a policy with `budget: {name}`",
            )
            return []
        if name is not None:
            for path in _PLACEHOLDER.findall(self.budgets[name].say):
                if path in ANY_FIELD and path not in vocab:
                    self.f.error(
                        self.f.value_span(node, "budget"),
                        f"the {name} budget's overflow words use {{{path}}}, which a policy"
                        f" on {on} cannot read",
                        "use a field every policy charging it has, e.g. {customer.tier}",
                    )
        amount = self.amount(node, "amount", on, vocab)
        if name is None or amount is None:
            return []
        return [ChargeSpec(name, amount, str(node["amount"]))]

    def follow_ups(self, then: CommentedMap, on: str) -> list[timedelta]:
        items = then.get("obligations") or []
        out: list[timedelta] = []
        if items and "event.case_id" not in event_fields(on):
            self.f.error(
                self.f.key_span(then, "obligations"),
                f"a follow-up needs a case, and {on} events carry no case_id",
                "put the follow-up on a policy for contact.opened or remedy.requested",
            )
            return out
        for item in items if isinstance(items, CommentedSeq) else []:
            if not self.f.keys(item, {"follow_up": ""}, "an obligation", ("follow_up",)):
                continue
            within = parse_duration(str(item["follow_up"]))
            if within is None:
                self.f.error(
                    self.f.value_span(item, "follow_up"),
                    "follow_up needs a duration",
                    "e.g. 48h, 2d or 30m; at most 3650d",
                )
            else:
                out.append(within)
        return out

    def route(
        self, then: CommentedMap, key: str, on: str, vocab: dict[str, Field]
    ) -> RouteSpec | None:
        node = then.get(key)
        if node is None:
            return None
        if not self.f.keys(node, {"to": "", "reason": "", "context": ""}, key, ("to",)):
            return None
        to = self.f.text_value(node, "to", limit=NAME_LIMIT) or ""
        to_path = None
        if "." in to:
            target = vocab.get(to)
            if target is None or target.type != "text":
                self.f.error(
                    self.f.value_span(node, "to"),
                    f"'{to}' is not a text field",
                    did_you_mean(to, vocab),
                )
                return None
            to_path = to
        context = node.get("context")
        if context is not None and not isinstance(context, CommentedSeq):
            self.f.error(
                self.f.value_span(node, "context"),
                "context must be a list of fields",
                "e.g. context: [customer.tier, order.amount]",
            )
            return None
        items: CommentedSeq = context if context is not None else CommentedSeq()
        for i, path in enumerate(items):
            if not isinstance(path, str):
                self.f.error(self.f.value_span(items, i), "a context item is one field name")
            elif path not in vocab:
                self.f.error(
                    self.f.value_span(items, i),
                    f"unknown field '{path}' on {on}",
                    did_you_mean(str(path), vocab),
                )
        reason = self.f.text_value(node, "reason", limit=TEXT_LIMIT) or f"policy asks for {to}"
        return RouteSpec(to, to_path, reason, tuple(str(p) for p in items))


def placeholders(f: File, node: CommentedMap, key: str, vocab: dict[str, Field]) -> None:
    """Every `{...}` in the words must be a field the policy may read: anything else
    would reach the customer as it is written."""
    text = str(node[key])
    whole = f.value_span(node, key)
    for m in _BRACED.finditer(text):
        inner = (m.group(1) or "").strip()
        span = whole
        if "\n" not in text:  # one line: point at the placeholder itself
            start = whole.col + m.start()
            span = Span(whole.line, start, start + len(m.group(0)))
        if _PLACEHOLDER.fullmatch(m.group(0)) is None:
            f.error(
                span,
                f"'{m.group(0)}' in say is not a placeholder",
                "a placeholder is one field in braces, e.g. {order.amount}; an amount to"
                " compute belongs in `authorize`, and braces cannot be written as text",
            )
        elif inner not in vocab:
            f.error(span, f"unknown field '{{{inner}}}' in say", did_you_mean(inner, vocab))
