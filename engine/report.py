"""How decisions read to a person: one block per decision, then the run summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from engine.alerts import ALERT_WINDOW
from engine.embedded import Summary
from engine.facts import to_minor
from engine.say import money_text
from engine.service import TIME_JUMP_DAYS
from events.codec import encode
from events.models import DecisionData, Envelope, FollowupOverdue, RootcauseAlert

_MARK = {"authorized": "AUTHORIZED", "routed": "ROUTED", "noted": "noted"}


def _when(text: str) -> str:
    return text.replace("T", " ")[:16]


class Printer:
    def __init__(self, json_lines: bool, quiet: bool, currency: str) -> None:
        self.json_lines = json_lines
        self.quiet = quiet
        self.currency = currency

    def output(self, event: Envelope) -> None:
        if self.quiet:
            return
        if self.json_lines:
            typer.echo(encode(event).decode())
            return
        data = event.data
        if isinstance(data, DecisionData):
            if data.outcome != "noted" or data.obligations or data.policies:
                typer.echo(self.decision(event, data))
        elif isinstance(data, FollowupOverdue):
            lead = data.escalate_to.person or "the team lead"
            promise = data.escalate_to.context.get("policy")
            by = f", promised by {promise}" if promise else ""
            typer.echo(
                f"{_when(event.occurred_at.isoformat())}"
                f"  FOLLOW-UP OVERDUE  case {data.case_id} (customer {event.customer_id or '?'}, "
                f"rep {data.rep_id or '?'}{by}), "
                f"due {_when(data.due_at.isoformat())} → escalated to {lead}\n"
            )
        elif isinstance(data, RootcauseAlert):
            typer.echo(
                f"{_when(event.occurred_at.isoformat())}  ROOT-CAUSE ALERT  {data.sku}: "
                f"{data.reports} defect reports in {ALERT_WINDOW.days} days"
                f" (threshold {data.threshold}) "
                f"→ {data.notify}" + (f": {data.reason}" if data.reason else "") + "\n"
            )

    def decision(self, event: Envelope, d: DecisionData) -> str:
        who = ", ".join(
            x
            for x in (
                f"customer {event.customer_id}" if event.customer_id else "",
                f"rep {d.rep_id}" if d.rep_id else "",
                f"case {d.case_id}" if d.case_id else "",
            )
            if x
        )
        lines = [
            f"{_when(event.occurred_at.isoformat())}  {d.cause_type} {d.caused_by}"
            f"  → {_MARK[d.outcome]}  ({who})",
            *effects(d),
        ]
        if d.policies:
            fired = ", ".join(f"{p.id} v{p.version} ({p.rule})" for p in d.policies)
            lines.append(f"    policies    {fired}")
        return "\n".join(lines) + "\n"

    def summary(self, s: Summary) -> None:
        t = s.tally
        echo = typer.echo if not self.json_lines else _stderr
        echo(f"— summary (policy set {s.policy_set}) —")
        echo(
            f"events read        {t.read}"
            + (f" ({t.duplicates} already decided, skipped)" if t.duplicates else "")
        )
        outcomes = ", ".join(f"{k} {t.outcomes[k]}" for k in ("authorized", "routed", "noted"))
        decided = sum(t.outcomes.values())
        if not decided and not sum(t.deadlettered.values()):
            echo("decisions          0: nothing new since the last run on this data directory")
        else:
            echo(f"decisions          {decided}: {outcomes}")
        routed = sum(t.routes.values())
        echo(f"routed             {routed}" + (" to a person, with context:" if routed else ""))
        for (to, reason), n in sorted(t.routes.items(), key=lambda kv: (-kv[1], kv[0])):
            echo(f"  {n:>4} to {to}: {reason}")
        echo(f"follow-ups         {t.followups_promised} promised, {t.overdue} overdue")
        echo(f"root-cause alerts  {t.alerts}")
        if t.time_jumps:
            echo(
                f"event time         {t.time_jumps} event(s) moved it more than {TIME_JUMP_DAYS}"
                " days ahead at once: see the warnings; a date may be wrong"
            )
        dead = sum(t.deadlettered.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(t.deadlettered.items()))
        echo(f"dead-lettered      {dead}" + (f" ({reasons}) → {s.deadletter_file}" if dead else ""))
        if failed := t.deadlettered.get("processing_failed"):
            echo(
                f"  Goodwill failed to decide {failed} valid event(s) (the errors are logged);"
                " once fixed, `goodwill redrive` sends them again"
            )
        if s.budgets:
            echo("budgets            budget/owner period: spent of allocated, remaining")
            for name, owner, period, allocated, charged in s.budgets:
                echo(
                    f"  {name}/{owner} {period}: {money_text(charged, self.currency)} of "
                    f"{money_text(allocated, self.currency)}, "
                    f"{money_text(max(0, allocated - charged), self.currency)} left"
                )


def _stderr(text: str) -> None:
    typer.echo(text, err=True)


def _shown(value: Any) -> str:
    """A context value in a route's line: text that could run into the next field (a
    rep's note with commas) is quoted, and a value not on record says so."""
    if value is None or value == "":
        return "(none)"
    if isinstance(value, str) and (", " in value or "=" in value or value != value.strip()):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def effects(d: DecisionData) -> list[str]:
    """What a decision lets the rep do and asks of them, one line each: grants, charges
    with what remains, routes with their reason and context, follow-ups, words."""

    def money(amount: Any, currency: str) -> str:
        return money_text(to_minor(amount), currency)

    lines = [f"    may give    {g.remedy} up to {money(g.up_to, g.currency)}" for g in d.grants]
    for c in d.charges:
        lines.append(
            f"    charged     {money(c.amount, c.currency)} to {c.budget}/{c.owner} "
            f"{c.period}; {money(c.remaining, c.currency)} left"
        )
    for r in d.routes:
        person = f" ({r.person})" if r.person else ""
        context = ", ".join(f"{k}={_shown(v)}" for k, v in r.context.items())
        lines.append(
            f"    routed to   {r.to}{person}: {r.reason}" + (f" [{context}]" if context else "")
        )
    for o in d.obligations:
        lines.append(f"    follow up   case {o.case_id} by {_when(o.due_at.isoformat())}")
    lines.extend(f"    note        {w.policy}: {w.note}" for w in d.why if w.note)
    lines.extend(f'    say         "{s}"' for s in d.say)
    return lines


def _clause_lines(clauses: list[dict[str, Any]], indent: str) -> list[str]:
    lines = []
    for clause in clauses:
        values = ", ".join(f"{k} = {json.dumps(v)}" for k, v in clause["values"].items())
        mark = "✓" if clause["result"] else "✗"
        lines.append(f"{indent}{mark} {clause['text']}" + (f"   ({values})" if values else ""))
    return lines


def explain_text(doc: dict[str, Any], kept: Path | None = None) -> str:
    """A decision as `goodwill explain` prints it; `kept`: where its policy set's files are."""
    d = doc["data"]
    lines = [
        f"decision {doc['event_id']}: {d['outcome']}",
        f"  caused by   {d['cause_type']} {d['caused_by']} at {doc['occurred_at']}",
        f"  policy set  {d['policy_set']}" + (f" (its files: {kept})" if kept else ""),
    ]
    if not d["why"]:
        lines.append("  no policy rule matched this event; it was noted")
    for why in d["why"]:
        ref = next((p for p in d["policies"] if p["id"] == why["policy"]), None)
        version = f" v{ref['version']} (hash {ref['hash']})" if ref else ""
        lines.append(f"  {why['policy']}{version}: rule '{why['rule']}' matched because")
        lines += _clause_lines(why["clauses"], "    ")
        for passed in why.get("passed_over", ()):  # rules are tried in order
            lines.append(f"    rule '{passed['rule']}', before it, did not match:")
            lines += _clause_lines(passed["clauses"], "      ")
    done = effects(DecisionData.model_validate(d))
    if done:
        lines += ["  what it decided", *done]
    return "\n".join(lines)
