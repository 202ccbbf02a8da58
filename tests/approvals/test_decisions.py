"""Separation of duties: who may approve, reject, cancel and revoke."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from approvals import notifications, tasks
from approvals.models import Approval, Ticket
from approvals.services import sweeper
from audit.models import AuditEntry
from tests.approvals.helpers import ADMIN_ACCESS, VM_CREATE, file_ticket
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def approve(client, ticket, comment=""):
    return client.post(f"/api/tickets/{ticket['id']}/approve/", {"comment": comment}, format="json")


def test_requester_cannot_approve_own_ticket_even_as_approver_and_superuser(api, lab):
    boss = UserFactory(roles=["requester", "approver"], is_superuser=True, is_staff=True)
    ticket = file_ticket(api(boss), lab, "vm_create", VM_CREATE)
    response = approve(api(boss), ticket)
    assert response.status_code == 403
    assert Approval.objects.count() == 0
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"


def test_superuser_without_the_approver_role_cannot_approve(api, lab, requester):
    root = UserFactory(roles=["auditor"], is_superuser=True, is_staff=True)
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    assert approve(api(root), ticket).status_code == 403


@pytest.mark.parametrize("role", ["auditor", "portal_admin"])
def test_non_approvers_cannot_decide(api, lab, requester, role):
    user = UserFactory(roles=[role])
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    response = approve(api(user), ticket)
    # Auditors see every ticket (403); a portal admin does not see it at all (404).
    assert response.status_code == (403 if role == "auditor" else 404)
    rejected = api(user).post(f"/api/tickets/{ticket['id']}/reject/", {"comment": "no"}, format="json")
    assert rejected.status_code in (403, 404)
    assert Approval.objects.count() == 0


def test_one_person_counts_once(api, lab, requester, approver):
    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    assert approve(api(approver), ticket).status_code == 200
    second = approve(api(approver), ticket)
    assert second.status_code == 409
    assert "already decided" in second.json()["detail"]
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"
    assert Approval.objects.filter(ticket_id=ticket["id"]).count() == 1


def test_reaching_the_required_count_approves_and_queues(api, lab, requester, approver, approver2):
    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    first = approve(api(approver), ticket, "ok").json()
    assert first["state"] == "pending" and first["approvals_given"] == 1
    second = approve(api(approver2), ticket).json()
    assert second["state"] == "approved"
    stored = Ticket.objects.get(pk=ticket["id"])
    assert stored.queued_at is not None
    assert {a.content_hash for a in stored.approvals.all()} == {stored.content_hash}
    actions = list(AuditEntry.objects.filter(ticket_id=ticket["id"]).order_by("seq").values_list("action", flat=True))
    assert actions == ["ticket.submitted", "ticket.approval", "ticket.approval", "ticket.approved"]
    third = UserFactory(roles=["approver"])
    assert approve(api(third), ticket).status_code == 409


def test_rejection_needs_a_comment_and_ends_the_ticket(api, lab, requester, approver, approver2):
    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    url = f"/api/tickets/{ticket['id']}/reject/"
    assert api(approver).post(url, {"comment": " "}, format="json").status_code == 400
    assert api(approver).post(url, {}, format="json").status_code == 400
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"
    response = api(approver).post(url, {"comment": "Not during the freeze"}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "rejected"
    assert approve(api(approver2), ticket).status_code == 409
    entry = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.rejected")
    assert entry.details["comment"] == "Not during the freeze" and entry.actor_name == "bob"


def test_requester_cancels_pending_and_approved_tickets_only(api, lab, requester, approver):
    client = api(requester)
    pending = file_ticket(client, lab, "vm_create", VM_CREATE)
    assert client.post(f"/api/tickets/{pending['id']}/cancel/").json()["state"] == "cancelled"
    assert client.post(f"/api/tickets/{pending['id']}/cancel/").status_code == 409
    approved = file_ticket(client, lab, "vm_create", {**VM_CREATE, "name": "web-new-02"})
    approve(api(approver), approved)
    assert Ticket.objects.get(pk=approved["id"]).state == "approved"
    assert client.post(f"/api/tickets/{approved['id']}/cancel/").json()["state"] == "cancelled"
    Ticket.objects.filter(pk=approved["id"]).update(state="running")
    assert client.post(f"/api/tickets/{approved['id']}/cancel/").status_code == 409


def test_only_the_requester_cancels(api, lab, requester, requester2, approver):
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    assert api(requester2).post(f"/api/tickets/{ticket['id']}/cancel/").status_code == 404
    assert api(approver).post(f"/api/tickets/{ticket['id']}/cancel/").status_code == 403
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"


def test_requesters_see_only_their_own_tickets(api, lab, requester, requester2, approver, auditor):
    mine = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    theirs = file_ticket(api(requester2), lab, "vm_create", {**VM_CREATE, "name": "web-new-02"})
    listed = [t["id"] for t in api(requester).get("/api/tickets/").json()["results"]]
    assert listed == [mine["id"]]
    assert api(requester).get(f"/api/tickets/{theirs['id']}/").status_code == 404
    for user in (approver, auditor):
        assert {t["id"] for t in api(user).get("/api/tickets/").json()["results"]} == {mine["id"], theirs["id"]}


def test_ticket_list_filters(api, lab, requester, requester2, approver):
    a = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    b = file_ticket(api(requester2), lab, "admin_access", ADMIN_ACCESS)
    client = api(approver)

    def ids(query):
        return {t["id"] for t in client.get(f"/api/tickets/?{query}").json()["results"]}

    assert ids("kind=admin_access") == {b["id"]}
    assert ids("requester=alice") == {a["id"]}
    assert ids("state=pending") == {a["id"], b["id"]}
    assert ids("state=approved") == set()
    assert ids(f"connector={lab.pk}") == {a["id"], b["id"]}
    assert ids("created_after=2000-01-01T00:00:00Z") == {a["id"], b["id"]}
    assert ids("created_before=2000-01-01T00:00:00Z") == set()
    assert client.get("/api/tickets/?state=bogus").status_code == 400


def test_revoke_is_for_active_access_only(api, lab, requester, approver):
    ticket = file_ticket(api(requester), lab, "admin_access", ADMIN_ACCESS)
    assert api(requester).post(f"/api/tickets/{ticket['id']}/revoke/").status_code == 409
    other = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    Ticket.objects.filter(pk=other["id"]).update(state="succeeded")
    assert api(approver).post(f"/api/tickets/{other['id']}/revoke/").status_code == 409
    Ticket.objects.filter(pk=ticket["id"]).update(state="succeeded")
    auditor = UserFactory(roles=["auditor"])
    assert api(auditor).post(f"/api/tickets/{ticket['id']}/revoke/").status_code == 403
    response = api(approver).post(f"/api/tickets/{ticket['id']}/revoke/")
    assert response.status_code == 202
    assert Ticket.objects.get(pk=ticket["id"]).access_expires_at <= timezone.now()
    assert AuditEntry.objects.filter(ticket_id=ticket["id"], action="ticket.revoke_requested").count() == 1


def test_pending_tickets_expire_after_the_policy_ttl(api, lab, requester):
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    fresh = file_ticket(api(requester), lab, "vm_create", {**VM_CREATE, "name": "web-new-02"})
    Ticket.objects.filter(pk=ticket["id"]).update(pending_expires_at=timezone.now() - timedelta(seconds=1))
    assert sweeper.expire_pending() == 1
    assert Ticket.objects.get(pk=ticket["id"]).state == "expired"
    assert Ticket.objects.get(pk=fresh["id"]).state == "pending"
    entry = AuditEntry.objects.get(ticket_id=ticket["id"], action="ticket.expired")
    assert entry.actor_name == "sweeper"


def test_approvers_are_told_and_the_requester_hears_back(lab, api, requester, approver, approver2, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    assert tasks.send_notification.run(ticket["id"], "awaiting_approval") == 1
    assert sorted(mail.outbox[0].to) == ["bob@example.invalid", "carol@example.invalid"]
    assert ticket["ref"] in mail.outbox[0].subject
    approve(api(approver), ticket)
    assert tasks.send_notification.run(ticket["id"], "approved") == 1
    assert mail.outbox[1].to == ["alice@example.invalid"]


def test_a_failed_send_never_blocks_a_ticket(lab, api, requester, settings):
    # Nothing listens on port 9 of loopback, so the SMTP connection is refused.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    ticket = file_ticket(api(requester), lab, "vm_create", VM_CREATE)
    assert notifications.recipients(Ticket.objects.get(pk=ticket["id"]), "succeeded") == ["alice@example.invalid"]
    assert tasks.send_notification.run(ticket["id"], "awaiting_approval") == 0
    assert Ticket.objects.get(pk=ticket["id"]).state == "pending"
