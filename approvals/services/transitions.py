"""The one place a ticket changes state."""

from django.db import transaction
from django.utils import timezone

from approvals.choices import ALLOWED_TRANSITIONS, FINAL_STATES, TicketState
from approvals.errors import StateConflict
from approvals.models import Ticket
from audit.checkpoints import checkpoint_soon
from audit.writer import record


def transition(
    ticket: Ticket,
    to: str,
    *,
    actor=None,
    actor_name: str = "",
    details: dict | None = None,
    expect: str | None = None,
    **fields,
) -> Ticket:
    """Move `ticket` from its current state (or `expect`) to `to` with a
    compare-and-set, writing `fields` alongside and one audit entry.

    Raises StateConflict when the move is not allowed or another process moved
    the ticket first; then nothing is written."""
    source = expect or ticket.state
    if to not in ALLOWED_TRANSITIONS[source]:
        raise StateConflict(f"{ticket.ref} is {source}; it cannot become {to}.")
    now = timezone.now()
    # No savepoint inside a caller's transaction (two statements fewer a
    # move): an entry that fails to append fails the caller's work with it,
    # and a lost compare-and-set, which wrote nothing, is raised only once
    # the block has ended, so the caller's transaction stays usable.
    with transaction.atomic(savepoint=False):
        updated = Ticket.objects.filter(pk=ticket.pk, state=source).update(state=to, updated_at=now, **fields)
        if updated:
            record(
                f"ticket.{to}",
                actor=actor,
                actor_name=actor_name,
                ticket=ticket,
                obj=ticket,
                details={"from": source, "to": to, **(details or {})},
            )
            if to in FINAL_STATES or to == TicketState.SUCCEEDED:
                # The ticket's story is told: have it signed and witnessed now, not at the next minute.
                transaction.on_commit(checkpoint_soon, robust=True)
    if not updated:
        current = Ticket.objects.filter(pk=ticket.pk).values_list("state", flat=True).first()
        raise StateConflict(f"{ticket.ref} is {current}; it cannot become {to}.")
    ticket.state = to
    ticket.updated_at = now
    for name, value in fields.items():
        setattr(ticket, name, value)
    return ticket
