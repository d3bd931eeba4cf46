"""Living specs: the step vocabulary of `features/`, and the gate that proves they cover the
policies (`goodwill check --specs`).

The vocabulary is data: each `Phrase` is a pytest-bdd `cfparse` pattern with an example and
what it means. The step definitions in `tests/bdd` are bound to these patterns by key, so the
documented vocabulary (`goodwill steps`, `features/STEPS.md`) and the executable one agree by
construction.

Which rule decided what is never read from step text: while the feature suite runs, every
decision's `policies` (id and rule) is recorded per scenario; the gate and `coverage` read
those records. A rule is covered when, in its policy's own feature, a scenario's When step
is decided by it, and another scenario's When step on the policy's event is decided without
it. pytest and pytest-bdd are imported only when the gate runs (they come with `.[test]`).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

from engine.errors import did_you_mean, relpath
from engine.policy import Policy, PolicySet

Kind = Literal["given", "when", "then", "step"]
"""`step` phrases are events, usable as Given (history) and as When (the event under test)."""

REPO: Final = Path(__file__).resolve().parents[1]
SUITE: Final = REPO / "tests" / "bdd" / "test_features.py"
RECORDS_ENV: Final = "GOODWILL_SPEC_RECORDS"
FEATURES_ENV: Final = "GOODWILL_FEATURES"
POLICIES_ENV: Final = "GOODWILL_POLICIES"
POLICY_TAG: Final = "policy:"


class ValueType:
    """A placeholder type in a pattern: a regex and a converter (parse's `extra_types`)."""

    regex_group_count = 0

    def __init__(self, name: str, pattern: str, convert: Callable[[str], Any], doc: str):
        self.name = name
        self.pattern = pattern
        self.convert = convert
        self.doc = doc

    def __call__(self, text: str) -> Any:
        return self.convert(text)


def money(text: str) -> Decimal:
    """`$2,400` or `$180.50` → Decimal, exactly."""
    return Decimal(text.removeprefix("$").replace(",", ""))


_UNITS: Final = {
    "day": timedelta(days=1),
    "hour": timedelta(hours=1),
    "minute": timedelta(minutes=1),
    "second": timedelta(seconds=1),
}
_PART: Final = r"\d+ (?:day|hour|minute|second)s?"
_DURATION: Final = rf"{_PART}(?:(?:, | and ){_PART})*"


def duration(text: str) -> timedelta:
    """`7 days and 1 second`, `6 days, 23 hours and 59 minutes` → timedelta."""
    parts = re.findall(r"(\d+) (day|hour|minute|second)", text)
    return sum((int(n) * _UNITS[unit] for n, unit in parts), timedelta())


def _ago(text: str) -> timedelta:
    return timedelta() if text == "today" else duration(text.removesuffix(" ago"))


def _count(text: str) -> int:
    return 0 if text.startswith("no ") else int(text.split()[0])


def value(text: str) -> str | Decimal | int | bool:
    """A handover value: `"text"`, `$180.00`, `3`, `true` or `false`."""
    if text.startswith('"'):
        return text[1:-1]
    if text.startswith("$"):
        return money(text)
    if text in ("true", "false"):
        return text == "true"
    return int(text)


GRANT_WORDS: Final = {
    "send a free replacement worth": "replacement",
    "give a credit of": "credit",
    "refund": "refund",
    "upgrade shipping for": "expedite",
}
REMEDY_WORDS: Final = {words.removesuffix(" worth").removesuffix(" of").removesuffix(" for"): remedy
                        for words, remedy in GRANT_WORDS.items()}  # fmt: skip
_MONEY: Final = r"\$(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{2})?"
_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = ("January", "February", "March", "April", "May", "June", "July", "August",
                  "September", "October", "November", "December")  # fmt: skip


def _one_of(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _same(text: str) -> str:
    return text


TYPES: Final[dict[str, ValueType]] = {
    t.name: t
    for t in (
        ValueType("Money", _MONEY, money, "dollars, cents optional: `$2,400`, `$180.50`, `$0.01`"),
        ValueType("Duration", _DURATION, duration, "`3 days`, `48 hours`, `7 days and 1 second`"),
        ValueType("When", rf"today|{_DURATION} ago", _ago, "`today`, `366 days ago`"),
        ValueType("Name", r"[a-z][a-z0-9-]*", _same, "a lower-case id: `ana`, `expedite`"),
        ValueType("Text", r'[^"]+', _same, 'anything between the double quotes: `"A-1"`'),
        ValueType("Field", r"[a-z_]+(?:\.[a-z0-9_]+)*", _same, "a fact: `customer.tier`"),
        ValueType(
            "Value", rf'"[^"]*"|{_MONEY}|\d+|true|false', value, '`"gold"`, `$180.00`, `3`, `true`'
        ),
        ValueType("Grant", _one_of(GRANT_WORDS), GRANT_WORDS.__getitem__, ", ".join(GRANT_WORDS)),
        ValueType(
            "Remedy", _one_of(REMEDY_WORDS), REMEDY_WORDS.__getitem__, ", ".join(REMEDY_WORDS)
        ),
        ValueType(
            "Remedies",
            r"no remedies|1 remedy|\d+ remedies",
            _count,
            "`no remedies`, `1 remedy`, `3 remedies`",
        ),
        ValueType(
            "Reporters",
            r"1 customer has|\d+ customers have",
            _count,
            "`1 customer has`, `4 customers have`",
        ),
        ValueType("Holder", "rep|team", _same, "rep or team"),
        ValueType("Pronoun", "her|his|their|its", _same, "her, his, their or its"),
        ValueType("Period", "this month|this week|today", _same, "this month, this week, today"),
        ValueType("Level", "standard|expedited|overnight", _same, "standard, expedited, overnight"),
        ValueType("Outcome", "authorized|routed|noted", _same, "authorized, routed or noted"),
        ValueType("Pass", "passes|pass", _same, "pass or passes"),
        ValueType("Weekday", _one_of(_WEEKDAYS), _same, "Monday … Sunday"),
        ValueType("Month", _one_of(_MONTHS), lambda m: _MONTHS.index(m) + 1, "January … December"),
        ValueType("Clock", r"\d{2}:\d{2}", _same, "24-hour `09:00` (UTC)"),
    )
}


@dataclass(frozen=True)
class Phrase:
    """One step of the vocabulary: how it is written, an example, and what it does."""

    key: str
    kind: Kind
    pattern: str  # pytest-bdd cfparse pattern over TYPES
    example: str
    meaning: str

    @property
    def skeleton(self) -> str:
        """The pattern for people: `"{order:Text}"` → `"<order>"`, `{spent:Money}` → `<money>`."""

        def one(m: re.Match[str]) -> str:
            name, kind = m.group(1), m.group(2)
            return f"<{name if kind in _PLAIN else kind.lower()}>"

        return re.sub(r"\{(\w+):(\w+)\}", one, self.pattern)

    @property
    def keyword(self) -> str:
        return "Given/When" if self.kind == "step" else self.kind.capitalize()


_PLAIN: Final = ("Text", "Name", "d")  # shown by field name; other types by type name


def _p(key: str, kind: Kind, pattern: str, example: str, meaning: str) -> Phrase:
    return Phrase(key, kind, pattern, example, meaning)


VOCABULARY: Final[tuple[Phrase, ...]] = (
    # ---- the world before the event
    _p("now", "given", "it is {weekday:Weekday} {day:d} {month:Month} {year:d}, {time:Clock}",
       "it is Monday 2 November 2026, 09:00",
       "Sets the scenario's clock (UTC); later events happen at this time until time passes. "
       "The weekday must match the date."),
    _p("rep", "given", 'rep "{rep:Text}" works in team "{team:Text}", led by "{lead:Text}"',
       'rep "ana" works in team "north", led by "lee"',
       "Appends `rep.assigned`: the rep's team, and the lead who reviews and approves for it."),
    _p("customer", "given", 'a customer "{customer:Text}"', 'a customer "c-9"',
       "Names the customer the following steps are about; no history yet."),
    _p("customer-spent", "given",
       'a customer "{customer:Text}" who has spent {spent:Money} with us over {orders:d} orders',
       'a customer "c-7" who has spent $2,400 with us over 14 orders',
       "Appends that many `order.placed` events, one a day up to yesterday, adding up to the "
       "amount exactly: the customer's lifetime value and so their tier."),
    _p("order", "given", 'the customer placed order "{order:Text}" for {amount:Money} {when:When}',
       'the customer placed order "A-1" for $180 today',
       "Appends `order.placed` for one part (sku `PART-<order>`) at that time."),
    _p("budget-left", "given",
       '{holder:Holder} "{owner:Text}" has {left:Money} left in {pronoun:Pronoun} '
       "{budget:Name} budget {period:Period}",
       'rep "ana" has $120 left in her expedite budget this month',
       "Appends `budget.allocated` for the current period: what was approved so far plus the "
       "amount left. The budget's scope (rep or team) and period must match."),
    _p("remedies", "given", "the customer has received {count:Remedies} in the last 90 days",
       "the customer has received 3 remedies in the last 90 days",
       "Appends one `remedy.fulfilled` a day, the latest yesterday, each on its own past case."),
    _p("remedy-ago", "given", "the customer received a remedy {when:When}",
       "the customer received a remedy 90 days ago",
       "Appends one `remedy.fulfilled` at that time, on its own past case."),
    _p("shipped", "given",
       'order "{order:Text}" was shipped by {level:Level} delivery, promised in {span:Duration}',
       'order "A-1" was shipped by standard delivery, promised in 4 days',
       "Appends `order.shipped` with the delivery promised that long from now."),
    _p("reported", "given", '{count:Reporters} reported product "{sku:Text}" as broken',
       '4 customers have reported product "KETTLE-2" as broken',
       "For each of that many other customers, appends `order.placed` for the product and "
       "`item.defect_reported` for it, now."),
    # ---- events: history as Given, the event under test as When
    _p("time", "step", "{span:Duration} {verb:Pass}", "3 days pass",
       "Moves the clock on and appends `clock.tick`, so follow-ups that came due are reported."),
    _p("contact", "step", 'the customer contacts {rep:Name} about "{topic:Text}"',
       'the customer contacts ana about "question"',
       "Appends `contact.opened`: a new case with that rep and topic (chat)."),
    _p("contact-order", "step",
       'the customer contacts {rep:Name} about "{topic:Text}" on order "{order:Text}"',
       'the customer contacts ana about "wrong_item" on order "A-1"',
       "Appends `contact.opened` for a new case about that order."),
    _p("transfer", "step", '{rep:Name} transfers the case to the "{team:Text}" team',
       'ana transfers the case to the "billing" team',
       "Appends `contact.transferred` for the customer's open case."),
    _p("transfer-note", "step",
       '{rep:Name} transfers the case to the "{team:Text}" team, noting "{note:Text}"',
       'ana transfers the case to the "billing" team, noting "prefers a callback"',
       "Appends `contact.transferred` for the customer's open case, with the rep's note."),
    _p("resolve", "step", "the case is resolved", "the case is resolved",
       "Appends `case.resolved` for the customer's open case."),
    _p("report-part", "step", 'the customer reports the part from order "{order:Text}" as broken',
       'the customer reports the part from order "A-1" as broken',
       "Appends `item.defect_reported` for the order's part, on the customer's open case (and "
       "with its rep) if there is one, else as from the web form: no case, no rep."),
    _p("report-product", "step",
       'the customer reports product "{sku:Text}" from order "{order:Text}" as broken',
       'the customer reports product "KETTLE-2" from order "A-1" as broken',
       "Appends `item.defect_reported` for that product, like the step above."),
    _p("ask-expedite", "step",
       '{rep:Name} asks to upgrade shipping on order "{order:Text}" for {amount:Money}',
       'ana asks to upgrade shipping on order "A-1" for $40',
       "Appends `remedy.requested` (expedite) on the customer's open case, or a new case id."),
    _p("ask-credit", "step", "{rep:Name} asks to credit the customer {amount:Money}",
       "ana asks to credit the customer $30",
       "Appends `remedy.requested` (credit), about the open case's order if any."),
    _p("ask-refund", "step", '{rep:Name} asks to refund {amount:Money} for order "{order:Text}"',
       'ana asks to refund $60 for order "A-1"', "Appends `remedy.requested` (refund)."),
    _p("ask-replacement", "step",
       '{rep:Name} asks to send a replacement worth {amount:Money} for order "{order:Text}"',
       'ana asks to send a replacement worth $60 for order "A-1"',
       "Appends `remedy.requested` (replacement)."),
    _p("delayed", "step", 'the carrier says order "{order:Text}" will arrive {late:Duration} late',
       'the carrier says order "A-1" will arrive 3 days late',
       "Appends `shipment.delayed` with the new ETA that much after the promised delivery "
       "(after now if the scenario shipped it with no promise)."),
    _p("lost", "step", 'the carrier reports order "{order:Text}" as lost',
       'the carrier reports order "A-1" as lost', "Appends `shipment.lost`."),
    # ---- what the decision says
    _p("may", "then", "{who:Name} may {remedy:Grant} up to {amount:Money}",
       "ana may send a free replacement worth up to $180",
       "The decision grants that remedy up to exactly that amount, to that rep (`we`: a "
       "decision with no rep, such as a carrier event)."),
    _p("may-not", "then", "{who:Name} may not {remedy:Remedy}", "ana may not send a free "
       "replacement", "The decision grants no such remedy."),
    _p("nothing", "then", "nothing is authorized", "nothing is authorized",
       "The decision grants nothing."),
    _p("no-manager", "then", "no manager is involved", "no manager is involved",
       "The decision routes to no one."),
    _p("routed-lead", "then", 'it is routed to team lead "{person:Text}"',
       'it is routed to team lead "lee"', "The decision routes to the rep's team lead, by name."),
    _p("routed-to", "then", 'it is routed to "{to:Text}"', 'it is routed to "review-desk"',
       "The decision routes to that team or desk."),
    _p("reason", "then", 'the reason given is "{reason:Text}"',
       'the reason given is "several remedies in the last 90 days"',
       "The route the routing step before it named (else any route) carries exactly that"
       " reason."),
    _p("handover", "then", "the handover shows {field:Field} {value:Value}",
       "the handover shows customer.remedies_90d 3",
       "The context of the route the routing steps before it named (else of any route)"
       " shows that value (money as `$180.00`, text in quotes)."),
    _p("charged", "then",
       '{amount:Money} is charged to the {budget:Name} budget of "{owner:Text}", leaving '
       "{left:Money}",
       '$40 is charged to the expedite budget of "ana", leaving $80',
       "The decision charges that budget that amount, and that much remains."),
    _p("not-charged", "then", "nothing is charged to a budget", "nothing is charged to a budget",
       "The decision charges no budget."),
    _p("follow-up", "then", "a follow-up is due within {span:Duration}",
       "a follow-up is due within 48 hours",
       "The decision sets a follow-up due exactly that long after the event."),
    _p("no-follow-up", "then", "no follow-up is promised", "no follow-up is promised",
       "The decision sets no follow-up."),
    _p("say", "then", '{who:Name} can tell the customer "{words:Text}"',
       'ana can tell the customer "Which day suits you for delivery?"',
       "The words the decision suggests contain that text."),
    _p("outcome", "then", "the outcome is {outcome:Outcome}", "the outcome is routed",
       "The decision's outcome: routed if it routes, else authorized if it grants, else noted."),
    _p("by-policy", "then", 'the decision was made by policy "{policy:Text}"',
       'the decision was made by policy "replace-broken-part"',
       "That policy applied to the event (one of its rules matched)."),
    _p("by-rule", "then", 'the decision was made by rule "{rule:Text}" of policy "{policy:Text}"',
       'the decision was made by rule "trusted-by-default" of policy "replace-broken-part"',
       "That rule of that policy was the one that matched."),
    _p("not-apply", "then", 'policy "{policy:Text}" does not apply',
       'policy "root-cause-alert" does not apply', "No rule of that policy matched the event."),
    _p("overdue", "then", 'the overdue follow-up is escalated to team lead "{lead:Text}"',
       'the overdue follow-up is escalated to team lead "lee"',
       "While the When steps ran, a follow-up came due and was escalated to that lead."),
    _p("no-overdue", "then", "no follow-up is overdue", "no follow-up is overdue",
       "While the When steps ran, no follow-up came due."),
    _p("alerted", "then",
       '"{team:Text}" is alerted that "{sku:Text}" had {count:d} defect reports in 7 days',
       '"product-team" is alerted that "KETTLE-2" had 5 defect reports in 7 days',
       "While the When steps ran, a root-cause alert went to that team."),
    _p("no-alert", "then", "no one is alerted", "no one is alerted",
       "While the When steps ran, no root-cause alert was raised."),
)  # fmt: skip

PHRASES: Final[dict[str, Phrase]] = {p.key: p for p in VOCABULARY}


def closest(text: str, kind: str, n: int = 3) -> list[Phrase]:
    """The phrases most like `text` (a step as written, without its keyword)."""

    def score(p: Phrase) -> float:
        alike = max(
            difflib.SequenceMatcher(None, text, p.example).ratio(),
            difflib.SequenceMatcher(None, text, p.skeleton).ratio(),
        )
        return alike + (0.1 if p.kind in (kind, "step") else 0.0)

    return sorted(VOCABULARY, key=score, reverse=True)[:n]


def text(markdown: bool = False) -> str:
    """The vocabulary for people: `goodwill steps`, or `features/STEPS.md` with markdown."""
    values = [(f"<{t.name.lower()}>", t.doc) for t in TYPES.values() if t.name not in _PLAIN]
    out: list[str] = []
    if markdown:
        out += [
            "# Step vocabulary",
            "",
            "<!-- generated by `goodwill steps --markdown > features/STEPS.md`; do not edit -->",
            "",
            "Every step a feature may use, with an example. `Given/When` steps append an event:",
            "as a Given it is history, as a When it is the event the Then steps check. Quoted",
            "values are ids or text; the other values are written as follows.",
            "",
            "| value | written as |",
            "| --- | --- |",
            *(f"| `{name}` | {doc} |" for name, doc in values),
        ]
    for kind in ("given", "step", "then"):
        group = [p for p in VOCABULARY if p.kind == kind]
        out += ["", f"## {group[0].keyword}", ""] if markdown else []
        for p in group:
            first = p.keyword.split("/")[0]
            if markdown:
                out += [f"- **`{p.keyword} {p.skeleton}`**  ", f"  e.g. `{first} {p.example}`  "]
                out.append(f"  {p.meaning}")
            else:
                out += [f"{p.keyword} {p.skeleton}", f"    e.g. {first} {p.example}"]
                out.append(f"    {p.meaning}")
    if not markdown:
        out += ["", "values:", *(f"    {name:12} {doc.replace('`', '')}" for name, doc in values)]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ records


def load_records(path: Path) -> list[dict[str, Any]]:
    """The scenario records a feature run wrote (see tests/bdd/conftest.py)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    scenarios: list[dict[str, Any]] = doc["scenarios"]
    return scenarios


def _fired(record: dict[str, Any], policy: Policy) -> Iterable[tuple[bool, set[str]]]:
    """(decided when-event on the policy's event type, rules of the policy that fired)."""
    for d in record["decisions"]:
        if d["phase"] == "when":
            rules = {rule for pid, rule in d["fired"] if pid == policy.id}
            yield d["cause_type"] == policy.on, rules


def coverage(records_path: Path) -> dict[str, dict[str, set[str]]]:
    """policy id → rule name → the scenarios of the policy's own feature (template names, an
    outline not expanded) in which that rule decided the event of a When step."""
    out: dict[str, dict[str, set[str]]] = {}
    for record in load_records(records_path):
        for pid in record["policies"]:
            for d in record["decisions"]:
                if d["phase"] != "when":
                    continue
                for fired_pid, rule in d["fired"]:
                    if fired_pid == pid:
                        out.setdefault(pid, {}).setdefault(rule, set()).add(record["scenario"])
    return out


def rules_by_scenario(records_path: Path) -> dict[str, dict[str, set[str]]]:
    """The same, the other way round: policy id → scenario → rules (`handbook.Coverage`)."""
    out: dict[str, dict[str, set[str]]] = {}
    for pid, rules in coverage(records_path).items():
        for rule, scenarios in rules.items():
            for s in scenarios:
                out.setdefault(pid, {}).setdefault(s, set()).add(rule)
    return out


# ------------------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class Gap:
    """Something the specs do not show, said where to fix it."""

    where: str  # path:line
    message: str
    hint: str

    def render(self) -> str:
        return f"{self.where}: {self.message}\n  {self.hint}"


@dataclass(frozen=True)
class FeatureFile:
    path: Path
    line: int
    policies: tuple[str, ...]
    description: str
    scenarios: dict[str, int]  # template name → line
    duplicates: tuple[tuple[str, int], ...]
    error: str | None = None  # the file is not valid Gherkin


_SCENARIO_LINE = re.compile(r"^\s*(?:Scenario|Scenario Outline|Scenario Template|Example):\s*(.*)$")


def read_features(directory: Path) -> list[FeatureFile]:
    # the test extra; only the gate reads features
    from pytest_bdd.exceptions import GherkinParseError
    from pytest_bdd.parser import FeatureParser

    out = []
    for path in sorted(directory.glob("*.feature")):
        try:
            feature = FeatureParser(str(directory), path.name).parse()
        except GherkinParseError as err:
            said = err.message.splitlines()[-1]
            out.append(FeatureFile(path, err.line, (), "", {}, (), f"not valid Gherkin: {said}"))
            continue
        seen: dict[str, int] = {}
        duplicates = []
        for number, row in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = _SCENARIO_LINE.match(row)
            if m and m.group(1).strip() in seen:
                duplicates.append((m.group(1).strip(), number))
            elif m:
                seen[m.group(1).strip()] = number
        out.append(
            FeatureFile(
                path,
                feature.line_number,
                tuple(
                    sorted(t[len(POLICY_TAG) :] for t in feature.tags if t.startswith("policy:"))
                ),
                feature.description,
                {name: s.line_number for name, s in feature.scenarios.items()},
                tuple(duplicates),
            )
        )
    return out


def static_gaps(policy_set: PolicySet, features: list[FeatureFile]) -> list[Gap]:
    """Every policy has one feature, named after it, quoting its principle and owner."""
    gaps: list[Gap] = []
    ids = {p.id: p for p in policy_set.policies}
    by_policy: dict[str, list[FeatureFile]] = {}
    for f in features:
        where = f"{relpath(f.path)}:{f.line}"
        if f.error is not None:
            gaps.append(Gap(where, f.error, "see features/STEPS.md for the shape of a feature"))
            continue
        if len(f.policies) != 1:
            gaps.append(
                Gap(
                    where,
                    f"a feature names exactly one policy; this one names {len(f.policies)}",
                    "tag the Feature line with @policy:<policy id>",
                )
            )
        for pid in f.policies:
            if pid not in ids:
                hint = did_you_mean(pid, ids) or "policies: " + ", ".join(sorted(ids))
                gaps.append(Gap(where, f"@policy:{pid} names no policy in the set", hint))
                continue
            by_policy.setdefault(pid, []).append(f)
            policy = ids[pid]
            if f.path.name != f"{pid}.feature":
                gaps.append(Gap(where, f"the feature of {pid} is not named {pid}.feature",
                                f"rename it to {pid}.feature"))  # fmt: skip
            for label, said in (("principle", policy.principle), ("owner", policy.owner)):
                if said not in f.description:
                    gaps.append(
                        Gap(
                            where,
                            f"the description does not quote the policy's {label}",
                            f"{label} in {policy.path}: {said}",
                        )
                    )
        for name, line in f.duplicates:
            gaps.append(Gap(f"{relpath(f.path)}:{line}", f"scenario name '{name}' is used twice",
                            "give each scenario its own name"))  # fmt: skip
    for policy in policy_set.policies:
        found = by_policy.get(policy.id, [])
        if not found:
            gaps.append(
                Gap(
                    f"{policy.path}:1",
                    f"policy {policy.id} has no feature",
                    f"write features/{policy.id}.feature tagged @policy:{policy.id} "
                    "(docs/specs.md)",
                )
            )
        elif len(found) > 1:
            names = ", ".join(relpath(f.path) for f in found)
            gaps.append(Gap(f"{policy.path}:1", f"policy {policy.id} has several features: "
                            f"{names}", "keep one feature per policy"))  # fmt: skip
    return gaps


def coverage_gaps(
    policy_set: PolicySet, features: list[FeatureFile], records: list[dict[str, Any]]
) -> list[Gap]:
    """Every rule decides a When event in one scenario of its feature and not in another
    (two rows of one outline are two scenarios here)."""
    gaps: list[Gap] = []
    said: set[tuple[str, str]] = set()
    for r in records:
        where = f"{relpath(Path(r['feature']))}:{r['line']}"
        if r["failed"]:  # its steps stop where it failed: that is the one problem
            gaps.append(Gap(where, f"scenario '{r['scenario']}' fails", "see the output above"))
            continue
        for kind in ("when", "then"):
            if not r["steps"].get(kind) and (where, kind) not in said:
                said.add((where, kind))
                gaps.append(Gap(where, f"scenario '{r['scenario']}' has no {kind.capitalize()} "
                                "step, so it shows nothing", "see features/STEPS.md"))  # fmt: skip
    for policy in policy_set.policies:
        own = [f for f in features if policy.id in f.policies]
        if not own:
            continue  # reported by static_gaps
        where = f"{relpath(own[0].path)}:{own[0].line}"
        mine = [r for r in records if policy.id in r["policies"]]
        for rule in policy.rules:
            matched, missed = set(), set()  # scenario runs: an outline's rows are apart
            for r in mine:
                run = json.dumps([r["scenario"], r["example"]], sort_keys=True)
                for on_event, rules in _fired(r, policy):
                    if rule.name in rules:
                        matched.add(run)
                    elif on_event:
                        missed.add(run)
            label = f"rule '{rule.name}' of {policy.id}"
            at = f"({policy.path}:{rule.line}, when: {rule.when_text})"
            if not matched:
                gaps.append(
                    Gap(
                        where,
                        f"no scenario shows {label} deciding {at}",
                        f"add a scenario in which this rule decides the {policy.on} of a When step",
                    )
                )
            always = rule.index == 0 and rule.when_text == "always"
            if not always and not (missed and len(matched | missed) >= 2):
                gaps.append(
                    Gap(
                        where,
                        f"no scenario shows {label} not applying {at}",
                        f"add a scenario in which it does not decide the {policy.on} of a "
                        "When step, and say what happens instead",
                    )
                )
    return gaps


def run_suite(policies: Path, features: Path, records: Path, args: Iterable[str] = ()) -> int:
    """Run the feature suite in this process against `policies` and `features`; returns
    pytest's exit code. The suite writes its decision records to `records`."""
    import pytest  # the test extra

    env = {
        POLICIES_ENV: str(policies.resolve()),
        FEATURES_ENV: str(features.resolve()),
        RECORDS_ENV: str(records.resolve()),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        flags = ["-q", "-p", "no:cacheprovider", "--rootdir", str(REPO), *args, str(SUITE)]
        return int(pytest.main(flags))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check(
    policies_dir: Path, policy_set: PolicySet, features_dir: Path, echo: Callable[[str], None]
) -> int:
    """The gate: static checks, the feature suite, then rule coverage. Exit code 0, 1 or 2."""
    if importlib.util.find_spec("pytest_bdd") is None:
        echo("goodwill: the spec gate runs the features with pytest-bdd: pip install -e '.[test]'")
        return 2
    with tempfile.TemporaryDirectory(prefix="goodwill-specs-") as tmp:
        records_path = Path(tmp) / "records.json"
        code = run_suite(policies_dir, features_dir, records_path)
        records = load_records(records_path) if records_path.exists() else []
    features = read_features(features_dir)  # after the run: pytest wants pytest_bdd unimported
    gaps = static_gaps(policy_set, features)
    if code in (0, 1):
        gaps += coverage_gaps(policy_set, features, records)
    else:  # not run at all (a file pytest-bdd cannot read, …): coverage would be noise
        gaps.append(Gap(relpath(SUITE), f"the feature suite did not run (pytest exit {code})",
                        "see the output above"))  # fmt: skip
    rules = sum(len(p.rules) for p in policy_set.policies)
    if gaps:
        echo("")
        for gap in gaps:
            echo(gap.render())
        echo(f"goodwill: specs incomplete ({len(gaps)} problem(s))")
        return 1
    echo(
        f"specs ok: {len(features)} features, {len(records)} scenarios run, every one of "
        f"{rules} rules shown deciding and not deciding"
    )
    return 0
