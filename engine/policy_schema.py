"""The keys a policy file may use, each with the one-line help shown in errors and docs."""

from __future__ import annotations

MAX_CONDITIONS = 64
"""durable_rules fails (error 303) when one event matches more distinct conditions."""

REMEDIES: tuple[str, ...] = ("replacement", "expedite", "credit", "refund")

POLICY_KEYS: dict[str, str] = {
    "policy": "the policy id, e.g. `policy: replace-broken-part`",
    "version": "a whole number; bump it when the policy's meaning changes",
    "owner": "the team accountable for the policy, e.g. `owner: support-operations`",
    "principle": "the service principle it implements, in one sentence",
    "summary": "what it lets a rep do, in one sentence",
    "on": "the event type it listens to, e.g. `on: item.defect_reported`",
    "budget": "the budget `budget.*` fields read, from policies/budgets.yaml",
    "rules": "the rules, in order; the first whose `when` matches wins",
}
RULE_KEYS: dict[str, str] = {
    "name": "the rule's name, unique within the policy",
    "when": "a condition; omit it for a rule that always applies",
    "then": "what the rule does: authorize, charge, obligations, route, alert, say",
}
THEN_KEYS: dict[str, str] = {
    "authorize": "remedies the rep may give: [{remedy: replacement, up_to: order.amount}]",
    "charge": "spend to record against a budget: {budget: expedite, amount: event.amount}",
    "obligations": "promises with deadlines: [{follow_up: 48h}]",
    "route": "hand to a person or team with context: {to: team-lead, context: [...]}",
    "alert": "notify a team outside the conversation: {to: product-team, context: [...]}",
    "say": "the words the rep can use; {field} placeholders are filled in",
}
BUDGETS_FILE_KEYS: dict[str, str] = {
    "currency": "the currency every amount is in, e.g. USD",
    "budgets": "the budgets policies may charge",
}
BUDGET_KEYS: dict[str, str] = {
    "name": "the budget's name, used by `charge: {budget: ...}`",
    "scope": "whose budget it is: rep or team",
    "period": "day, week or month, in event time (UTC)",
    "amount": "the allocation per period unless a budget.allocated event sets it",
    "overflow": "where a charge beyond the remaining amount goes: {to: team-lead, say: ...}",
}
