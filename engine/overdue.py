"""Overdue follow-ups: `followup.overdue` escalations for the obligations a decision
promised and nobody met by the event-time watermark.

Its own module because it is not a decision of an event: the processing loop calls
`overdue` as the watermark moves, on obligations the state store found due, and each
escalation names the policy whose rule made the promise (`promising_policy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from events.models import Envelope, FollowupOverdue, Route, make_output


def promising_policy(obligation_id: str) -> str | None:
    """The policy whose rule made a follow-up: obligation ids are
    `<decision id>:<policy id>:<index>` (`Decider._apply`)."""
    parts = obligation_id.split(":")
    return parts[-2] if len(parts) >= 3 else None


def overdue(
    due: list[tuple[str, str, str | None, str | None, datetime]],
    watermark: datetime,
    leads: Mapping[str, str],
) -> list[Envelope]:
    """`followup.overdue` for each obligation past the watermark, in (due_at, id) order."""
    out = []
    for obligation_id, case_id, customer_id, rep_id, due_at in due:
        lead = leads.get(rep_id or "")
        route = Route(
            to="team-lead",
            person=lead,
            reason="follow-up is overdue",
            context={
                "case_id": case_id,
                "customer_id": customer_id,
                "rep_id": rep_id,
                "due_at": due_at.isoformat(),
                "policy": promising_policy(obligation_id),
            },
        )
        data = FollowupOverdue(
            obligation_id=obligation_id,
            case_id=case_id,
            rep_id=rep_id,
            due_at=due_at,
            watermark=watermark,
            escalate_to=route,
        )
        out.append(
            make_output(
                "followup.overdue", f"overdue:{obligation_id}", watermark, data, customer_id
            )
        )
    return out
