"""Root-cause alerts: a fired rule's `alert` raises `rootcause.alert` for the event's SKU,
with its defect reports of the last `ALERT_WINDOW`, at most once per window.

Its own module because an alert is an output of its own, with its own window, counts and
recipients, read from state that spans customers (`StateView.sku_reports`, `last_alert`);
the `Decider` calls `alert` when a fired rule has one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from engine.draft import Draft
from engine.expr import leaves
from engine.facts import Scalar
from engine.policy import Policy, RouteSpec
from engine.say import value_shown
from events.models import Envelope, RootcauseAlert, make_output

if TYPE_CHECKING:
    from engine.decide import StateView

ALERT_WINDOW = timedelta(days=7)
_FIRST_MOMENT = datetime.min.replace(tzinfo=UTC)


def alert(
    policy: Policy,
    spec: RouteSpec,
    fact: dict[str, Scalar],
    event: Envelope,
    view: StateView,
    draft: Draft,
) -> str | None:
    """Raise the alert into `draft`; or, when this window's alert for the SKU was raised
    already, return why there is none, for the rule's `why` (it fired all the same)."""
    sku = str(fact["sku.id"])
    if not sku:
        return None
    last = view.last_alert(sku)
    if last is not None and event.occurred_at - last < ALERT_WINDOW:
        return (
            f"no alert: at most one is raised per {ALERT_WINDOW.days} days for a SKU, and the one"
            f" for {sku} was raised at {last.isoformat()}"
        )
    try:
        since = event.occurred_at - ALERT_WINDOW
    except OverflowError:  # in the first week of year 1, the window starts with it
        since = _FIRST_MOMENT
    count, orders = view.sku_reports(sku, since, event.occurred_at)
    data = RootcauseAlert(
        sku=sku,
        reports=count,
        threshold=_threshold(policy),
        window_start=since,
        window_end=event.occurred_at,
        notify=spec.to,
        orders=tuple(sorted(set(orders))),
        reason=spec.reason,
        context={p: value_shown(p, fact) for p in spec.context},
    )
    event_id = f"alert:{sku}:{event.event_id}"
    draft.alerts.append(
        make_output("rootcause.alert", event_id, event.occurred_at, data, event.customer_id)
    )
    return None


def _threshold(policy: Policy) -> int:
    """The smallest reports count an alerting rule compares with, shown in the alert."""
    values = [
        leaf.value
        for rule in policy.rules
        if rule.alert is not None
        for leaf in leaves(rule.when)
        if leaf.path == "sku.reports_7d" and isinstance(leaf.value, int)
    ]
    return min(values, default=0)
