"""The step definitions of `features/`, one per phrase of `engine.steps.VOCABULARY`.

Each definition is bound to its phrase by key (`@phrase("...")`), so what `goodwill steps`
documents is exactly what runs. Givens and Whens append events through the Processor; Thens
read the decision the engine made. Nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from pytest_bdd import given, parsers, step, then, when

from engine.errors import did_you_mean
from engine.periods import period_key
from engine.steps import GRANT_WORDS, PHRASES, TYPES
from events.models import DecisionData, FollowupOverdue, RootcauseAlert
from tests.bdd.world import World, dollars, span_text

F = TypeVar("F", bound=Callable[..., Any])
BOUND: set[str] = set()
_DECORATORS = {"given": given, "when": when, "then": then, "step": step}


def phrase(key: str) -> Callable[[F], F]:
    """Bind a step definition to the vocabulary phrase `key`."""
    p = PHRASES[key]
    BOUND.add(key)
    parser = parsers.cfparse(p.pattern, extra_types=TYPES, case_sensitive=True)
    return _DECORATORS[p.kind](parser)


# ---------------------------------------------------------------------- the world before


@phrase("now")
def _now(world: World, weekday: str, day: int, month: int, year: int, time: str) -> None:
    hour, minute = (int(x) for x in time.split(":"))
    at = datetime(year, month, day, hour, minute, tzinfo=UTC)
    if at.strftime("%A") != weekday:
        world.fail_step(f"{at:%-d %B %Y} is a {at:%A}, not a {weekday}")
    if world.now is not None and world.sent:
        if at < world.now:
            world.fail_step(f"time cannot go back from {world.now:%A %-d %B %Y, %H:%M}")
        world.now = at
        world.send("clock.tick", {}, None)
    world.now = at


@phrase("rep")
def _rep(world: World, rep: str, team: str, lead: str) -> None:
    world.send("rep.assigned", {"rep_id": rep, "team": team, "lead": lead}, None)


@phrase("customer")
def _customer(world: World, customer: str) -> None:
    world.customer = customer


def _order(world: World, order: str, amount: Decimal, at: datetime, sku: str | None = None) -> None:
    sku = sku or f"PART-{order}"
    world.skus[order] = sku
    item = {"sku": sku, "qty": 1, "unit_price": f"{amount:.2f}"}
    data = {"order_id": order, "amount": f"{amount:.2f}", "currency": world.currency}
    world.send("order.placed", {**data, "items": [item], "channel": "web"}, world.who(), at)


@phrase("customer-spent")
def _customer_spent(world: World, customer: str, spent: Decimal, orders: int) -> None:
    if orders < 1:
        world.fail_step("a customer who has spent something has at least 1 order")
    world.customer = customer
    cents = int(spent * 100)
    each = cents // orders
    for i in range(orders):
        share = each + (cents - each * orders if i == orders - 1 else 0)
        at = world.clock() - timedelta(days=orders - i)
        _order(world, f"{customer}-past-{i + 1}", Decimal(share) / 100, at)


@phrase("order")
def _placed(world: World, order: str, amount: Decimal, when: timedelta) -> None:
    _order(world, order, amount, world.clock() - when)


@phrase("budget-left")
def _budget_left(
    world: World, holder: str, owner: str, left: Decimal, budget: str, period: str
) -> None:
    spec = world.policy_set.budgets.get(budget)
    if spec is None:
        hint = did_you_mean(budget, world.policy_set.budgets) or "see policies/budgets.yaml"
        world.fail_step(f"there is no {budget} budget; {hint}")
    if spec.scope != holder:
        world.fail_step(f"the {budget} budget belongs to a {spec.scope}, not a {holder}")
    said = {"this month": "month", "this week": "week", "today": "day"}[period]
    if spec.period != said:
        world.fail_step(f"the {budget} budget is allocated per {spec.period}, not per {said}")
    key = period_key(spec.period, world.clock())
    _, charged = world.store.budget_usage(budget, owner, key)
    amount = Decimal(charged) / 100 + left
    data = {"owner": owner, "budget": budget, "amount": f"{amount:.2f}", "period": key}
    world.send("budget.allocated", {**data, "currency": world.currency}, None)


def _fulfilled(world: World, at: datetime) -> None:
    case = world.name(f"{world.who()}-past-case")
    data = {"case_id": case, "remedy": "replacement", "actual_cost": "20.00"}
    world.send("remedy.fulfilled", {**data, "currency": world.currency}, world.who(), at)


@phrase("remedies")
def _remedies(world: World, count: int) -> None:
    if count > 89:
        world.fail_step("at most 89 remedies fit in the last 90 days at one a day")
    for days in range(count, 0, -1):
        _fulfilled(world, world.clock() - timedelta(days=days))


@phrase("remedy-ago")
def _remedy_ago(world: World, when: timedelta) -> None:
    _fulfilled(world, world.clock() - when)


@phrase("shipped")
def _shipped(world: World, order: str, level: str, span: timedelta) -> None:
    promised = world.clock() + span
    world.promised[order] = promised
    data = {"order_id": order, "carrier": "UPS", "service_level": level}
    world.send("order.shipped", {**data, "promised_by": promised.isoformat()}, world.who())


@phrase("reported")
def _reported(world: World, count: int, sku: str) -> None:
    for _ in range(count):
        other = world.name(f"{sku.lower()}-owner")
        order = f"{other}-order"
        item = {"sku": sku, "qty": 1, "unit_price": "45.00"}
        data = {"order_id": order, "amount": "45.00", "currency": world.currency}
        world.send("order.placed", {**data, "items": [item]}, other)
        world.send("item.defect_reported", {"order_id": order, "sku": sku}, other)


# ---------------------------------------------------------------------- events


@phrase("time")
def _time(world: World, span: timedelta) -> None:
    world.now = world.clock() + span
    world.send("clock.tick", {}, None)


def _contact(world: World, rep: str, topic: str, order: str | None) -> None:
    case = world.name(f"{world.who()}-case")
    data = {"case_id": case, "rep_id": rep, "channel": "chat", "topic": topic}
    world.open_case[world.who()] = case
    world.case_rep[case] = rep
    if order is not None:
        world.case_order[case] = order
        data["order_id"] = order
    world.send("contact.opened", data, world.who())


@phrase("contact")
def _contacts(world: World, rep: str, topic: str) -> None:
    _contact(world, rep, topic, None)


@phrase("contact-order")
def _contacts_on_order(world: World, rep: str, topic: str, order: str) -> None:
    _contact(world, rep, topic, order)


def _case(world: World) -> str:
    case = world.open_case.get(world.who())
    if case is None:
        world.fail_step('the customer has no open case: add e.g. `the customer contacts ana '
                        'about "question"` before')  # fmt: skip
    return case


@phrase("transfer")
def _transfer(world: World, rep: str, team: str, note: str | None = None) -> None:
    data = {"case_id": _case(world), "from_rep": rep, "to_team": team}
    if note is not None:
        data["note"] = note
    world.send("contact.transferred", data, world.who())


@phrase("transfer-note")
def _transfer_note(world: World, rep: str, team: str, note: str) -> None:
    _transfer(world, rep, team, note)


@phrase("resolve")
def _resolve(world: World) -> None:
    case = _case(world)
    del world.open_case[world.who()]
    world.send("case.resolved", {"case_id": case, "resolution": "resolved"}, world.who())


def _report(world: World, order: str, sku: str) -> None:
    data = {"order_id": order, "sku": sku, "description": "It broke."}
    case = world.open_case.get(world.who())
    if case is not None:
        data |= {"case_id": case, "rep_id": world.case_rep[case]}
    world.send("item.defect_reported", data, world.who())


@phrase("report-part")
def _report_part(world: World, order: str) -> None:
    _report(world, order, world.skus.get(order, f"PART-{order}"))


@phrase("report-product")
def _report_product(world: World, sku: str, order: str) -> None:
    _report(world, order, sku)


def _ask(world: World, rep: str, remedy: str, amount: Decimal, order: str | None) -> None:
    case = world.open_case.get(world.who()) or world.name(f"{world.who()}-case")
    order = order or world.case_order.get(case)
    data = {"case_id": case, "rep_id": rep, "remedy": remedy, "amount": f"{amount:.2f}"}
    if order is not None:
        data["order_id"] = order
    world.send("remedy.requested", {**data, "currency": world.currency}, world.who())


@phrase("ask-expedite")
def _ask_expedite(world: World, rep: str, order: str, amount: Decimal) -> None:
    _ask(world, rep, "expedite", amount, order)


@phrase("ask-credit")
def _ask_credit(world: World, rep: str, amount: Decimal) -> None:
    _ask(world, rep, "credit", amount, None)


@phrase("ask-refund")
def _ask_refund(world: World, rep: str, amount: Decimal, order: str) -> None:
    _ask(world, rep, "refund", amount, order)


@phrase("ask-replacement")
def _ask_replacement(world: World, rep: str, amount: Decimal, order: str) -> None:
    _ask(world, rep, "replacement", amount, order)


@phrase("delayed")
def _delayed(world: World, order: str, late: timedelta) -> None:
    eta = world.promised.get(order, world.clock()) + late
    world.send("shipment.delayed", {"order_id": order, "new_eta": eta.isoformat()}, world.who())


@phrase("lost")
def _lost(world: World, order: str) -> None:
    data = {"order_id": order, "last_scan": world.clock().isoformat()}
    world.send("shipment.lost", data, world.who())


# ---------------------------------------------------------------------- what was decided


def _decided(world: World) -> tuple[Any, DecisionData]:
    envelope = world.decision()
    assert isinstance(envelope.data, DecisionData)
    return envelope, envelope.data


def _for_rep(world: World, who: str, expected: str) -> tuple[Any, DecisionData]:
    envelope, d = _decided(world)
    if who == "we" and d.rep_id:  # `we`: a decision no rep acts on
        world.fail(expected, f"the decision is for rep {d.rep_id} (say `{d.rep_id}`)", envelope)
    if who != "we" and d.rep_id != who:
        rep = f"rep {d.rep_id}" if d.rep_id else "no rep (say `we`)"
        world.fail(expected, f"the decision is for {rep}", envelope)
    return envelope, d


_SAID = {remedy: words for words, remedy in GRANT_WORDS.items()}


@phrase("may")
def _may(world: World, who: str, remedy: str, amount: Decimal) -> None:
    expected = f"{who} may {_SAID[remedy]} up to {dollars(amount)}"
    envelope, d = _for_rep(world, who, expected)
    if not any(g.remedy == remedy and g.up_to == amount for g in d.grants):
        but = f"the decision authorized: {world.grants(d)} ({world.rules(d)})"
        world.fail(expected, but, envelope)


@phrase("may-not")
def _may_not(world: World, who: str, remedy: str) -> None:
    envelope, d = _for_rep(world, who, f"{who} may not give a {remedy}")
    if any(g.remedy == remedy for g in d.grants):
        but = f"the decision authorized: {world.grants(d)} ({world.rules(d)})"
        world.fail(f"no {remedy} authorized", but, envelope)


@phrase("nothing")
def _nothing(world: World) -> None:
    envelope, d = _decided(world)
    if d.grants:
        but = f"the decision authorized: {world.grants(d)} ({world.rules(d)})"
        world.fail("nothing authorized", but, envelope)


@phrase("no-manager")
def _no_manager(world: World) -> None:
    envelope, d = _decided(world)
    if d.routes:
        but = f"the decision routed to {world.routes(d)} ({world.rules(d)})"
        world.fail("no manager involved", but, envelope)


def _focused(world: World, d: DecisionData) -> list[Any]:
    """The routes a routing step of this decision matched, else all of its routes."""
    if world.focus is not None and world.focus[0] == d.decision_id:
        return world.focus[1]
    return list(d.routes)


def _routed(
    world: World, expected: str, ok: Callable[[Any], bool], *, focused: bool = False
) -> None:
    """A route of the decision that is `ok` (of the routes in focus, when `focused`); the
    routes that are become the focus."""
    envelope, d = _decided(world)
    matched = [r for r in (_focused(world, d) if focused else d.routes) if ok(r)]
    if not matched:
        routed = f"routed to {world.routes(d)}" if d.routes else "routed to no one"
        world.fail(expected, f"the decision {routed} ({world.rules(d)})", envelope)
    world.focus = (d.decision_id, matched)


@phrase("routed-lead")
def _routed_lead(world: World, person: str) -> None:
    expected = f"routed to team lead {person}"
    _routed(world, expected, lambda r: r.to == "team-lead" and r.person == person)


@phrase("routed-to")
def _routed_to(world: World, to: str) -> None:
    _routed(world, f"routed to {to}", lambda r: r.to == to)


@phrase("reason")
def _reason(world: World, reason: str) -> None:
    expected = f'a route with the reason "{reason}"'
    _routed(world, expected, lambda r: r.reason == reason, focused=True)


def _same(shown: object, expected: object) -> bool:
    if isinstance(expected, Decimal):
        return (
            isinstance(shown, str)
            and shown.replace(".", "", 1).isdigit()
            and (Decimal(shown) == expected)
        )
    return type(shown) is type(expected) and shown == expected


@phrase("handover")
def _handover(world: World, field: str, value: object) -> None:
    envelope, d = _decided(world)
    shown = [r.context[field] for r in _focused(world, d) if field in r.context]
    if not any(_same(s, value) for s in shown):
        said = dollars(value) if isinstance(value, Decimal) else repr(value)
        but = f"the handover shows {field} = {shown[0]!r}" if shown else f"no route shows {field}"
        world.fail(f"the handover to show {field} = {said}", but, envelope)


@phrase("charged")
def _charged(world: World, amount: Decimal, budget: str, owner: str, left: Decimal) -> None:
    envelope, d = _decided(world)
    expected = (
        f"{dollars(amount)} charged to the {budget} budget of {owner}, leaving {dollars(left)}"
    )
    if not any(
        c.budget == budget and c.owner == owner and c.amount == amount and c.remaining == left
        for c in d.charges
    ):
        said = "; ".join(
            f"{dollars(c.amount)} to the {c.budget} budget of {c.owner}, leaving "
            f"{dollars(c.remaining)}"
            for c in d.charges
        )
        world.fail(expected, f"the decision charged {said or 'nothing'}", envelope)


@phrase("not-charged")
def _not_charged(world: World) -> None:
    envelope, d = _decided(world)
    if d.charges:
        world.fail("no budget charged", f"the decision charged {d.charges[0].budget}", envelope)


@phrase("follow-up")
def _follow_up(world: World, span: timedelta) -> None:
    envelope, d = _decided(world)
    due = [o.due_at - envelope.occurred_at for o in d.obligations]
    if span not in due:
        said = ", ".join(span_text(x) for x in due) or "none"
        world.fail(f"a follow-up due within {span_text(span)}", f"follow-ups: {said}", envelope)


@phrase("no-follow-up")
def _no_follow_up(world: World) -> None:
    envelope, d = _decided(world)
    if d.obligations:
        world.fail("no follow-up", "the decision promises one", envelope)


@phrase("say")
def _say(world: World, who: str, words: str) -> None:
    envelope, d = _for_rep(world, who, f'{who} can tell the customer "{words}"')
    if not any(words in s for s in d.say):
        world.fail(f'words containing "{words}"', f"the decision says {list(d.say)}", envelope)


@phrase("outcome")
def _outcome(world: World, outcome: str) -> None:
    envelope, d = _decided(world)
    if d.outcome != outcome:
        world.fail(f"the outcome {outcome}", f"it is {d.outcome} ({world.rules(d)})", envelope)


@phrase("by-policy")
def _by_policy(world: World, policy: str) -> None:
    envelope, d = _decided(world)
    if policy not in {p.id for p in d.policies}:
        world.fail(f"a decision by policy {policy}", f"it was made by {world.rules(d)}", envelope)


@phrase("by-rule")
def _by_rule(world: World, rule: str, policy: str) -> None:
    envelope, d = _decided(world)
    if (policy, rule) not in {(p.id, p.rule) for p in d.policies}:
        world.fail(f"a decision by rule {policy}/{rule}", f"it was made by {world.rules(d)}",
                   envelope)  # fmt: skip


@phrase("not-apply")
def _not_apply(world: World, policy: str) -> None:
    envelope, d = _decided(world)
    if policy in {p.id for p in d.policies}:
        world.fail(f"policy {policy} not to apply", f"it applied: {world.rules(d)}", envelope)


@phrase("overdue")
def _overdue(world: World, lead: str) -> None:
    found = [e.data for e in world.emitted("followup.overdue")]
    if len(found) != 1 or not all(
        isinstance(f, FollowupOverdue) and f.escalate_to.person == lead for f in found
    ):
        said = ", ".join(
            f"case {f.case_id} to {f.escalate_to.person or 'no one'}"
            for f in found
            if isinstance(f, FollowupOverdue)
        )
        world.fail(f"one overdue follow-up escalated to {lead}", f"escalated: {said or 'none'}")


@phrase("no-overdue")
def _no_overdue(world: World) -> None:
    found = world.emitted("followup.overdue")
    if found:
        world.fail("no overdue follow-up", f"{len(found)} follow-up(s) came due and escalated")


def _alerts(world: World) -> list[RootcauseAlert]:
    return [e.data for e in world.emitted("rootcause.alert") if isinstance(e.data, RootcauseAlert)]


@phrase("noted")
def _noted(world: World, policy: str, text: str) -> None:
    envelope, d = _decided(world)
    notes = [w.note for w in d.why if w.policy == policy]
    if not any(text in note for note in notes):
        world.fail(f"{policy} to note {text!r}", f"its notes: {notes or 'it did not apply'}",
                   envelope)  # fmt: skip


@phrase("alerted")
def _alerted(world: World, team: str, sku: str, count: int) -> None:
    alerts = _alerts(world)
    if not any(a.notify == team and a.sku == sku and a.reports == count for a in alerts):
        said = "; ".join(f"{a.notify} about {a.sku}, {a.reports} reports" for a in alerts)
        world.fail(f"{team} alerted about {sku} with {count} reports",
                   f"alerts raised: {said or 'none'}")  # fmt: skip


@phrase("no-alert")
def _no_alert(world: World) -> None:
    alerts = _alerts(world)
    if alerts:
        said = "; ".join(f"{a.notify} about {a.sku}, {a.reports} reports" for a in alerts)
        world.fail("no root-cause alert", f"alerts raised: {said}")
