"""The worker's side of standard changes: a ticket approved at submission by
its policy counts only if that policy, as the ticket's seal names it (its
digest), is what an approved configuration request applied. A database
writer can make any policy row standard, and the web then seals a ticket
against that row; but only the worker, holding the audit key, writes the
entry that says what a configuration request applied, so the row the DBA
wrote has no entry to match."""

from __future__ import annotations

from approvals import standard
from approvals.kinds.base import Checked
from approvals.models import Ticket
from audit.models import AuditEntry
from audit.verify import verify_chain

POLICY_APPLIED = ("config.policy.create", "config.policy.update", "config.policy.delete")


def applied_problem(ticket: Ticket) -> str | None:
    """Why the policy a standard ticket was approved by is not the one an
    approved configuration request applied, in words, or None."""
    if ticket.policy_id is None:
        return "it names no policy"
    entry = (
        AuditEntry.objects.filter(
            action__in=POLICY_APPLIED, object_type="approvals.policy", object_id=str(ticket.policy_id)
        )
        .order_by("-seq")
        .only("seq", "action", "details")
        .first()
    )
    if entry is None:
        return f"policy #{ticket.policy_id} was never set by an approved configuration request"
    if entry.action == "config.policy.delete":
        return f"policy #{ticket.policy_id} was deleted by configuration request {entry.details.get('request')}"
    if entry.details.get("digest") != ticket.policy_digest:
        return (
            f"policy #{ticket.policy_id} as the ticket was approved by is not what configuration request "
            f"{entry.details.get('request')} applied (its terms were changed outside the portal)"
        )
    submitted = (
        AuditEntry.objects.filter(ticket_id=ticket.pk, action="ticket.submitted").values_list("seq", flat=True).first()
    )
    if submitted is None:
        return "its submission is not in the audit log"
    # From the applied policy up to the submission; history_problem checks
    # the rest, from the submission to the chain head.
    report = verify_chain(AuditEntry.objects.filter(seq__gte=entry.seq, seq__lte=submitted), witness=None)
    if not report.ok or report.checked != submitted - entry.seq + 1:
        return f"the audit log from the policy's configuration to the submission does not verify ({report.reason})"
    return None


def fit_problem(ticket: Ticket, checked: Checked, index) -> str | None:
    """Whether the ticket still fits its policy's standard scope against the
    live inventory, in words."""
    verdict = standard.verdict(kind=ticket.kind, checked=checked, index=index)
    if verdict["standard"]:
        return None
    return "No longer a standard change: " + " ".join(verdict["reasons"]) + " It needs a new ticket."
