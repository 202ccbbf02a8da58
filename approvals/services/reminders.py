"""Pending tickets nearing their TTL remind their approver group once:
TTL_REMINDER_MINUTES before it runs out, or halfway through a TTL shorter
than twice that. A compare-and-set on ttl_reminded_at makes a second
sweep, or a second sweeper, send nothing."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from approvals import notifications
from approvals.choices import TicketState
from approvals.models import Ticket
from audit.writer import record

logger = logging.getLogger(__name__)


def remind_nearing_ttl() -> int:
    """Remind once for each pending ticket near its TTL; returns how many."""
    now = timezone.now()
    lead = timedelta(minutes=settings.TTL_REMINDER_MINUTES)
    near = Ticket.objects.filter(
        state=TicketState.PENDING, ttl_reminded_at__isnull=True, pending_expires_at__gt=now
    ).filter(pending_expires_at__lte=now + lead)
    sent = 0
    for ticket in near.only("pk", "created_at", "pending_expires_at", "connector_id"):
        halfway = (ticket.pending_expires_at - ticket.created_at) / 2
        if ticket.pending_expires_at - now > min(lead, halfway):
            continue
        if not Ticket.objects.filter(pk=ticket.pk, state=TicketState.PENDING, ttl_reminded_at__isnull=True).update(
            ttl_reminded_at=now
        ):
            continue
        record(
            "ticket.ttl_reminder",
            actor_name="sweeper",
            ticket=ticket,
            obj=ticket,
            details={"expires_at": ticket.pending_expires_at.isoformat()},
        )
        try:
            notifications.notify(ticket.pk, "ttl_reminder")
        except Exception:  # a failed send never touches the ticket
            logger.warning("TTL reminder for ticket %s not sent", ticket.pk, exc_info=True)
        sent += 1
    return sent
