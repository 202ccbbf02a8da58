"""A decision refused for who is asking is itself audited, after the refused
transaction rolled back, so the log shows every attempt."""

from contextlib import contextmanager

from django.core.exceptions import PermissionDenied

from approvals.models import Ticket
from audit.writer import record


@contextmanager
def refusal_audited(ticket_id: int, user, decision: str):
    """A decision refused for who is asking is itself audited (after the
    refused transaction rolled back), so the log shows every attempt."""
    try:
        yield
    except PermissionDenied as exc:
        ticket = Ticket.objects.filter(pk=ticket_id).first()
        if ticket is not None:
            record(
                "ticket.decision_refused",
                actor=user,
                ticket=ticket,
                obj=ticket,
                details={"decision": decision, "reason": str(exc)},
            )
        raise
