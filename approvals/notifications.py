"""E-mail to the people a ticket concerns (chat webhooks: approvals/chat.py). Sent by a Celery task after commit;
a failed send is logged and never touches the ticket."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from approvals.choices import Role
from approvals.models import Ticket
from approvals.templatetags.portal import bound_objects, ticket_summary

SUBJECTS = {
    "awaiting_approval": "{ref} awaits your approval",
    "approved": "{ref} was approved",
    "rejected": "{ref} was rejected",
    "succeeded": "{ref} is done",
    "failed": "{ref} failed",
    "expired": "{ref} expired",
    "revoked": "{ref}: access ended",
    "freeze_overridden": "{ref} runs inside a freeze (emergency)",
    "emergency": "EMERGENCY {ref} was carried out without approval; review it",
    "review_overdue": "EMERGENCY {ref} was not reviewed in time",
    "ttl_reminder": "{ref} expires soon and still awaits your approval",
}
# Told to every approver and auditor, not only the ticket's approver group.
EVERYONE_WATCHING = ("emergency", "review_overdue")
# Events the approver group hears of; the requester hears of the others.
TO_APPROVERS = ("awaiting_approval", "ttl_reminder", "freeze_overridden")


def recipients(ticket: Ticket, event: str) -> list[str]:
    if event in EVERYONE_WATCHING:
        users = (
            get_user_model()
            .objects.filter(groups__name__in=(Role.APPROVER, Role.AUDITOR), is_active=True)
            .exclude(pk=ticket.requester_id)
        )
        return sorted({u.email for u in users if u.email})
    if event in TO_APPROVERS:
        users = (
            get_user_model()
            .objects.filter(groups=ticket.approver_group, is_active=True)
            .exclude(pk=ticket.requester_id)
        )
        return sorted({u.email for u in users if u.email})
    return [ticket.requester.email] if ticket.requester.email else []


def notify(ticket_id: int, event: str) -> int:
    ticket = Ticket.objects.select_related("requester", "approver_group").get(pk=ticket_id)
    to = recipients(ticket, event)
    if not to:
        return 0
    subject = SUBJECTS[event].format(ref=ticket.ref)
    objects = "".join(
        f"  {row['field']}: {row['type']} {row['name']} ({row['id']}, {row['path']})\n" for row in bound_objects(ticket)
    )
    body = (
        f"{subject}.\n\n"
        f"Kind: {ticket.get_kind_display()}\nChange: {ticket_summary(ticket)}\n"
        + (f"Objects:\n{objects}" if objects else "")
        + f"Requested by: {ticket.requester.get_username()}\n"
        f"Justification: {ticket.justification}\nState: {ticket.state}\n"
        + (
            f"Emergency reason: {ticket.emergency_reason}\nReview due by: {ticket.review_due_at:%Y-%m-%d %H:%M} UTC "
            f"({ticket.required_approvals} reviewer(s), never the requester)\n"
            if ticket.is_emergency
            else ""
        )
        + (
            f"Expires unless approved by: {ticket.pending_expires_at:%Y-%m-%d %H:%M} UTC\n"
            if event == "ttl_reminder"
            else ""
        )
        + (f"Error: {ticket.error}\n" if ticket.error else "")
        + f"\n{settings.PORTAL_URL.rstrip('/')}/tickets/{ticket.pk}/\n"
    )
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
