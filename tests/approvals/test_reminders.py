"""Pending tickets nearing their TTL remind their approver group, once."""

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from approvals.models import Ticket
from approvals.services import reminders, sweeper
from audit.models import AuditEntry
from tests.approvals.helpers import VM_CREATE, file_ticket


def test_a_pending_ticket_near_its_ttl_reminds_its_approvers_once(api, lab, requester, approver, auditor, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    near = file_ticket(api(requester), lab, "vm_create", {**VM_CREATE, "name": "ttl-near"})
    far = file_ticket(api(requester), lab, "vm_create", {**VM_CREATE, "name": "ttl-far"})
    now = timezone.now()
    # Filed a week ago, ten minutes left (the reminder lead is a day).
    Ticket.objects.filter(pk=near["id"]).update(
        created_at=now - timedelta(days=7), pending_expires_at=now + timedelta(minutes=10)
    )
    # Filed just now with a short TTL: not halfway through it yet.
    Ticket.objects.filter(pk=far["id"]).update(pending_expires_at=now + timedelta(hours=2))
    assert reminders.remind_nearing_ttl() == 1
    [sent] = mail.outbox
    assert near["ref"] in sent.subject and "expires soon" in sent.subject
    assert sent.to == [approver.email]  # the ticket's approver group, not auditors or the requester
    # The sweeper runs it every pass: nothing more.
    assert reminders.remind_nearing_ttl() == 0
    assert sweeper.sweep()["ttl_reminders"] == 0
    assert len(mail.outbox) == 1
    assert AuditEntry.objects.filter(ticket_id=near["id"], action="ticket.ttl_reminder").count() == 1
    assert Ticket.objects.get(pk=far["id"]).ttl_reminded_at is None
