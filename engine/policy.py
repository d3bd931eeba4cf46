"""Policy files: YAML with positions → validated, typed, content-hashed `PolicySet`.

Nothing downstream of `load_policy_set` ever sees an unvalidated policy: every problem
is collected as a positioned `Diagnostic` and the whole set is refused together.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.reader import ReaderError

from engine.errors import Diagnostic, PolicyError, Span, closest, did_you_mean, relpath
from engine.expr import Amount, Cond, ExprError, Leaf, leaves, parse_amount, parse_condition
from engine.facts import Field, event_fields, fact_key, to_minor, vocabulary
from engine.policy_schema import (
    BUDGET_KEYS,
    BUDGETS_FILE_KEYS,
    MAX_CONDITIONS,
    POLICY_KEYS,
    REMEDIES,
    RULE_KEYS,
    THEN_KEYS,
)
from events.models import CATALOG, MONEY_LIMIT

BUDGETS_FILE = "budgets.yaml"
_MAX_FILE_BYTES = 1 << 20
SHARED_FACT = "sku.reports_7d"  # besides budget.*, the fact other customers' events change
_ID = re.compile(r"[a-z][a-z0-9-]{1,63}")  # fullmatch: `$` also matches before a final newline
# The decision contract's limits (events.models: Id 128, Text 4000 characters) for what a
# policy puts into decisions: rule names, route targets and budget names, words.
_NAME_LIMIT = 128
_TEXT_LIMIT = 4000
_DURATION = re.compile(r"^(\d+)([mhd])$")
_MAX_FOLLOW_UP_MINUTES = 3650 * 24 * 60
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")
_BRACED = re.compile(r"\{([^{}]*)\}|[{}]")  # a braced part, or a brace on its own
_CURRENCY = re.compile(r"[A-Z]{3}")
_MONEY_CENTS = MONEY_LIMIT.scaleb(2)  # money is below MONEY_LIMIT units
# Any field of some policy: an overflow's words, read before the policies that charge it.
_ANY_FIELD: dict[str, Field] = {
    path: known for on in CATALOG for path, known in vocabulary(on, True).items()
}


@dataclass(frozen=True)
class GrantSpec:
    remedy: str
    up_to: Amount
    text: str


@dataclass(frozen=True)
class ChargeSpec:
    budget: str
    amount: Amount
    text: str


@dataclass(frozen=True)
class RouteSpec:
    to: str
    to_path: str | None  # a text field naming the target, e.g. event.to_team
    reason: str
    context: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    name: str
    index: int
    when: Cond
    when_text: str
    line: int
    grants: tuple[GrantSpec, ...] = ()
    charges: tuple[ChargeSpec, ...] = ()
    follow_ups: tuple[timedelta, ...] = ()
    route: RouteSpec | None = None
    alert: RouteSpec | None = None
    say: str | None = None


@dataclass(frozen=True)
class Policy:
    id: str
    version: int
    owner: str
    principle: str
    summary: str
    on: str
    budget: str | None
    rules: tuple[Rule, ...]
    path: str
    hash: str

    @cached_property  # a frozen dataclass keeps it in __dict__; asked once per event
    def staged(self) -> bool:
        """Whether it reads state that spans customers: a budget's ledger, or the defect
        reports of a SKU (`sku.reports_7d`, in a condition, words or context; an alert
        counts them too). With --budget-stage kafka the budget stage, which sees all of
        it, applies such a policy."""
        if self.budget is not None:
            return True
        for rule in self.rules:
            shown = [p for spec in (rule.route, rule.alert) if spec for p in spec.context]
            if rule.alert is not None or SHARED_FACT in shown:
                return True
            if rule.say and "{" + SHARED_FACT + "}" in rule.say:
                return True
        return SHARED_FACT in self.reads

    @cached_property
    def reads(self) -> tuple[str, ...]:
        """Fact paths any rule of this policy may read, sorted (for lean facts)."""
        found: set[str] = set()
        for rule in self.rules:
            for leaf in leaves(rule.when):
                found.add(leaf.path)
                if leaf.other:
                    found.add(leaf.other)
        return tuple(sorted(found))


@dataclass(frozen=True)
class Budget:
    name: str
    scope: Literal["rep", "team"]
    period: Literal["day", "week", "month"]
    amount: int  # cents allocated per period unless a budget.allocated event says otherwise
    overflow: RouteSpec
    say: str


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]  # sorted by id: evaluation order is never dict order
    budgets: dict[str, Budget]
    currency: str
    hash: str
    files: tuple[tuple[str, str, int, str], ...]  # (path, policy id, version, hash)

    def on(self, event_type: str) -> tuple[Policy, ...]:
        return self._by_type.get(event_type, ())

    def allocated(self, budget: str, stored: int | None) -> int:
        """Cents allocated to a budget's period: the `budget.allocated` on record, else the
        budget's own amount (0 for a budget this set does not define)."""
        if stored is not None:
            return stored
        known = self.budgets.get(budget)
        return known.amount if known is not None else 0

    @property
    def _by_type(self) -> dict[str, tuple[Policy, ...]]:
        cached: dict[str, tuple[Policy, ...]] | None = self.__dict__.get("_by_type_cache")
        if cached is None:
            grouped: dict[str, list[Policy]] = {}
            for p in self.policies:
                grouped.setdefault(p.on, []).append(p)
            cached = {k: tuple(v) for k, v in grouped.items()}
            object.__setattr__(self, "_by_type_cache", cached)
        return cached


def digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class _File:
    """One YAML file being read: its text, its tree and the problems found so far."""

    path: str
    text: str
    problems: list[Diagnostic] = field(default_factory=list)
    # Per mapping (by id), the known keys its unknown ones were taken for: a misspelt
    # required key is one problem, not also a missing one.
    meant: dict[int, set[str]] = field(default_factory=dict)

    def missing(self, node: CommentedMap, key: str) -> bool:
        """Whether `key` is absent from `node` and no misspelling of it is there instead."""
        return key not in node and key not in self.meant.get(id(node), ())

    def error(self, span: Span | None, message: str, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(self.path, span, message, hint))

    def key_span(self, node: CommentedMap, key: str) -> Span:
        line, col = node.lc.key(key)
        return Span(line + 1, col + 1, col + 1 + len(str(key)))

    def value_span(self, node: CommentedMap | CommentedSeq, key: Any) -> Span:
        line, col = node.lc.item(key) if isinstance(node, CommentedSeq) else node.lc.value(key)
        value = node[key]
        text = self.text.splitlines()[line] if line < len(self.text.splitlines()) else ""
        width = len(str(value)) if not isinstance(value, dict | list) else 1
        if text[col : col + 1] in ("'", '"'):
            col += 1
        elif text[col : col + 1] in ("|", ">"):
            # block scalar: the text starts on the next line, at that line's indentation
            rows = self.text.splitlines()
            nxt = rows[line + 1] if line + 1 < len(rows) else ""
            return Span(line + 2, len(nxt) - len(nxt.lstrip()) + 1, len(nxt) + 1)
        return Span(line + 1, col + 1, col + 1 + min(width, max(1, len(text) - col)))

    def keys(
        self,
        node: Any,
        allowed: dict[str, str],
        where: str,
        required: tuple[str, ...],
        top: bool = False,
    ) -> bool:
        """Whether `node` is a mapping with the `required` keys; every unknown key is a
        problem. `top`: the node is the whole file (a problem then points at its start)."""
        if not isinstance(node, CommentedMap):
            hint = "the file starts with its keys: " + ", ".join(required) if top else None
            self.error(Span(1, 1, 2) if top else None, f"{where} must be a mapping", hint)
            return False
        for key in node:
            if key not in allowed:
                close = closest(str(key), allowed)
                if close is not None:
                    self.meant.setdefault(id(node), set()).add(close)
                hint = f"did you mean '{close}'?" if close else None
                self.error(
                    self.key_span(node, key),
                    f"unknown key '{key}' in {where}",
                    hint or "allowed: " + ", ".join(sorted(allowed)),
                )
        ok = True
        for key in required:
            if key not in node:
                ok = False
            if self.missing(node, key):
                line, col = node.lc.line, node.lc.col
                self.error(
                    Span(line + 1, col + 1, col + 2), f"{where} needs '{key}'", allowed.get(key)
                )
        return ok

    def text_value(
        self, node: CommentedMap, key: str, required: bool = True, limit: int | None = None
    ) -> str | None:
        """The text at `key`; `limit`: the most characters the decision contract takes for
        it (decisions are serialized unvalidated, so the policy is held to it here)."""
        value = node.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.error(self.value_span(node, key), f"'{key}' must be text")
            return None
        if limit is not None and len(value) > limit:
            self.error(
                self.value_span(node, key),
                f"'{key}' is {len(value):,} characters; decisions carry at most {limit:,}",
                "shorten it",
            )
            return None
        return value


def _after(prefix: str) -> Span:
    """The character that follows `prefix`, the text of a file up to it."""
    line = prefix.count("\n") + 1
    col = len(prefix) - (prefix.rfind("\n") + 1) + 1
    return Span(line, col, col + 1)


def _read_yaml(path: Path) -> tuple[_File, Any]:
    if not path.is_file() or path.stat().st_size > _MAX_FILE_BYTES:
        f = _File(relpath(path), "")
        what = "not a regular file" if not path.is_file() else "larger than 1 MB"
        f.error(None, f"{what}: a policy file is a small text file", "replace it with one")
        return f, None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        f = _File(relpath(path), raw.decode("utf-8", "replace"))
        f.error(
            _after(raw[: err.start].decode("utf-8")), "not UTF-8 text", "save the file as UTF-8"
        )
        return f, None
    f = _File(relpath(path), text)
    try:
        for event in YAML(typ="rt").parse(text):
            if isinstance(event, AliasEvent):  # also what a `<<:` merge key copies from
                m = event.start_mark
                f.error(
                    Span(m.line + 1, m.column + 1, m.column + 2 + len(event.anchor or "")),
                    f"an alias (*{event.anchor}) copies another part of the file",
                    "write it out where it applies: each rule reads whole where it stands",
                )
                return f, None
        return f, YAML(typ="rt").load(text)
    except RecursionError:  # `[[[[...` a few hundred deep: the YAML reader recurses per level
        f.error(None, "not valid YAML: nested too deeply", "write it flatter")
        return f, None
    except ReaderError as err:  # a NUL or another control character
        f.error(
            _after(text[: err.position]), f"not valid YAML: {err.reason}", "remove the character"
        )
        return f, None
    except MarkedYAMLError as err:
        mark = err.problem_mark
        span = Span(mark.line + 1, mark.column + 1, mark.column + 2) if mark else None
        if isinstance(err, DuplicateKeyError):
            hint = "a key appears once per mapping: remove or rename one of them"
        elif err.context and err.context_mark is not None:  # e.g. an unclosed [ or {
            where = err.context_mark
            hint = f"{err.context}, which started at {where.line + 1}:{where.column + 1}"
        else:
            hint = "check indentation and quoting"
        f.error(span, f"not valid YAML: {err.problem}", hint)
        return f, None


def _plain(node: Any) -> Any:
    """ruamel's commented tree → plain data, for hashing."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def parse_duration(text: str) -> timedelta | None:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        return None
    n, unit = int(m.group(1)), m.group(2)
    minutes = n * {"m": 1, "h": 60, "d": 24 * 60}[unit]
    # at most ten years: past that timedelta overflows (a traceback in goodwill check), or
    # the due time passes year 9999 and every event the rule fires on fails to be decided
    return timedelta(minutes=minutes) if minutes <= _MAX_FOLLOW_UP_MINUTES else None


class _PolicyReader:
    def __init__(self, f: _File, budgets: dict[str, Budget], budgets_file: Path) -> None:
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
        content = _plain(doc)
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
        name = f.text_value(node, "name", limit=_NAME_LIMIT) or f"rule-{index + 1}"
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
        say = f.text_value(then, "say", limit=_TEXT_LIMIT)
        if say is not None:
            _placeholders(f, then, "say", vocab)
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
                if path in _ANY_FIELD and path not in vocab:
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
        to = self.f.text_value(node, "to", limit=_NAME_LIMIT) or ""
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
        reason = self.f.text_value(node, "reason", limit=_TEXT_LIMIT) or f"policy asks for {to}"
        return RouteSpec(to, to_path, reason, tuple(str(p) for p in items))


def _placeholders(f: _File, node: CommentedMap, key: str, vocab: dict[str, Field]) -> None:
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


def _read_budgets(path: Path) -> tuple[_File, dict[str, Budget], str]:
    f, doc = _read_yaml(path)
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
        for key, limit in (("name", _NAME_LIMIT), ("say", _TEXT_LIMIT), ("to", _NAME_LIMIT)):
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
            # against each such policy's fields where it charges (`_PolicyReader.charges`)
            _placeholders(f, overflow, "say", _ANY_FIELD)
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


def load_policy_set(directory: Path) -> PolicySet:
    """Read and validate every policy file in `directory`; refuse the set on any problem."""
    if not directory.is_dir():
        found = directory.exists()
        problem = "is not a directory" if found else "no such policy directory"
        hint = (
            f"give the directory that holds the policy files: {relpath(directory.parent)}"
            if found
            else "run where policies/ is, or give its path (`goodwill check DIR`, --policies DIR)"
        )
        raise PolicyError([Diagnostic(relpath(directory), None, problem, hint)], {})
    files: list[_File] = []
    budgets: dict[str, Budget] = {}
    currency = "USD"
    if (directory / BUDGETS_FILE).exists():
        bf, budgets, currency = _read_budgets(directory / BUDGETS_FILE)
        files.append(bf)
    policies: list[Policy] = []
    seen: dict[str, str] = {}
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".yaml", ".yml"))
    nested = sorted(
        p
        for p in directory.glob("*/**/*")
        if p.suffix.lower() in (".yaml", ".yml")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )
    for path in nested:  # a policy filed in a subdirectory would silently never apply
        misplaced = Diagnostic(
            relpath(path),
            None,
            "a policy file in a subdirectory is not read",
            f"policy files sit directly in {relpath(directory)}: move it there",
        )
        files.append(_File(relpath(path), "", [misplaced]))
    for path in paths:
        if path.name == BUDGETS_FILE:
            continue
        f, doc = _read_yaml(path)
        files.append(f)
        if doc is None:
            if not f.problems:  # nothing but blanks and comments: a slip, not a policy
                f.error(Span(1, 1, 2), "empty policy file", "delete the file to drop a policy")
            continue
        policy = _PolicyReader(f, budgets, directory / BUDGETS_FILE).read(doc)
        if policy is None:
            continue
        if policy.id in seen:
            f.error(
                f.value_span(doc, "policy"),
                f"duplicate policy id '{policy.id}'",
                f"also defined in {seen[policy.id]}",
            )
            continue
        seen[policy.id] = policy.path
        policies.append(policy)
    problems = [d for f in files for d in f.problems]
    if problems:
        raise PolicyError(problems, {f.path: f.text for f in files})
    if not policies:
        raise PolicyError(
            [
                Diagnostic(
                    relpath(directory),
                    None,
                    "no policy files found",
                    "policy files are *.yaml next to budgets.yaml",
                )
            ],
            {},
        )
    policies.sort(key=lambda p: p.id)
    budget_hash = digest(
        {b.name: [b.scope, b.period, b.amount, b.overflow.to, b.say] for b in budgets.values()}
    )
    set_hash = digest([[p.id, p.version, p.hash] for p in policies] + [budget_hash, currency])
    return PolicySet(
        tuple(policies),
        budgets,
        currency,
        set_hash,
        tuple((p.path, p.id, p.version, p.hash) for p in policies),
    )


def fact_keys(policy: Policy) -> tuple[str, ...]:
    return tuple(fact_key(p) for p in policy.reads)
