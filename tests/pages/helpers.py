"""Filing tickets and moving them along for the page tests, through the
services (no worker runs here)."""

from datetime import timedelta

from django.utils import timezone

from approvals import services
from approvals.choices import TicketState
from approvals.models import Ticket

MIGRATE_WITHIN_DEV = {"vm": "dev-app-01", "target_host": "dev-esx-02"}
CREATE_FORM = {
    "name": "web-page-01",
    "template": "tpl-debian12",
    "placement": "host:prod-esx-01",
    "datastore": "ds-prod",
    "network": "pg-prod",
    "cpus": "2",
    "memory_mb": "2048",
    "justification": "New web node for the shop",
}


def submit(requester, connector, kind, params, justification="Needed for the release") -> Ticket:
    return services.ticket_submit(
        requester=requester, kind=kind, connector=connector, justification=justification, params=params
    )


def make_succeeded(ticket: Ticket, *approvers) -> Ticket:
    """Approve, then play the worker's two transitions, as ticket_execute would."""
    for approver in approvers:
        services.ticket_approve(ticket_id=ticket.pk, approver=approver)
    ticket.refresh_from_db()
    services.transition(ticket, TicketState.RUNNING, actor_name="worker", lease_owner="worker")
    fields = {"finished_at": timezone.now(), "result": {"summary": "done"}}
    if ticket.kind == "admin_access":
        fields["access_expires_at"] = timezone.now() + timedelta(minutes=30)
    return services.transition(ticket, TicketState.SUCCEEDED, actor_name="worker", **fields)
