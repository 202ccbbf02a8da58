"""The periodic sweep (Celery beat): nothing approved is forgotten, no lease
outlives its worker, nothing pending waits forever, no access outlives its
time. One sweeper acts at a time."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone

from approvals.choices import TicketKind, TicketState
from approvals.dispatch import enqueue_execution, enqueue_notification, enqueue_revocation
from approvals.errors import StateConflict
from approvals.models import Ticket
from approvals.services import emergencies, reminders
from approvals.services.execution import reconcile_expired_lease
from approvals.services.transitions import transition

LOCK_KEY = "sweeper-lock"


def sweep() -> dict[str, int]:
    """One pass. Returns counts of what it did, or {"skipped": 1} when another
    sweeper holds the lock."""
    token = uuid.uuid4().hex
    if not cache.add(LOCK_KEY, token, timeout=max(60, settings.SWEEP_INTERVAL_SECONDS * 4)):
        return {"skipped": 1}
    try:
        return {
            "expired_pending": expire_pending(),
            "expired_window": expire_closed_windows(),
            "requeued": requeue_unclaimed(),
            "leases": take_back_leases(),
            "access_ended": end_access(),
            "ttl_reminders": reminders.remind_nearing_ttl(),
            "emergencies_overdue": emergencies.flag_overdue(),
        }
    finally:
        if cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)


def _expire(queryset, reason: str) -> int:
    count = 0
    for ticket in queryset:
        try:
            transition(ticket, TicketState.EXPIRED, actor_name="sweeper", details={"reason": reason})
        except StateConflict:
            continue
        enqueue_notification(ticket.pk, "expired")
        count += 1
    return count


def expire_pending() -> int:
    now = timezone.now()
    return _expire(
        Ticket.objects.filter(state=TicketState.PENDING).filter(Q(pending_expires_at__lte=now) | Q(not_after__lte=now)),
        "not approved in time",
    )


def expire_closed_windows() -> int:
    return _expire(
        Ticket.objects.filter(state=TicketState.APPROVED, not_after__lte=timezone.now()),
        "change window closed before the work started",
    )


def requeue_unclaimed() -> int:
    """Approved tickets no worker claimed (a lost message, a broker restart,
    a change window that just opened) are queued again; the claim's
    compare-and-set makes a duplicate harmless."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.SWEEP_INTERVAL_SECONDS)
    stale = (
        Ticket.objects.filter(state=TicketState.APPROVED)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lte=grace) | Q(queued_at__lt=F("not_before")))
    )
    count = 0
    for ticket_id in stale.values_list("pk", flat=True):
        Ticket.objects.filter(pk=ticket_id, state=TicketState.APPROVED).update(queued_at=now)
        enqueue_execution(ticket_id)
        count += 1
    return count


def take_back_leases() -> int:
    """Running tickets whose lease ran out (their worker stopped renewing it
    every EXECUTION_LEASE_RENEW_SECONDS): each is taken over and settled from
    the hypervisor's word. Returns how many were taken over."""
    count = 0
    expired = Ticket.objects.select_related("connector").filter(
        state=TicketState.RUNNING, lease_expires_at__lte=timezone.now()
    )
    for ticket in expired:
        if reconcile_expired_lease(ticket) != "lease renewed or settled meanwhile":
            count += 1
    return count


def end_access() -> int:
    due = Ticket.objects.filter(
        kind=TicketKind.ADMIN_ACCESS, state=TicketState.SUCCEEDED, access_expires_at__lte=timezone.now()
    ).values_list("pk", flat=True)
    count = 0
    for ticket_id in due:
        enqueue_revocation(ticket_id)
        count += 1
    return count
