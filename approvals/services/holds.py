"""What keeps an approved ticket from starting although it may run: a
freeze in force, or another ticket running on the same object. The worker
asks just before it claims; a held ticket stays approved, says why on its
page, and is queued again for when the hold should end (the sweeper queues
it again anyway should that message be lost, e.g. across a worker restart)."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.utils import timezone

from approvals.choices import TicketState
from approvals.conflicts import object_keys, running_conflict
from approvals.dispatch import enqueue_execution, enqueue_notification
from approvals.freezes import Unverified, ticket_hold
from approvals.models import Ticket
from audit.models import AuditEntry
from audit.writer import record

HELD_PREFIXES = ("held by freeze", "waiting for", "held: ")


def is_held(ticket: Ticket) -> bool:
    """Whether the worker last held this approved ticket back."""
    return ticket.state == TicketState.APPROVED and ticket.progress.startswith(HELD_PREFIXES)


def _wait(ticket: Ticket, words: str, *, countdown: float, details: dict, actor_name: str) -> str:
    """Leave the ticket approved with `words` on it (audited when they
    change), and queue it again in `countdown` seconds."""
    now = timezone.now()
    previous = Ticket.objects.filter(pk=ticket.pk).values_list("progress", flat=True).first()
    if not Ticket.objects.filter(pk=ticket.pk, state=TicketState.APPROVED).update(
        progress=words, queued_at=now, updated_at=now
    ):
        return "nothing to do"
    if previous != words:
        record("ticket.held", actor_name=actor_name, ticket=ticket, obj=ticket, details={"reason": words, **details})
    enqueue_execution(ticket.pk, countdown=max(1.0, countdown))
    return words


def claim_lock(ticket: Ticket) -> None:
    """Inside the claim's transaction, before the gates: wait for any other
    claim on one of the objects this ticket changes (by identity, as
    conflicts are judged) or on the ticket itself, until that claim's
    transaction ends. Of two tickets on one object the second then sees the
    first running; claims on other objects of the connector go on side by
    side. PostgreSQL advisory locks of the transaction, keyed (connector,
    hash of the identity), taken in key order; a hash collision only makes
    two claims wait for each other."""
    if ticket.connector_id is None:
        return
    if connection.vendor != "postgresql":
        # SQLite (the zero-setup default) has one writer at a time: claims,
        # which write, already run one after another.
        return
    keys = sorted({f"ticket:{ticket.pk}", *object_keys(ticket)})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, h) FROM "
            "(SELECT DISTINCT hashtext(k) AS h FROM unnest(%s::text[]) AS k ORDER BY h) AS ordered",
            [ticket.connector_id, keys],
        )


def freeze_gate(ticket: Ticket, *, emergency: bool, actor_name: str) -> str | None:
    """Whether a freeze holds the ticket now, judged by the freezes the
    audit log shows applied (approvals/freezes.py). Held: the ticket waits
    for the freeze's end and the words are returned. An emergency
    (break-glass) ticket passes, with an audit entry and a notice to its
    approvers; None is returned then, as when no freeze holds. Freeze
    entries that do not verify hold everything: nobody can tell which
    freezes are real."""
    now = timezone.now()
    try:
        hold = ticket_hold(ticket, source="log", at=now)
    except Unverified as exc:
        words = f"held: the freeze records in the audit log do not verify ({exc})"
        return _wait(
            ticket,
            words,
            countdown=settings.CONFLICT_RETRY_SECONDS,
            details={"unverified": True},
            actor_name=actor_name,
        )
    if hold is None:
        return None
    details = {"freeze": hold.freeze.name, "freeze_id": hold.freeze.id, "until": hold.until.isoformat()}
    if emergency:
        already = AuditEntry.objects.filter(ticket_id=ticket.pk, action="ticket.freeze_overridden").exists()
        if not already:
            record(
                "ticket.freeze_overridden",
                actor_name=actor_name,
                ticket=ticket,
                obj=ticket,
                details={**details, "reason": f"emergency: runs inside freeze {hold.freeze.name}"},
            )
            enqueue_notification(ticket.pk, "freeze_overridden")
        return None
    return _wait(
        ticket, hold.words(), countdown=(hold.until - now).total_seconds() + 0.5, details=details, actor_name=actor_name
    )


def conflict_gate(ticket: Ticket, *, actor_name: str) -> str | None:
    """Whether another running ticket changes one of this ticket's objects;
    then the ticket waits and looks again after CONFLICT_RETRY_SECONDS."""
    blocker = running_conflict(ticket)
    if blocker is None:
        return None
    words = f"waiting for {blocker.ref}, which is running on the same object"
    return _wait(
        ticket,
        words,
        countdown=settings.CONFLICT_RETRY_SECONDS,
        details={"conflict": blocker.ref},
        actor_name=actor_name,
    )
