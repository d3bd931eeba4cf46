"""The step vocabulary of `features/`: the phrases a feature may be written in, and the
values they take.

The vocabulary is data: each `Phrase` is a pytest-bdd `cfparse` pattern with an example and
what it means. The step definitions in `tests/bdd` are bound to these patterns by key, so the
documented vocabulary (`goodwill steps`, `features/STEPS.md`) and the executable one agree by
construction. Its own module because it changes when a policy owner needs a new way to say
something, apart from the gate that checks the features cover the policies (`engine.specs`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final, Literal

Kind = Literal["given", "when", "then", "step"]
"""`step` phrases are events, usable as Given (history) and as When (the event under test)."""


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
       "While the When steps ran, one follow-up came due and was escalated to that lead."),
    _p("no-overdue", "then", "no follow-up is overdue", "no follow-up is overdue",
       "While the When steps ran, no follow-up came due."),
    _p("alerted", "then",
       '"{team:Text}" is alerted that "{sku:Text}" had {count:d} defect reports in 7 days',
       '"product-team" is alerted that "KETTLE-2" had 5 defect reports in 7 days',
       "While the When steps ran, a root-cause alert went to that team."),
    _p("no-alert", "then", "no one is alerted", "no one is alerted",
       "While the When steps ran, no root-cause alert was raised."),
    _p("noted", "then", 'policy "{policy:Text}" notes "{text:Text}"',
       'policy "root-cause-alert" notes "no alert: at most one is raised per 7 days"',
       "The decision's explanation for that policy notes what its matching rule did not do,"
       " and why (an alert already raised in its window); the note contains that text."),
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
