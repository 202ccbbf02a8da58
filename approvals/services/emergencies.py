"""Break-glass: a holder of the break_glass role files an emergency ticket
with a reason; it runs at once without approvals, every approver and
auditor is told at once, and the policy's number of approvers (never the
requester) must review it within EMERGENCY_REVIEW_SECONDS. One not
reviewed in time becomes a finding, a banner on approvers' and auditors'
dashboards, and a reminder every EMERGENCY_REMINDER_SECONDS."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from approvals import notifications, permissions, seals
from approvals.choices import Decision, Role, TicketKind
from approvals.errors import InvalidInput, StateConflict
from approvals.kinds.base import Checked
from approvals.models import Approval, Ticket
from approvals.services.refusals import refusal_audited
from audit.models import Finding, FindingKind
from audit.writer import record

logger = logging.getLogger(__name__)


def clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput({"emergency_reason": ["Say what the emergency is; reviewers read it."]})
    return reason


def check_filing(*, requester, kind: str, checked: Checked | None = None) -> None:
    """Who may file an emergency, and the caps on one. PermissionDenied is
    audited by the caller."""
    if not permissions.can_file_emergency(requester):
        raise PermissionDenied("Only holders of the break_glass role file emergency tickets.")
    if checked is not None:
        problem = cap_problem(kind, checked.params)
        if problem:
            raise InvalidInput({"params": {"duration_minutes": [problem]}})


def cap_problem(kind: str, params: dict) -> str | None:
    cap = settings.EMERGENCY_ACCESS_MAX_MINUTES
    if kind == TicketKind.ADMIN_ACCESS and int(params.get("duration_minutes") or 0) > cap:
        return f"Emergency access lasts at most {cap} minutes."
    return None


def review_due(now=None):
    return (now or timezone.now()) + timedelta(seconds=settings.EMERGENCY_REVIEW_SECONDS)


def execution_problem(ticket: Ticket) -> str | None:
    """The worker's check of an emergency (its seal, which covers the
    emergency flag and reason, is checked before): the requester is still
    active and still holds break_glass, and the caps hold."""
    requester = ticket.requester
    if not requester.is_active:
        return f"Emergency refused: {requester.get_username()} is deactivated."
    if not requester.groups.filter(name=Role.BREAK_GLASS).exists():
        return f"Emergency refused: {requester.get_username()} no longer holds the break_glass role."
    if not ticket.emergency_reason.strip():
        return "Emergency refused: it gives no reason."
    problem = cap_problem(ticket.kind, ticket.params)
    return f"Emergency refused: {problem}" if problem else None


def emergency_review(*, ticket_id: int, reviewer, comment: str) -> Ticket:
    """One approver's post-review of an emergency (sealed like a decision).
    The review that reaches the policy's number of approvers closes it."""
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput({"comment": ["Say what you found when reviewing this emergency."]})
    with refusal_audited(ticket_id, reviewer, Decision.REVIEW), transaction.atomic():
        ticket = Ticket.objects.select_for_update().select_related("approver_group").get(pk=ticket_id)
        if ticket.requester_id == reviewer.pk:
            raise PermissionDenied("You cannot review an emergency you filed.")
        if not permissions.can_decide(reviewer, ticket):
            raise PermissionDenied(f"Only members of {ticket.approver_group.name} review {ticket.ref}.")
        conflict = permissions.conflict_of_interest(reviewer, ticket)
        if conflict:
            raise PermissionDenied(conflict)
        if not ticket.is_emergency:
            raise StateConflict(f"{ticket.ref} is not an emergency; it takes approvals, not reviews.")
        if ticket.approvals.filter(approver=reviewer).exists():
            raise StateConflict(f"You already reviewed {ticket.ref}.")
        review = Approval.objects.create(
            ticket=ticket,
            approver=reviewer,
            decision=Decision.REVIEW,
            comment=comment,
            content_hash=ticket.content_hash,
        )
        review.seal = seals.make(**seals.decision_fields(ticket, review))
        Approval.objects.filter(pk=review.pk).update(seal=review.seal)
        given = ticket.approvals.filter(decision=Decision.REVIEW).count()
        done = given >= ticket.required_approvals and ticket.reviewed_at is None
        record(
            "ticket.emergency_review",
            actor=reviewer,
            ticket=ticket,
            obj=ticket,
            details={"emergency": True, "comment": comment, "given": given, "required": ticket.required_approvals},
        )
        if done:
            now = timezone.now()
            Ticket.objects.filter(pk=ticket.pk).update(reviewed_at=now)
            ticket.reviewed_at = now
            record(
                "ticket.emergency_reviewed",
                actor=reviewer,
                ticket=ticket,
                obj=ticket,
                details={"emergency": True, "late": bool(ticket.review_due_at and now > ticket.review_due_at)},
            )
    return ticket


def overdue_emergencies():
    """Emergencies whose review deadline passed without enough reviews."""
    return Ticket.objects.filter(is_emergency=True, reviewed_at__isnull=True, review_due_at__lte=timezone.now())


def flag_overdue() -> int:
    """Raise one finding per emergency not reviewed in time (and send its
    first reminder). Returns how many were raised now."""
    raised = 0
    for ticket in overdue_emergencies().select_related("connector", "requester"):
        ref = f"ticket:{ticket.pk}:review"
        if Finding.objects.filter(kind=FindingKind.EMERGENCY_UNREVIEWED, object_ref=ref).exists():
            continue
        now = timezone.now()
        observed = {
            "ticket": ticket.ref,
            "requested_by": ticket.requester.get_username(),
            "reason": ticket.emergency_reason,
            "review_due_at": ticket.review_due_at.isoformat(),
            "reviews": ticket.approvals.filter(decision=Decision.REVIEW).count(),
        }
        with transaction.atomic():
            finding = Finding.objects.create(
                connector=ticket.connector,
                kind=FindingKind.EMERGENCY_UNREVIEWED,
                object_ref=ref,
                observed=observed,
                expected={"reviews": ticket.required_approvals, "by": ticket.review_due_at.isoformat()},
                first_seen=now,
                last_seen=now,
            )
            record(
                "finding.raised",
                actor_name="sweeper",
                ticket=ticket,
                obj=finding,
                details={"kind": finding.kind, "object_ref": ref, "observed": observed, "emergency": True},
            )
        raised += 1
        remind(ticket)
    return raised


def remind_overdue() -> int:
    """The daily reminder for every emergency still not reviewed."""
    return sum(remind(ticket) for ticket in overdue_emergencies())


def remind(ticket: Ticket) -> int:
    """Remind approvers and auditors of one overdue emergency, at most once
    per half reminder interval (a duplicate beat delivery sends nothing)."""
    now = timezone.now()
    since = now - timedelta(seconds=settings.EMERGENCY_REMINDER_SECONDS / 2)
    claimed = (
        Ticket.objects.filter(pk=ticket.pk, reviewed_at__isnull=True)
        .exclude(review_reminded_at__gt=since)
        .update(review_reminded_at=now)
    )
    if not claimed:
        return 0
    record("ticket.review_reminder", actor_name="sweeper", ticket=ticket, obj=ticket, details={"emergency": True})
    try:
        notifications.notify(ticket.pk, "review_overdue")
    except Exception:  # a failed send never touches the ticket
        logger.warning("review reminder for %s not sent", ticket.ref, exc_info=True)
    return 1


def review_state(ticket: Ticket) -> dict:
    """What the ticket page and the API show about an emergency's review."""
    reviews = [a for a in ticket.approvals.all() if a.decision == Decision.REVIEW]
    return {
        "reason": ticket.emergency_reason,
        "review_due_at": ticket.review_due_at,
        "reviewed_at": ticket.reviewed_at,
        "reviews_given": len(reviews),
        "reviews_required": ticket.required_approvals,
        "overdue": bool(ticket.reviewed_at is None and ticket.review_due_at and ticket.review_due_at <= timezone.now()),
    }
